"""Plain data of the cost model (daily rollups); the record types come from the adapter contract."""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

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
    "Batch",
    "Contact",
    "Rejection",
    "Rollup",
    "hash_customer",
    "row_id",
]


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
