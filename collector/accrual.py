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

With service hours (``[hours]``, :mod:`collector.hours`) the same amounts are spread over
open seconds instead of calendar days:

- a period's amount (``per`` week, month, quarter, year; an amortized purchase's month) is
  spread over the open seconds of the whole period, so a day carries
  amount x open seconds of the day / open seconds of the period, within the effective dates
  as above. A complete month still carries exactly its amount; a closed day carries none.
- ``per = "day"`` is the amount for each open day, spread over that day's open seconds; a
  closed day carries none.
- within a day, the share accrues over its open seconds only: none before opening, all of
  it by closing time.
- a period with no open second at all (a closed month) falls back to the calendar rules
  above, so no cost is ever lost.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache
from math import fsum

from collector.config import CostItem, PeriodName
from collector.hours import OpenHours
from collector.periods import (
    add_months,
    days_in_month,
    days_in_period,
    next_period_start,
    period_start,
)


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


def _period_amount(item: CostItem) -> float:
    """What one whole ``per`` period (an amortized purchase: one month) costs."""
    assert item.amount is not None  # config guarantees it for shared items
    if item.amortize_months is not None:
        return item.amount / item.amortize_months
    return item.amount * (item.seats or 1)


@lru_cache(maxsize=64)
def _open_shares(
    hours: OpenHours, kind: PeriodName, first: date, last: date
) -> tuple[float | None, ...]:
    """For each local day ``first``..``last``: its share of its ``kind`` period's open seconds,
    or None where the period has no open second (the calendar rules apply there).

    ``per = "day"`` is per open day: 1.0 on a day with any open second, else 0.0. Cached per
    service hours (one object per configuration), so a recompute rebuilds none of it.
    """
    shares: list[float | None] = []
    period_open: dict[date, float] = {}
    for n in range((last - first).days + 1):
        day = first + timedelta(days=n)
        open_today = hours.open_seconds(day)
        if kind == "day":
            shares.append(1.0 if open_today > 0 else 0.0)
            continue
        start = period_start(kind, day)
        whole = period_open.get(start)
        if whole is None:
            whole = period_open[start] = fsum(
                hours.open_seconds(start + timedelta(days=k))
                for k in range((next_period_start(kind, start) - start).days)
            )
        shares.append(open_today / whole if whole > 0 else None)
    return tuple(shares)


class AccrualSchedule:
    """One shared item's accrual over local days ``first``..``last``, precomputed once.

    Summing a run of days is one ``math.fsum`` over a slice: exact to the last bit, so a
    complete month carries its monthly amount without drift from long running sums. With
    ``hours``, days carry their share of the period's open seconds (see the module rules).
    """

    def __init__(
        self, item: CostItem, first: date, last: date, hours: OpenHours | None = None
    ) -> None:
        self.item = item
        self.first = first
        self.hours = hours
        count = max((last - first).days + 1, 0)
        self._daily = [0.0] * count
        # Days whose share accrues over open seconds (else evenly over the real day).
        self._by_open_time = [False] * count
        if item.is_usage:
            return
        span_first, span_last = accrual_span(item)
        lo = 0 if span_first is None else max((span_first - first).days, 0)
        hi = count if span_last is None else min((span_last - first).days + 1, count)
        shares: tuple[float | None, ...] = ()
        if hours is not None and hi > lo:
            kind = "month" if item.amortize_months is not None else item.per
            assert kind is not None  # config guarantees one way of costing
            shares = _open_shares(hours, kind, first, last)
        amount = _period_amount(item)
        for i in range(lo, hi):
            share = shares[i] if shares else None
            if share is None:
                self._daily[i] = _rate_within_span(item, first + timedelta(days=i))
            else:
                self._daily[i] = amount * share
                self._by_open_time[i] = True

    def accrued(self, first: date, last: date, last_day_fraction: float = 1.0) -> float:
        """Cost accrued from the start of ``first`` to ``last_day_fraction`` of ``last``.

        ``last_day_fraction`` is the real-time share of day ``last`` (see
        :func:`collector.periods.elapsed_day_fraction`); with service hours it becomes the
        share of that day's open seconds elapsed by then.
        """
        start = max((first - self.first).days, 0)
        end = min((last - self.first).days, len(self._daily) - 1)
        if end < start:
            return 0.0
        if end != (last - self.first).days:
            last_day_fraction = 1.0  # ``last`` lies past the schedule; ``end`` is a whole day
        if self.hours is not None and self._by_open_time[end] and last_day_fraction < 1.0:
            last_day_fraction = self.hours.open_share(last, last_day_fraction)
        return fsum(self._daily[start:end]) + self._daily[end] * last_day_fraction
