"""Projection to the end of the current week, month, quarter and year. Pure, ``now`` passed in.

Method:

- **Arrival profile.** The handled contacts of the last ``[forecast] weeks`` complete ISO
  weeks (Monday to Sunday) before ``now``'s week, per label set, weekday and local hour,
  divided by the open seconds of that weekday and hour in those weeks: contacts per open
  second. A week without any stored contact, or the week the store's history begins in
  (unless it begins on that Monday), is left out of both sides. Contacts that arrived in
  an hour with no open second (e-mail at night) get a rate per calendar second of that
  hour on days that were not closed.
- **Remaining contacts** = each slot's rate x the open seconds (or, for those night
  slots, the calendar seconds of days not closed) still to come from ``now`` to the end
  of the period. Service hours, closed dates and public holidays (:mod:`collector.hours`)
  therefore shape the remainder exactly as they shape the cost accrual. Without
  ``[hours]`` every second is open.
- **Shared cost** of the whole period is known from the configuration: the accrual of
  every shared item over the complete period (:mod:`collector.accrual`). It is allocated
  to the projected contacts by the allocation's rules (scope, handle time or contacts).
- **Usage cost** (per minute, per contact, export prices) so far, plus the remaining
  contacts x the label set's usage cost per handled contact so far (the profile weeks'
  rate when there is none yet).
- The figures are period totals: what is there so far plus what is expected.
- Without any profile week (a new store) a label set's rate is its own so far in the
  period, per open second.

Limits: a trend inside the period, a campaign or an outage is not foreseen; a change of
service hours shows from the day it applies, but the profile still carries the old
pattern for up to ``weeks`` weeks.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from collector.accrual import AccrualSchedule
from collector.allocation import Key, RollupIndex, allocate_window
from collector.config import PeriodName, Settings
from collector.hours import OpenHours
from collector.metrics import Sample
from collector.model import Arrival, Rollup
from collector.periods import (
    ReportWindow,
    elapsed_day_fraction,
    local_midnight,
    next_period_start,
    period_start,
)

PROJECTED_PERIODS: tuple[PeriodName, ...] = ("week", "month", "quarter", "year")
_STEP = 900  # every IANA offset is a multiple of 15 minutes


class Weights(NamedTuple):
    """Seconds per local hour of a span: open seconds, and calendar seconds of days not closed."""

    open: tuple[float, ...]  # 24 entries
    calendar: tuple[float, ...]  # 24 entries


def _weights(
    day: date, tz: ZoneInfo, hours: OpenHours | None, lo: float | None = None
) -> Weights:
    """Open and calendar seconds per local hour of ``day``, from ``lo`` (epoch) on if given."""
    start = local_midnight(day, tz).timestamp()
    end = local_midnight(day + timedelta(days=1), tz).timestamp()
    closed = hours is not None and hours.is_closed_day(day)
    spans = ((start, end),) if hours is None else hours.intervals(day)
    opened = [0.0] * 24
    cal = [0.0] * 24
    t = start
    while t < end:
        step_end = min(t + _STEP, end)
        a = t if lo is None else max(t, lo)
        if step_end > a:
            hour = datetime.fromtimestamp(t, tz).hour
            opened[hour] += sum(max(0.0, min(s1, step_end) - max(s0, a)) for s0, s1 in spans)
            if not closed:
                cal[hour] += step_end - a
        t = step_end
    return Weights(tuple(opened), tuple(cal))


@lru_cache(maxsize=4096)
def day_weights(day: date, tz: ZoneInfo, hours: OpenHours | None) -> Weights:
    """:func:`_weights` of a whole day, cached (one OpenHours object per configuration)."""
    return _weights(day, tz, hours)


class SlotWeights:
    """Seconds per (weekday, hour) summed over a run of days: 7 x 24 open and calendar."""

    def __init__(self) -> None:
        self.open = [[0.0] * 24 for _ in range(7)]
        self.calendar = [[0.0] * 24 for _ in range(7)]

    def add(self, weekday: int, w: Weights) -> None:
        o, c = self.open[weekday], self.calendar[weekday]
        for h in range(24):
            o[h] += w.open[h]
            c[h] += w.calendar[h]

    def total_open(self) -> float:
        return math.fsum(math.fsum(row) for row in self.open)


def remaining_weights(
    now: datetime, end_day: date, tz: ZoneInfo, hours: OpenHours | None
) -> SlotWeights:
    """Slot seconds from ``now`` to the end of local day ``end_day`` (inclusive)."""
    local = now.astimezone(tz)
    today = local.date()
    out = SlotWeights()
    out.add(today.weekday(), _weights(today, tz, hours, lo=now.timestamp()))
    day = today + timedelta(days=1)
    while day <= end_day:
        out.add(day.weekday(), day_weights(day, tz, hours))
        day += timedelta(days=1)
    return out


def open_seconds_between(
    first: date, last: date, tz: ZoneInfo, hours: OpenHours | None
) -> float:
    """Open seconds of local days ``first``..``last`` (real seconds without hours)."""
    total = 0.0
    day = first
    while day <= last:
        total += math.fsum(day_weights(day, tz, hours).open)
        day += timedelta(days=1)
    return total


def open_elapsed_ratio(
    kind: PeriodName, now: datetime, tz: ZoneInfo, hours: OpenHours | None
) -> float | None:
    """Share of the current period's open seconds that lies before ``now``; None if none."""
    today = now.astimezone(tz).date()
    first = period_start(kind, today)
    last = next_period_start(kind, first) - timedelta(days=1)
    whole = open_seconds_between(first, last, tz, hours)
    if whole <= 0:
        return None
    left = remaining_weights(now, last, tz, hours).total_open()
    return min(max((whole - left) / whole, 0.0), 1.0)


