"""Accrual of shared (non-usage) costs: how much of each cost item falls on each local day.

Rules:

- A shared cost accrues evenly over the calendar days of its ``per`` period, within its
  effective dates (``from`` and ``until``, inclusive local dates):

  - ``per = "day"``: the amount itself each day;
  - ``per = "week"``: amount / 7 each day;
  - ``per = "month"``: amount / days in that month (96000 a month is 96000/31 a day in
    October and 96000/28 a day in February 2026);
  - ``per = "quarter"`` and ``per = "year"``: amount / days in that quarter or year;
  - ``seats`` multiplies the amount.

  A complete month therefore carries exactly its monthly amount. A month cut by ``from`` or
  ``until`` carries only the days inside the effective dates.
- An amortized purchase (``amortize_months = n``) accrues amount / n per calendar month,
  spread over that month's days as above, from ``from`` for n months (up to the day before
  the same day-of-month n months later). Starting on the 1st, as is usual, it accrues
  exactly the amount; starting mid-month, the first and last months are partial and their
  day rates follow each month's own length. ``until`` can end it early.
- Within a day, the day's share accrues evenly over the day's real length (23 h or 25 h on
  daylight-saving days), so the current window carries the share up to ``now`` exactly.
"""

from __future__ import annotations

from datetime import date, timedelta
from math import fsum

from collector.config import CostItem
from collector.periods import add_months, days_in_month, days_in_period


def accrual_span(item: CostItem) -> tuple[date | None, date | None]:
    """First and last local day (inclusive) a shared item accrues on; None is open-ended."""
    last = item.until
    if item.amortize_months is not None and item.from_ is not None:
        end = add_months(item.from_, item.amortize_months) - timedelta(days=1)
        last = end if last is None else min(last, end)
    return item.from_, last


def _rate_within_span(item: CostItem, day: date) -> float:
    assert item.amount is not None  # config guarantees it for shared items
    if item.amortize_months is not None:
        return item.amount / item.amortize_months / days_in_month(day.year, day.month)
    amount = item.amount * (item.seats or 1)
    if item.per == "day":
        return amount
    if item.per == "week":
        return amount / 7
    if item.per == "month":
        return amount / days_in_month(day.year, day.month)
    assert item.per is not None  # config guarantees one way of costing
    return amount / days_in_period(item.per, day)


def daily_rate(item: CostItem, day: date) -> float:
    """The cost of a shared item that falls on one whole local day."""
    if item.is_usage:
        return 0.0
    first, last = accrual_span(item)
    if (first is not None and day < first) or (last is not None and day > last):
        return 0.0
    return _rate_within_span(item, day)


class AccrualSchedule:
    """One shared item's accrual over local days ``first``..``last``, precomputed once.

    Summing a run of days is one ``math.fsum`` over a slice: exact to the last bit, so a
    complete month carries its monthly amount without drift from long running sums.
    """

    def __init__(self, item: CostItem, first: date, last: date) -> None:
        self.item = item
        self.first = first
        count = max((last - first).days + 1, 0)
        self._daily = [0.0] * count
        if not item.is_usage:
            span_first, span_last = accrual_span(item)
            lo = 0 if span_first is None else max((span_first - first).days, 0)
            hi = count if span_last is None else min((span_last - first).days + 1, count)
            for i in range(lo, hi):
                self._daily[i] = _rate_within_span(item, first + timedelta(days=i))

    def accrued(self, first: date, last: date, last_day_fraction: float = 1.0) -> float:
        """Cost accrued from the start of ``first`` to ``last_day_fraction`` of ``last``."""
        start = max((first - self.first).days, 0)
        end = min((last - self.first).days, len(self._daily) - 1)
        if end < start:
            return 0.0
        if end != (last - self.first).days:
            last_day_fraction = 1.0  # ``last`` lies past the schedule; ``end`` is a whole day
        return fsum(self._daily[start:end]) + self._daily[end] * last_day_fraction
