"""Reporting periods and windows in local time: calendar arithmetic, no I/O, no clock reads.

Rules:

- Period kinds are ``day``, ``week`` (ISO week, Monday to Sunday), ``month``, ``quarter``
  and ``year``. Their boundaries are local midnights in the configured time zone.
- Each kind is reported in two windows:

  - ``current``: from the local midnight that starts the period up to ``now``;
  - ``previous``: the last complete period before it.

- A local day lasts from one local midnight to the next, measured in real (UTC) time, so it
  is 23 h or 25 h long on daylight-saving days. Where local midnight does not exist (a zone
  that changes its clocks at midnight) the day starts at the transition instant.
- The fraction of a day elapsed at ``now`` is real seconds since local midnight divided by
  the day's real length: at 12:00 on Europe/Oslo's 23 h day (2026-03-29, 02:00 skipped)
  11 of 23 hours have passed.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from collector.model import PERIODS as PERIODS
from collector.model import WINDOWS as WINDOWS
from collector.model import PeriodName


class ReportWindow(NamedTuple):
    """One period kind in one window: local days ``first``..``last`` inclusive.

    ``last_day_fraction`` is the share of day ``last`` that lies inside the window: 1.0 for a
    complete period, the elapsed fraction of today (by real time) for the current window.
    With service hours, :class:`collector.accrual.AccrualSchedule` turns it into the share
    of today's open seconds elapsed by then.
    """

    period: PeriodName
    window: str
    first: date
    last: date
    last_day_fraction: float


def days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def add_months(day: date, months: int) -> date:
    """The same day-of-month ``months`` later, clipped to the month's last day."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, days_in_month(year, month + 1)))


def period_start(kind: PeriodName, day: date) -> date:
    """The first local day of the period of ``kind`` that contains ``day``."""
    if kind == "day":
        return day
    if kind == "week":
        return day - timedelta(days=day.weekday())  # ISO week: Monday start
    if kind == "month":
        return day.replace(day=1)
    if kind == "quarter":
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if kind == "year":
        return date(day.year, 1, 1)
    raise ValueError(f"unknown period kind {kind!r}")


def next_period_start(kind: PeriodName, start: date) -> date:
    """The first day of the period after the one starting on ``start``."""
    if kind == "day":
        return start + timedelta(days=1)
    if kind == "week":
        return start + timedelta(days=7)
    if kind == "month":
        return add_months(start, 1)
    if kind == "quarter":
        return add_months(start, 3)
    if kind == "year":
        return date(start.year + 1, 1, 1)
    raise ValueError(f"unknown period kind {kind!r}")


def days_in_period(kind: PeriodName, day: date) -> int:
    """How many calendar days the period of ``kind`` containing ``day`` has."""
    start = period_start(kind, day)
    return (next_period_start(kind, start) - start).days


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The instant (UTC) a local day starts."""
    # fold=0: in a gap this lands on the transition instant, in an overlap on the first 00:00.
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def day_length_seconds(day: date, tz: ZoneInfo) -> float:
    """Real length of a local day: 82800 s on a spring-forward day, 90000 s in autumn."""
    return (local_midnight(day + timedelta(days=1), tz) - local_midnight(day, tz)).total_seconds()


def elapsed_day_fraction(now: datetime, tz: ZoneInfo) -> float:
    """Share of ``now``'s local day that has passed, by real time (0.0 at local midnight)."""
    today = now.astimezone(tz).date()
    # Subtract in UTC: Python ignores offsets when both operands share one tzinfo.
    elapsed = (now.astimezone(UTC) - local_midnight(today, tz)).total_seconds()
    return min(max(elapsed / day_length_seconds(today, tz), 0.0), 1.0)


def first_day_needed(now: datetime) -> date:
    """The earliest local day any period or window needs: 1 January of the previous year.

    ``now`` is aware and already in the configured zone.
    """
    return date(now.date().year - 1, 1, 1)


def report_windows(now: datetime, tz: ZoneInfo) -> list[ReportWindow]:
    """Every period kind in both windows, current first, as of ``now``."""
    today = now.astimezone(tz).date()
    fraction = elapsed_day_fraction(now, tz)
    windows: list[ReportWindow] = []
    for kind in PERIODS:
        start = period_start(kind, today)
        previous = period_start(kind, start - timedelta(days=1))
        windows.append(ReportWindow(kind, "current", start, today, fraction))
        windows.append(ReportWindow(kind, "previous", previous, start - timedelta(days=1), 1.0))
    return windows