def moment_at_open_share(
    kind: PeriodName, day: date, share: float, tz: ZoneInfo, hours: OpenHours | None
) -> datetime:
    """The first instant by which ``share`` of the period's open seconds has passed
    (to the 15-minute step; used by the backtest)."""
    first = period_start(kind, day)
    last = next_period_start(kind, first) - timedelta(days=1)
    target = share * open_seconds_between(first, last, tz, hours)
    done = 0.0
    d = first
    while d <= last:
        today = math.fsum(day_weights(d, tz, hours).open)
        if done + today >= target and today > 0:
            start = local_midnight(d, tz).timestamp()
            end = local_midnight(d + timedelta(days=1), tz).timestamp()
            t = start
            spans = ((start, end),) if hours is None else hours.intervals(d)
            while t < end:
                done += sum(max(0.0, min(s1, t + _STEP) - max(s0, t)) for s0, s1 in spans)
                t += _STEP
                if done >= target:
                    break
            return datetime.fromtimestamp(t, UTC)
        done += today
        d += timedelta(days=1)
    return local_midnight(last + timedelta(days=1), tz)


def profile_weeks(now: datetime, tz: ZoneInfo, weeks: int) -> tuple[date, date]:
    """First and last local day of the last ``weeks`` complete ISO weeks before ``now``'s."""
    monday = period_start("week", now.astimezone(tz).date())
    return monday - timedelta(days=7 * weeks), monday - timedelta(days=1)


