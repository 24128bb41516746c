"""Allocation of costs to contacts and the figures for every period and window, from rollups.

Rules:

- Windows: every period kind (day, week, month, quarter, year) is reported as ``current``
  (local period start up to ``now``) and ``previous`` (the last complete period); see
  :mod:`collector.periods`. Shared costs accrue by :mod:`collector.accrual`, up to ``now`` in
  the current window.
- Shared (non-usage) cost accrued inside a window is allocated to that window's handled
  contacts within the item's scope (``channels``, ``directions``, ``queues``; unset means
  all): in proportion to handle time (the default) or to the number of handled contacts
  (``allocate = "contacts"``). If the handled contacts in scope have no handle time at all,
  allocation by handle time falls back to contact count.
- Cost that finds no handled contact in scope is reported as
  ``contactcenter_cost_unallocated{component}``; it is never dropped. A weekend day with no
  calls shows that day's rent as unallocated in the day figures, while in the month figures
  the same rent lands on the month's contacts.
- Usage costs attach to the contacts that caused them, within the item's scope and
  effective dates: ``per_minute`` x billable seconds / 60 of all contacts (handled or not),
  ``per_contact`` x handled contacts, and the export's own price as component
  ``telephony``. Usage cost of contacts that were never handled still counts in
  ``contactcenter_cost``.
- Cost per contact = all components' cost of a label set / its handled contacts.
  Cost per outcome = total cost of a queue's contacts / the handled contacts of that queue
  with that outcome. An outbound campaign is its own queue, so for it this is the outbound
  cost per sale or per lead. Average handle time = handle seconds / handled contacts.
- A ratio is absent when its denominator is 0, never NaN or Inf. Label sets with no
  contacts in a window are left out. No row is ever labelled ``total``.

The work is on daily rollups, never on single contacts: each label set's days are summed
once into running totals, each shared item's accrual is precomputed once per day, and every
window is then a handful of subtractions.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from itertools import accumulate
from typing import NamedTuple

from collector.accrual import AccrualSchedule
from collector.config import COMPONENTS, Settings
from collector.metrics import FIGURE_NAMES, Sample
from collector.model import Rollup
from collector.periods import ReportWindow, first_day_needed, report_windows

Key = tuple[str, str, str]  # channel, direction, queue


class Totals(NamedTuple):
    """Sums over a run of days for one label set."""

    contacts: float
    handled: float
    handle_seconds: float
    billable_seconds: float
    price: float
    talk_seconds: float
    waited: float = 0.0  # contacts whose wait is known
    wait_seconds: float = 0.0  # over handled contacts
    answered_in_threshold: float = 0.0
    abandoned_short: float = 0.0
    identified: float = 0.0  # handled contacts with a customer key
    repeats: float = 0.0


_ZERO = Totals(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class RunningTotals:
    """Running totals of one series over its sorted days; any run of days in O(log n)."""

    def __init__(self, by_day: dict[date, list[float]]) -> None:
        self._days = sorted(by_day)
        columns = zip(*(by_day[d] for d in self._days), strict=True) if by_day else ()
        self._cumulative = [list(accumulate(col, initial=0.0)) for col in columns]

    def between(self, first: date, last: date) -> tuple[float, ...]:
        lo = bisect_left(self._days, first)
        hi = bisect_right(self._days, last)
        return tuple(col[hi] - col[lo] for col in self._cumulative)


class RollupIndex:
    """The rollups of ``first``..``last`` grouped by label set and by (queue, outcome)."""

    def __init__(self, rollups: Iterable[Rollup], first: date, last: date) -> None:
        by_key: dict[Key, dict[date, list[float]]] = {}
        by_outcome: dict[tuple[str, str], dict[date, list[float]]] = defaultdict(dict)
        channels: set[str] = set()
        waiting_queues: set[str] = set()
        # Unpacking the tuple is several times faster than attribute access per field.
        for (
            day,
            channel,
            direction,
            queue,
            outcome,
            n,
            handled,
            handle,
            talk,
            billable,
            price,
            waited,
            wait,
            in_threshold,
            short,
            identified,
            repeats,
        ) in rollups:
            channels.add(channel)
            if day < first or day > last:
                continue
            days = by_key.get((channel, direction, queue))
            if days is None:
                days = by_key[(channel, direction, queue)] = {}
            cell = days.get(day)
            if cell is None:
                days[day] = [n, handled, handle, billable, price, talk, waited, wait,
                             in_threshold, short, identified, repeats]
            else:
                cell[0] += n
                cell[1] += handled
                cell[2] += handle
                cell[3] += billable
                cell[4] += price
                cell[5] += talk
                cell[6] += waited
                cell[7] += wait
                cell[8] += in_threshold
                cell[9] += short
                cell[10] += identified
                cell[11] += repeats
            if waited:
                waiting_queues.add(queue)
            if outcome and handled:
                by_outcome[(queue, outcome)].setdefault(day, [0.0])[0] += handled
        self.channels = channels
        self.waiting_queues = waiting_queues  # queues with a contact whose wait is known
        self.has_price = any(c[4] != 0 for days in by_key.values() for c in days.values())
        self.keys = sorted(by_key)
        self._by_key = {key: RunningTotals(days) for key, days in by_key.items()}
        self._by_outcome = {key: RunningTotals(days) for key, days in sorted(by_outcome.items())}

    def totals(self, key: Key, first: date, last: date) -> Totals:
        if first > last:
            return _ZERO
        return Totals(*self._by_key[key].between(first, last))

    def outcomes(self, first: date, last: date) -> dict[tuple[str, str], float]:
        counts = {k: rt.between(first, last)[0] for k, rt in self._by_outcome.items()}
        return {k: n for k, n in counts.items() if n > 0}


def allocate_window(
    settings: Settings,
    index: RollupIndex,
    schedules: Sequence[AccrualSchedule],
    w: ReportWindow,
) -> tuple[dict[Key, Totals], dict[Key, dict[str, float]], dict[str, float]]:
    """Contacts, allocated cost per label set and component, and unallocated cost."""
    totals = {k: index.totals(k, w.first, w.last) for k in index.keys}
    totals = {k: t for k, t in totals.items() if t.contacts > 0}
    cost: dict[Key, dict[str, float]] = {k: defaultdict(float) for k in totals}
    unallocated: dict[str, float] = defaultdict(float)
    for schedule in schedules:
        item = schedule.item
        amount = schedule.accrued(w.first, w.last, w.last_day_fraction)
        scope = [k for k, t in totals.items() if t.handled > 0 and item.in_scope(*k)]
        weights = {k: totals[k].handle_seconds for k in scope}
        if item.allocate == "contacts" or sum(weights.values()) <= 0:
            weights = {k: totals[k].handled for k in scope}
        whole = sum(weights.values())
        if whole <= 0:
            unallocated[item.component] += amount
            continue
        for k, weight in weights.items():
            share = amount * weight / whole
            if math.isinf(share):  # amount * weight overflowed: weight / whole <= 1 first
                share = amount * (weight / whole)
            cost[k][item.component] += share
    for item in settings.costs:
        if not item.is_usage:
            continue
        first = max(w.first, item.from_) if item.from_ else w.first
        last = min(w.last, item.until) if item.until else w.last
        for k in totals:
            if not item.in_scope(*k):
                continue
            t = totals[k] if (first, last) == (w.first, w.last) else index.totals(k, first, last)
            if item.per_minute is not None:
                cost[k][item.component] += item.per_minute * t.billable_seconds / 60
            if item.per_contact is not None:
                cost[k][item.component] += item.per_contact * t.handled
    for k, t in totals.items():
        if t.price:
            cost[k]["telephony"] += t.price
    return totals, cost, unallocated


def add_service_figures(
    add: Callable[[str, dict[str, str], float], None],
    labels: dict[str, str],
    t: Totals,
    cost: float,
) -> None:
    """Service level, speed of answer, abandonment and first contact resolution of one
    label set in one window, with their parts. Ratios are left out when their
    denominator is 0; wait figures when no contact of the set has a known wait."""
    abandoned = t.contacts - t.handled
    add("contactcenter_contacts_abandoned_short", labels, t.abandoned_short)
    offered = t.handled + abandoned - t.abandoned_short
    if t.waited > 0:
        add("contactcenter_contacts_answered_in_threshold", labels, t.answered_in_threshold)
        add("contactcenter_wait_seconds", labels, t.wait_seconds)
        if t.handled > 0:
            add("contactcenter_average_speed_of_answer_seconds", labels,
                t.wait_seconds / t.handled)
        if offered > 0:
            add("contactcenter_service_level_ratio", labels, t.answered_in_threshold / offered)
    if offered > 0:
        add("contactcenter_abandonment_ratio", labels, (abandoned - t.abandoned_short) / offered)
    add("contactcenter_contacts_identified", labels, t.identified)
    add("contactcenter_contacts_repeat", labels, t.repeats)
    if t.identified > 0:
        add("contactcenter_first_contact_resolution_ratio", labels,
            1 - t.repeats / t.identified)
    if t.handled - t.repeats > 0:
        add("contactcenter_cost_per_resolution", labels, cost / (t.handled - t.repeats))


def compute_figures(settings: Settings, rollups: Sequence[Rollup], now: datetime) -> list[Sample]:
    """All cost-model gauges as of ``now`` (aware), grouped by metric name."""
    tz = settings.tz
    local_now = now.astimezone(tz)
    first, today = first_day_needed(local_now), local_now.date()
    index = RollupIndex(rollups, first, today)
    hours = settings.open_hours
    schedules = [
        AccrualSchedule(i, first, today, hours) for i in settings.costs if not i.is_usage
    ]
    used = {item.component for item in settings.costs} | (
        {"telephony"} if index.has_price else set()
    )
    components = [c for c in COMPONENTS if c in used]
    out: dict[str, list[Sample]] = {name: [] for name in FIGURE_NAMES}

    def add(name: str, labels: dict[str, str], value: float) -> None:
        out[name].append(Sample(name, labels, value))

    for w in report_windows(local_now, tz):
        totals, cost, unallocated = allocate_window(settings, index, schedules, w)
        pw = {"period": w.period, "window": w.window}
        queue_cost: dict[str, float] = defaultdict(float)
        for key, t in totals.items():
            labels = {**pw, "channel": key[0], "direction": key[1], "queue": key[2]}
            add("contactcenter_contacts", labels, t.handled)
            add("contactcenter_contacts_abandoned", labels, t.contacts - t.handled)
            for component in components:
                add("contactcenter_cost", {**labels, "component": component}, cost[key][component])
            key_cost = sum(cost[key].values())
            queue_cost[key[2]] += key_cost
            add("contactcenter_handle_time_seconds", labels, t.handle_seconds)
            if t.handled > 0:
                add("contactcenter_cost_per_contact", labels, key_cost / t.handled)
                add(
                    "contactcenter_average_handle_time_seconds",
                    labels,
                    t.handle_seconds / t.handled,
                )
            add("contactcenter_talk_time_seconds", labels, t.talk_seconds)
            add_service_figures(add, labels, t, key_cost)
        for component in components:
            add(
                "contactcenter_cost_unallocated",
                {**pw, "component": component},
                unallocated[component],
            )
        for (queue, outcome), count in index.outcomes(w.first, w.last).items():
            labels = {**pw, "queue": queue, "outcome": outcome}
            add("contactcenter_outcomes", labels, count)
            add("contactcenter_cost_per_outcome", labels, queue_cost[queue] / count)

    bench = settings.benchmark
    add("contactcenter_benchmark_low", {"channel": "default"}, bench.low)
    add("contactcenter_benchmark_high", {"channel": "default"}, bench.high)
    for channel in sorted((index.channels | set(bench.channels)) - {"default"}):
        band = bench.band_for(channel)
        add("contactcenter_benchmark_low", {"channel": channel}, band.low)
        add("contactcenter_benchmark_high", {"channel": channel}, band.high)
    defs = settings.kpi_definitions
    add("contactcenter_service_level_threshold_seconds", {"queue": "default"}, defs.threshold)
    for queue in sorted(index.waiting_queues - {"default"}):
        add("contactcenter_service_level_threshold_seconds", {"queue": queue},
            defs.threshold_for(queue))
    add("contactcenter_fcr_window_seconds", {}, defs.fcr_window)
    if hours is not None:
        add("contactcenter_open", {}, 1.0 if hours.is_open(local_now) else 0.0)
    return [sample for samples in out.values() for sample in samples]
