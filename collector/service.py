"""Service figures of single contacts: wait against the thresholds, repeats, queue enrichment.

Pure functions over plain data; the store calls them when contacts arrive.

    answered in threshold  handled and wait is known and wait <= threshold(queue)
    short abandon          not handled and wait is known and wait <= short_abandon
    identified             handled and the contact carries a customer key
    repeat                 handled, and another contact (any source, channel, queue, handled
                           or not) of the same customer starts in (start, start + window]
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from adapters.base import Contact, QueueCall
from collector.model import KpiDefinitions

OTHER_QUEUE = "other"


def service_parts(contact: Sequence[Any], defs: KpiDefinitions) -> tuple[int, float, int, int, int]:
    """(waited, wait of a handled contact, answered in threshold, short abandon, identified)
    for one contact given in Contact's field order."""
    handled = bool(contact[5])
    wait = contact[13]
    identified = 1 if handled and contact[10] is not None else 0
    if wait is None:
        return 0, 0.0, 0, 0, identified
    if handled:
        return 1, wait, 1 if wait <= defs.threshold_for(contact[3]) else 0, 0, identified
    return 1, 0.0, 0, 1 if wait <= defs.short_abandon else 0, identified


def enrich_contact(contact: Contact, entry: QueueCall) -> Contact:
    """`contact` with the queue, exact wait and leaving reason of its queue_log entry.

    Whether it was handled stays the CDR's (it has the talk); the wait is the queue's
    holdtime or waittime, exact where the CDR only has the time to the first answer.
    """
    return contact._replace(
        queue=entry.queue or contact.queue,
        wait_seconds=entry.wait,
        reason="" if contact.handled else (entry.left if entry.left != "answered"
                                           else contact.reason),
    )


def repeats_of(
    contacts: Sequence[tuple[float, bool]], window: float
) -> list[bool]:
    """For one customer's contacts as (start, handled), sorted by start: which are repeats.

    A handled contact is a repeat when another contact starts after it and at most `window`
    seconds after its start (inclusive). Contacts starting in the same second do not follow
    one another.
    """
    starts = [start for start, _ in contacts]
    out: list[bool] = []
    for start, handled in contacts:
        if not handled:
            out.append(False)
            continue
        later = bisect_right(starts, start)
        out.append(later < len(starts) and starts[later] - start <= window)
    return out
