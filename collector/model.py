"""Plain data of the cost model (daily rollups); the record types come from the adapter contract."""

from __future__ import annotations

from datetime import date
from typing import Literal, NamedTuple, get_args

# Contacts, rejections and batches are the adapters' contract; re-exported for collector/.
from adapters.base import (
    CHANNELS_KNOWN,
    DIRECTIONS,
    Batch,
    Contact,
    Rejection,
    hash_customer,
    row_id,
)

__all__ = [
    "CHANNELS_KNOWN",
    "DIRECTIONS",
    "PERIODS",
    "WINDOWS",
    "Arrival",
    "Batch",
    "Contact",
    "KpiDefinitions",
    "PeriodName",
    "Rejection",
    "Rollup",
    "WindowName",
    "hash_customer",
    "row_id",
]

# The periods and windows of every figure: the `period` and `window` label values, the
# periods a cost can be given per, and what [metrics] may keep.
PeriodName = Literal["day", "week", "month", "quarter", "year"]
PERIODS: tuple[PeriodName, ...] = get_args(PeriodName)
WindowName = Literal["current", "previous"]
WINDOWS: tuple[WindowName, ...] = get_args(WindowName)


class Rollup(NamedTuple):
    """Contacts of one local calendar day aggregated by label set and outcome."""

    day: date
    channel: str
    direction: str
    queue: str
    outcome: str
    contacts: int  # all contacts, handled or not
    handled: int
    handle_seconds: float  # over handled contacts
    talk_seconds: float  # over handled contacts
    billable_seconds: float  # over all contacts
    price: float  # sum of export prices over all contacts
    # Service figures (issue 11); defaults keep a Rollup built by older code whole.
    waited: int = 0  # contacts whose wait is known (handled or not)
    wait_seconds: float = 0.0  # sum of wait over handled contacts whose wait is known
    answered_in_threshold: int = 0  # handled contacts with wait <= the queue's threshold
    abandoned_short: int = 0  # unhandled contacts with wait <= short_abandon
    identified: int = 0  # handled contacts that carry a customer key
    repeats: int = 0  # handled contacts followed by a contact of the same customer in the window


class KpiDefinitions(NamedTuple):
    """What the store needs to roll up service level and repeats (from [service_level], [fcr]).

    Stored in the store's meta; a store opened with other definitions rebuilds its rollups
    (and its repeat marks, when the window changed) once, as for a changed time zone.
    """

    threshold: float = 20.0  # seconds: answered within (<=) counts toward service level
    queue_thresholds: tuple[tuple[str, float], ...] = ()  # (queue label, seconds), sorted
    short_abandon: float = 5.0  # seconds: an unhandled contact with wait <= this is short
    fcr_window: float = 604800.0  # seconds after a handled contact's start (inclusive)

    def threshold_for(self, queue: str) -> float:
        for name, seconds in self.queue_thresholds:
            if name == queue:
                return seconds
        return self.threshold


class Arrival(NamedTuple):
    """Handled contacts of one label set that started in one 15-minute bucket (the
    projection's arrival profile, collector.projection)."""

    start: float  # epoch seconds of the bucket's start (a multiple of 900)
    channel: str
    direction: str
    queue: str
    handled: int