class Profile:
    """Contacts per second by label set, weekday and hour, from the profile weeks."""

    def __init__(
        self,
        arrivals: Iterable[Arrival],
        first: date,
        last: date,
        tz: ZoneInfo,
        hours: OpenHours | None,
    ) -> None:
        counts: dict[Key, list[list[float]]] = {}
        lo = local_midnight(first, tz).timestamp()
        hi = local_midnight(last + timedelta(days=1), tz).timestamp()
        kept = [a for a in arrivals if a.start < hi]
        weeks_seen = {
            period_start("week", datetime.fromtimestamp(a.start, tz).date())
            for a in kept if a.start >= lo
        }
        # The store's first arrival, from the day before `first` on: if history begins
        # inside the profile, the week it begins in is partial (it began on a Thursday,
        # say) unless it begins on that Monday; that week is left out.
        earliest = min((a.start for a in kept), default=None)
        if earliest is not None and earliest >= lo:
            begins = datetime.fromtimestamp(earliest, tz).date()
            weeks_seen = {m for m in weeks_seen if m >= begins}
        for start, channel, direction, queue, handled in kept:
            if start < lo or handled <= 0:
                continue
            local = datetime.fromtimestamp(start, tz)
            if period_start("week", local.date()) not in weeks_seen:
                continue
            key = (channel, direction, queue)
            grid = counts.get(key)
            if grid is None:
                grid = counts[key] = [[0.0] * 24 for _ in range(7)]
            grid[local.weekday()][local.hour] += handled
        weights = SlotWeights()
        for monday in weeks_seen:
            for n in range(7):
                day = monday + timedelta(days=n)
                weights.add(day.weekday(), day_weights(day, tz, hours))
        self.weeks = len(weeks_seen)
        self.first, self.last = first, last
        # rate[key][wd][h] = (per open second, per calendar second); one of them is 0.
        self.rates: dict[Key, list[list[tuple[float, float]]]] = {}
        for key, grid in counts.items():
            rows: list[list[tuple[float, float]]] = []
            for wd in range(7):
                row: list[tuple[float, float]] = []
                for h in range(24):
                    count = grid[wd][h]
                    o, c = weights.open[wd][h], weights.calendar[wd][h]
                    if count <= 0:
                        row.append((0.0, 0.0))
                    elif o > 0:
                        row.append((count / o, 0.0))
                    elif c > 0:
                        row.append((0.0, count / c))
                    else:
                        row.append((0.0, 0.0))
                rows.append(row)
            self.rates[key] = rows

    def expected(self, key: Key, remaining: SlotWeights) -> float:
        """Contacts of ``key`` expected over the remaining slot seconds."""
        rows = self.rates.get(key)
        if rows is None:
            return 0.0
        total = 0.0
        for wd in range(7):
            ro, rc, row = remaining.open[wd], remaining.calendar[wd], rows[wd]
            for h in range(24):
                per_open, per_cal = row[h]
                total += per_open * ro[h] + per_cal * rc[h]
        return total


class Projected(NamedTuple):
    """One label set's period totals as projected."""

    contacts: float
    handle_seconds: float
    cost: float


