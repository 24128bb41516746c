"""Plain data shared by adapters, the store and the cost model: contacts, rejections, rollups."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import NamedTuple

CHANNELS_KNOWN = ("voice", "email", "chat", "sms", "social", "portal", "video", "other")
DIRECTIONS = ("inbound", "outbound")


class Contact(NamedTuple):
    """One normalised customer contact (a call, a ticket, a chat).

    Field order is the store's column order, so a Contact binds straight into SQL.
    Times are UTC epoch seconds; durations are seconds.
    """

    id: str
    channel: str
    direction: str
    queue: str
    start: float
    handled: bool
    handle_seconds: float  # talk + hold + after-call work, the parts the export has
    talk_seconds: float
    billable_seconds: float  # what the carrier bills (per_minute costs use this)
    outcome: str = ""  # "" when none, else a configured outcome such as "sale"
    customer: str | None = None  # hashed, never the raw number or address
    price: float | None = None  # telephony price carried by the export itself
    reason: str = ""  # why an unhandled contact was not handled (no_answer, busy, ...)


class Rejection(NamedTuple):
    """An input record that was skipped, with a bounded reason and where it was."""

    reason: str  # bounded vocabulary: columns, date, duration, encoding, id, shape, ...
    line: int  # 1-based line (file) or item index (API page); 0 when unknown
    detail: str = ""  # short human text for the log; never contains secrets


class Batch(NamedTuple):
    """What one adapter step yields: contacts and rejections plus the position after them.

    The store commits contacts and position in one transaction, so a crash between two
    batches resumes exactly after the last committed one.
    """

    contacts: list[Contact]
    rejections: list[Rejection]
    position: str | None  # opaque to everything but the adapter; None keeps the old one
    location: str = ""  # file or URL the batch came from, for log lines


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


def hash_customer(raw: str | None) -> str | None:
    """A stable, non-reversible key for a customer (phone number, e-mail address)."""
    if raw is None:
        return None
    cleaned = raw.strip().lower()
    if not cleaned:
        return None
    return hashlib.blake2b(cleaned.encode("utf-8", "replace"), digest_size=8).hexdigest()


def row_id(parts: tuple[str, ...] | list[str]) -> str:
    """A stable id for a record that has none of its own: a hash of its fields."""
    joined = "\x1f".join(parts).encode("utf-8", "surrogateescape")
    return "h:" + hashlib.blake2b(joined, digest_size=12).hexdigest()
