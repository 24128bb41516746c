"""The landing page's figures as plain data, computed once per recompute from the same samples.

Pure: no I/O and no clock reads; the caller passes ``now``. Rules:

- A row is a channel (all its directions and queues) or one (channel, queue) pair within it.
  Its windows are today (``day``/``current``), week to date, month to date and the previous
  month, read from the cost model's samples: cost is the sum of ``contactcenter_cost`` over
  components, directions and queues; cost per contact is that cost over the sum of handled
  contacts, average handle time the handle seconds over them (parts summed, then divided:
  never an average of ratios). A window without handled contacts has no ratio.
- Service level, over the label sets whose contacts carry a wait (those with
  ``contactcenter_contacts_answered_in_threshold``): the sum of contacts answered within the
  threshold over the sum of offered contacts (handled + abandoned - short abandons), as
  ``contactcenter_service_level_ratio`` is for one label set. First contact resolution:
  1 - the sum of repeats over the sum of identified contacts. Both are absent where their
  denominator is 0, and left off the page when no row has them.
- The status compares cost per contact with the channel's band: ``below`` under ``low``,
  ``above`` over ``high``, else ``in band`` (the edges are in band).
- The chart's days are the last 30 local days up to today, each allocated exactly as a
  ``day`` window is by :func:`collector.allocation.allocate_window` (today up to ``now``), so
  today's point equals the "today" figure and yesterday's the previous day's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from collector.accrual import AccrualSchedule
from collector.allocation import RollupIndex, allocate_window
from collector.config import Settings
from collector.metrics import Sample
from collector.model import Rollup
from collector.periods import ReportWindow, elapsed_day_fraction

CHART_DAYS = 30
# (period, window) -> what the page calls it, in the page's column order.
WINDOWS: tuple[tuple[tuple[str, str], str], ...] = (
    (("day", "current"), "Today"),
    (("week", "current"), "Week to date"),
    (("month", "current"), "Month to date"),
    (("month", "previous"), "Previous month"),
)
# The parts read from the samples, per label set.
_PARTS = {
    "contactcenter_contacts": "contacts",
    "contactcenter_contacts_abandoned": "abandoned",
    "contactcenter_contacts_abandoned_short": "abandoned_short",
    "contactcenter_contacts_answered_in_threshold": "in_threshold",
    "contactcenter_cost": "cost",
    "contactcenter_handle_time_seconds": "handle_seconds",
    "contactcenter_contacts_identified": "identified",
    "contactcenter_contacts_repeat": "repeats",
}


@dataclass(frozen=True)
class WindowFigures:
    """One row's sums in one window, and the ratios made from them."""

    contacts: float = 0.0
    cost: float = 0.0
    handle_seconds: float = 0.0
    sl_in_target: float = 0.0
    sl_offered: float = 0.0
    identified: float = 0.0
    repeats: float = 0.0

    @property
    def cost_per_contact(self) -> float | None:
        return self.cost / self.contacts if self.contacts > 0 else None

    @property
    def average_handle_seconds(self) -> float | None:
        return self.handle_seconds / self.contacts if self.contacts > 0 else None

    @property
    def service_level(self) -> float | None:
        return self.sl_in_target / self.sl_offered if self.sl_offered > 0 else None

    @property
    def first_contact_resolution(self) -> float | None:
        return 1 - self.repeats / self.identified if self.identified > 0 else None


@dataclass(frozen=True)
class Row:
    """A channel (``queue`` "") or one of its queues, with its figures per window label."""

    channel: str
    queue: str
    windows: Mapping[str, WindowFigures]


@dataclass(frozen=True)
class DayPoint:
    """One local day of the chart: handled contacts and the cost allocated to them."""

    day: date
    contacts: float
    cost: float

    @property
    def cost_per_contact(self) -> float | None:
        return self.cost / self.contacts if self.contacts > 0 else None


@dataclass(frozen=True)
class ChannelView:
    channel: str
    low: float
    high: float
    total: Row
    queues: tuple[Row, ...]
    days: tuple[DayPoint, ...]


@dataclass(frozen=True)
class PageFigures:
    """Everything the landing page shows about cost, as of ``moment`` (local time)."""

    moment: datetime
    currency: str
    timezone: str
    channels: tuple[ChannelView, ...]
    has_service_level: bool
    has_fcr: bool
    stored: Mapping[str, int] = field(default_factory=dict)  # stored contacts per source


def status(value: float | None, low: float, high: float) -> str:
    """'below', 'above' or 'in band' (edges included); '' when there is no value."""
    if value is None:
        return ""
    if value < low:
        return "below"
    if value > high:
        return "above"
    return "in band"