def project_period(
    settings: Settings,
    index: RollupIndex,
    profile: Profile,
    kind: PeriodName,
    now: datetime,
) -> tuple[dict[Key, Projected], float]:
    """Projected totals per label set for the current ``kind`` window, and the shared cost
    of the period that finds no projected contact in its scope (unallocated)."""
    tz = settings.tz
    hours = settings.open_hours
    local = now.astimezone(tz)
    today = local.date()
    first = period_start(kind, today)
    last = next_period_start(kind, first) - timedelta(days=1)
    current = ReportWindow(kind, "current", first, today, elapsed_day_fraction(local, tz))
    so_far, usage, _ = allocate_window(settings, index, [], current)
    remaining = remaining_weights(local, last, tz, hours)
    elapsed_open = max(open_seconds_between(first, last, tz, hours) - remaining.total_open(), 0.0)
    profile_window = ReportWindow(kind, "previous", profile.first, profile.last, 1.0)
    base, base_usage, _ = allocate_window(settings, index, [], profile_window)

    keys = sorted(set(so_far) | set(profile.rates))
    contacts: dict[Key, float] = {}
    handle: dict[Key, float] = {}
    usage_cost: dict[Key, float] = {}
    for key in keys:
        t = so_far.get(key)
        handled = t.handled if t else 0.0
        if profile.weeks:
            extra = profile.expected(key, remaining)
        elif handled and elapsed_open > 0:
            extra = handled / elapsed_open * remaining.total_open()
        else:
            extra = 0.0
        if t is not None and t.handled > 0:
            aht = t.handle_seconds / t.handled
            rate = math.fsum(usage[key].values()) / t.handled
        elif key in base and base[key].handled > 0:
            aht = base[key].handle_seconds / base[key].handled
            rate = math.fsum(base_usage[key].values()) / base[key].handled
        else:
            aht = rate = 0.0
        spent = math.fsum(usage[key].values()) if key in usage else 0.0
        contacts[key] = handled + extra
        handle[key] = (t.handle_seconds if t else 0.0) + extra * aht
        usage_cost[key] = spent + extra * rate

    shared: dict[Key, float] = defaultdict(float)
    unallocated = 0.0
    for item in settings.costs:
        if item.is_usage:
            continue
        amount = AccrualSchedule(item, first, last, hours).accrued(first, last, 1.0)
        scope = [k for k in keys if contacts[k] > 0 and item.in_scope(*k)]
        weights = {k: handle[k] for k in scope}
        if item.allocate == "contacts" or sum(weights.values()) <= 0:
            weights = {k: contacts[k] for k in scope}
        whole = math.fsum(weights.values())
        if whole <= 0:
            unallocated += amount
            continue
        for k, weight in weights.items():
            shared[k] += amount * (weight / whole)
    out = {
        k: Projected(contacts[k], handle[k], usage_cost[k] + shared[k])
        for k in keys
        if contacts[k] > 0 or k in so_far
    }
    return out, unallocated


def project_figures(
    settings: Settings,
    rollups: Sequence[Rollup],
    arrivals: Iterable[Arrival],
    now: datetime,
    weeks: int = 4,
) -> list[Sample]:
    """The projected families for the current week, month, quarter and year."""
    tz = settings.tz
    hours = settings.open_hours
    local = now.astimezone(tz)
    today = local.date()
    p_first, p_last = profile_weeks(local, tz, weeks)
    profile = Profile(arrivals, p_first, p_last, tz, hours)
    index = RollupIndex(rollups, min(p_first, period_start("year", today)), today)
    contacts: list[Sample] = []
    cost: list[Sample] = []
    per_contact: list[Sample] = []
    ratio: list[Sample] = []
    for kind in PROJECTED_PERIODS:
        projected, _ = project_period(settings, index, profile, kind, local)
        for (channel, direction, queue), p in projected.items():
            labels = {"period": kind, "window": "current", "channel": channel,
                      "direction": direction, "queue": queue}
            contacts.append(Sample("contactcenter_contacts_projected", labels, p.contacts))
            cost.append(Sample("contactcenter_cost_projected", labels, p.cost))
            if p.contacts > 0:
                per_contact.append(
                    Sample("contactcenter_cost_per_contact_projected", labels,
                           p.cost / p.contacts)
                )
        elapsed = open_elapsed_ratio(kind, local, tz, hours)
        if elapsed is not None:
            ratio.append(
                Sample("contactcenter_period_open_elapsed_ratio", {"period": kind}, elapsed)
            )
    return [*contacts, *cost, *per_contact, *ratio]


def profile_fingerprint(rollups: Iterable[Rollup], first: date, last: date) -> tuple[float, ...]:
    """Sums of the rollups of local days ``first``..``last``: unchanged while the contacts
    of those days are (a late export or a recomputed call changes them)."""
    n = handled = handle = 0.0
    rows = 0
    for r in rollups:
        if first <= r.day <= last:
            rows += 1
            n += r.contacts
            handled += r.handled
            handle += r.handle_seconds
    return (float(rows), n, handled, handle)


def arrivals_days(now: datetime, tz: ZoneInfo, weeks: int) -> tuple[date, date]:
    """The local days the store must return arrivals for: the profile weeks and the day
    before them, so that a history older than the profile shows as such."""
    first, last = profile_weeks(now, tz, weeks)
    return first - timedelta(days=1), last
