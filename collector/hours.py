"""Service hours: when the center is open, as open seconds of local days. Pure, no clock reads.

Rules:

- A week lists, per weekday, the open intervals of wall-clock time (``"08:00-18:00"``,
  ``"08:00-12:00,13:00-17:00"``; ``24:00`` ends at the next local midnight). A weekday not
  named is closed, and so are the ``closed`` dates and, when ``holidays`` names a country,
  that country's public holidays (the ``holidays`` package, imported only then).
- Open seconds are real (UTC) seconds, so daylight-saving days are exact: ``00:00-24:00``
  is 23 h on the spring-forward day and 25 h in autumn; ``01:00-04:00`` is 2 h and 4 h.
  A start or end inside a skipped hour is the instant the clocks jumped; in a repeated
  hour, a start is its first occurrence and an end its last.
- Without ``[hours]`` there is no :class:`OpenHours` at all and the cost model keeps its
  calendar rules, so a center without service hours gets exactly the numbers it always had.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 86400

Interval = tuple[int, int]  # wall-clock seconds after local midnight, [start, end)


def load_holidays(country: str) -> Any:
    """The ``holidays`` package's calendar for ``country`` (``NO``, or ``DE-BY``).

    Raises ValueError naming the country when the package does not know it.
    """
    try:
        import holidays  # only a configured country loads the package
    except ImportError:  # pragma: no cover - it is a declared dependency
        raise ValueError("needs the `holidays` package: pip install holidays") from None
    code, _, subdivision = country.partition("-")
    try:
        return holidays.country_holidays(code, subdiv=subdivision or None)
    except NotImplementedError:
        raise ValueError(
            f"{country!r} is not a country the holidays package knows; use an ISO 3166 "
            "code such as NO, SE, DE or US (a subdivision as DE-BY)"
        ) from None


def _instant(day: date, seconds: int, tz: ZoneInfo, *, fold: int) -> float:
    """Epoch seconds of the wall-clock time ``seconds`` after local midnight of ``day``."""
    if seconds >= DAY_SECONDS:
        day, seconds = day + timedelta(days=seconds // DAY_SECONDS), seconds % DAY_SECONDS
    wall = datetime.combine(day, time()) + timedelta(seconds=seconds)
    moment = wall.replace(tzinfo=tz, fold=fold)
    stamp = moment.timestamp()
    if datetime.fromtimestamp(stamp, tz).replace(tzinfo=None) == wall:
        return stamp
    # Skipped by a spring-forward: the instant the clocks jumped lies between the two
    # readings of this wall time. Transitions fall on whole seconds; bisect for it.
    before = wall.replace(tzinfo=tz, fold=1).timestamp()
    after = wall.replace(tzinfo=tz, fold=0).timestamp()
    lo, hi = min(before, after), max(before, after)
    target = datetime.fromtimestamp(hi, tz).utcoffset()
    low, high = int(lo), int(hi)
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == target:
            high = mid
        else:
            low = mid
    return float(high)


class OpenHours:
    """Open intervals of local days in one time zone; memoises per-day answers."""

    def __init__(
        self,
        tz: ZoneInfo,
        week: Sequence[Sequence[Interval]],
        closed: Sequence[date] = (),
        holidays: str | None = None,
    ) -> None:
        if len(week) != 7:
            raise ValueError("a week has 7 days, Monday first")
        self.tz = tz
        self.week = tuple(tuple(sorted(day)) for day in week)
        self.closed = frozenset(closed)
        self.holidays = holidays
        self._holiday_calendar: Any = None
        self._days: dict[date, tuple[tuple[float, float], ...]] = {}

    def is_closed_day(self, day: date) -> bool:
        """True on a ``closed`` date or a public holiday, whatever the weekday's hours."""
        if day in self.closed:
            return True
        if self.holidays is None:
            return False
        if self._holiday_calendar is None:
            self._holiday_calendar = load_holidays(self.holidays)
        return day in self._holiday_calendar

    def intervals(self, day: date) -> tuple[tuple[float, float], ...]:
        """The open intervals of local ``day`` as epoch seconds [start, end), in order."""
        found = self._days.get(day)
        if found is not None:
            return found
        spans: list[tuple[float, float]] = []
        if not self.is_closed_day(day):
            for start, end in self.week[day.weekday()]:
                t0 = _instant(day, start, self.tz, fold=0)
                t1 = _instant(day, end, self.tz, fold=1)
                if t1 > t0:
                    spans.append((t0, t1))
        found = self._days[day] = tuple(spans)
        return found

    def open_seconds(self, day: date) -> float:
        """Real seconds the center is open on local ``day``."""
        return sum(t1 - t0 for t0, t1 in self.intervals(day))

    def open_seconds_until(self, moment: datetime) -> float:
        """Open seconds of ``moment``'s local day from its midnight up to ``moment``."""
        stamp = moment.timestamp()
        day = moment.astimezone(self.tz).date()
        return sum(max(0.0, min(t1, stamp) - t0) for t0, t1 in self.intervals(day))

    def is_open(self, moment: datetime) -> bool:
        """True when ``moment`` (aware) lies inside service hours."""
        stamp = moment.timestamp()
        day = moment.astimezone(self.tz).date()
        return any(t0 <= stamp < t1 for t0, t1 in self.intervals(day))

    def open_share(self, day: date, calendar_fraction: float) -> float:
        """Share of ``day``'s open seconds that lies before ``calendar_fraction`` of its real
        length (the elapsed fraction :mod:`collector.periods` gives a current window)."""
        if calendar_fraction >= 1.0:
            return 1.0
        whole = self.open_seconds(day)
        if whole <= 0:
            return calendar_fraction
        midnight = datetime.combine(day, time(), self.tz).astimezone(UTC)
        following = datetime.combine(day + timedelta(days=1), time(), self.tz).astimezone(UTC)
        length = (following - midnight).total_seconds()
        moment = midnight + timedelta(seconds=calendar_fraction * length)
        return min(self.open_seconds_until(moment) / whole, 1.0)