_Sums = dict[tuple[str, str | None], dict[str, dict[str, float]]]


def _rows(samples: Iterable[Sample]) -> _Sums:
    """(channel, queue; None for the whole channel) -> window label -> summed parts."""
    labels_of = {pw: label for pw, label in WINDOWS}
    # First each label set's parts (the service level pairs parts of one set), then the rows.
    slices: dict[tuple[str, str, str, str], dict[str, float]] = defaultdict(
        lambda: defaultdict(float)
    )
    for name, labels, value in samples:
        part = _PARTS.get(name)
        if part is None or "channel" not in labels:
            continue
        window = labels_of.get((labels.get("period", ""), labels.get("window", "")))
        if window is None:
            continue
        key = (window, labels["channel"], labels.get("direction", ""), labels.get("queue", ""))
        slices[key][part] += value
        if part == "in_threshold":
            slices[key]["waited"] = 1.0
    sums: _Sums = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
    for (window, channel, _, queue), parts in slices.items():
        summed = {
            "contacts": parts["contacts"],
            "cost": parts["cost"],
            "handle_seconds": parts["handle_seconds"],
            "identified": parts["identified"],
            "repeats": parts["repeats"],
        }
        if parts["waited"]:
            summed["sl_in_target"] = parts["in_threshold"]
            summed["sl_offered"] = (
                parts["contacts"] + parts["abandoned"] - parts["abandoned_short"]
            )
        for row in ((channel, None), (channel, queue)):
            for part, value in summed.items():
                sums[row][window][part] += value
    return sums


def daily_points(
    settings: Settings, rollups: Sequence[Rollup], now: datetime, days: int = CHART_DAYS
) -> dict[str, tuple[DayPoint, ...]]:
    """Per channel, the last ``days`` local days up to today (oldest first), allocated."""
    tz = settings.tz
    local_now = now.astimezone(tz)
    today = local_now.date()
    first = today - timedelta(days=days - 1)
    index = RollupIndex(rollups, first, today)
    schedules = [
        AccrualSchedule(i, first, today, settings.open_hours)
        for i in settings.costs
        if not i.is_usage
    ]
    fraction = elapsed_day_fraction(local_now, tz)
    per_day: dict[str, dict[date, list[float]]] = defaultdict(dict)
    for n in range(days):
        day = first + timedelta(days=n)
        window = ReportWindow(
            "day", "current" if day == today else "previous", day, day,
            fraction if day == today else 1.0,
        )
        totals, cost, _ = allocate_window(settings, index, schedules, window)
        for key, t in totals.items():
            cell = per_day[key[0]].setdefault(day, [0.0, 0.0])
            cell[0] += t.handled
            cell[1] += sum(cost[key].values())
    return {
        channel: tuple(
            DayPoint(first + timedelta(days=n), *by_day.get(first + timedelta(days=n), (0.0, 0.0)))
            for n in range(days)
        )
        for channel, by_day in per_day.items()
    }


def page_figures(
    settings: Settings,
    samples: Iterable[Sample],
    rollups: Sequence[Rollup],
    now: datetime,
    stored: Mapping[str, int] | None = None,
) -> PageFigures:
    """The landing page's figures from the recompute's samples and rollups, as of ``now``."""
    sums = _rows(samples)
    daily = daily_points(settings, rollups, now)
    empty_days = tuple(
        DayPoint(now.astimezone(settings.tz).date() - timedelta(days=CHART_DAYS - 1 - n), 0.0, 0.0)
        for n in range(CHART_DAYS)
    )

    def row(channel: str, queue: str | None) -> Row:
        found = sums.get((channel, queue), {})
        return Row(channel, queue or "", {
            label: WindowFigures(**found[label]) if label in found else WindowFigures()
            for _, label in WINDOWS
        })

    channels = sorted({c for c, _ in sums} | set(daily))
    views = []
    for channel in channels:
        band = settings.benchmark.band_for(channel)
        queues = sorted(q for c, q in sums if c == channel and q is not None)
        views.append(ChannelView(
            channel, band.low, band.high, row(channel, None),
            tuple(row(channel, q) for q in queues), daily.get(channel, empty_days),
        ))
    windows = [w for by_window in sums.values() for w in by_window.values()]
    return PageFigures(
        now.astimezone(settings.tz), settings.currency, settings.timezone, tuple(views),
        has_service_level=any(w.get("sl_offered", 0) > 0 for w in windows),
        has_fcr=any(w.get("identified", 0) > 0 for w in windows),
        stored=dict(stored or {}),
    )