@lru_cache(maxsize=8)
def open_hours_for(
    week: Sequence[Sequence[Interval]], closed: Sequence[date], holidays: str | None,
    timezone: str,
) -> OpenHours:
    """One OpenHours per configuration (plain, hashable parts of ``[hours]``), so its
    per-day memo outlives a single recompute."""
    return OpenHours(ZoneInfo(timezone), week, closed, holidays)


def parse_time(text: str, *, end: bool) -> int:
    """'08:30' -> 30600 seconds after midnight; '24:00' only as an end."""
    hours, sep, minutes = text.strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"{text.strip()!r} is not a time of day as HH:MM")
    value = int(hours) * 3600 + int(minutes) * 60
    if int(minutes) > 59 or value > DAY_SECONDS or (value == DAY_SECONDS and not end):
        raise ValueError(
            f"{text.strip()!r} is not a time of day (00:00 to 23:59, or 24:00 as an end)"
        )
    return value


def parse_intervals(text: str) -> tuple[Interval, ...]:
    """'08:00-12:00,13:00-17:00' -> ((28800, 43200), (46800, 61200)); no overlaps."""
    spans: list[Interval] = []
    for part in text.split(","):
        start_text, sep, end_text = part.partition("-")
        if not sep:
            raise ValueError(f"{part.strip()!r} is not a range of times such as 08:00-18:00")
        start, end = parse_time(start_text, end=False), parse_time(end_text, end=True)
        if end <= start:
            raise ValueError(
                f"{part.strip()!r} ends before it starts; hours that pass midnight are two "
                "ranges, '22:00-24:00' on one day and '00:00-06:00' on the next"
            )
        spans.append((start, end))
    spans.sort()
    for (_, end), (start, _) in pairwise(spans):
        if start < end:
            raise ValueError(f"{text!r} has overlapping ranges")
    return tuple(spans)


def parse_days(key: str) -> list[int]:
    """'mon-fri' -> [0, 1, 2, 3, 4]; 'sat' -> [5]."""
    first, sep, last = key.partition("-")
    if first not in WEEKDAYS or (sep and last not in WEEKDAYS):
        raise ValueError(
            f"{key!r} is not a day or a range of days (mon, tue, wed, thu, fri, sat, sun, or "
            "a range such as mon-fri), nor `closed` or `holidays`"
        )
    lo = WEEKDAYS.index(first)
    hi = WEEKDAYS.index(last) if sep else lo
    if hi < lo:
        raise ValueError(f"{key!r} runs backwards; weeks run mon..sun")
    return list(range(lo, hi + 1))


def format_intervals(spans: Sequence[Interval]) -> str:
    def clock(seconds: int) -> str:
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"

    return ",".join(f"{clock(start)}-{clock(end)}" for start, end in spans)
