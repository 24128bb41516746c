"""The call model: the legs of one call (one CDR per dial attempt or bridge) -> one contact.

Pure functions over plain data. The store calls `merge_legs` each time a call gains a leg,
whichever read the leg came in, so a call's contact is always the same function of all its
legs stored so far.

    start     = min(leg.start)
    handled   = any leg answered by a person
    talk      = |U [leg.end - leg.billsec, leg.end]|  over legs answered by a person
    handle    = talk
    billable  = |U [leg.end - leg.billsec, leg.end]|  over all answered legs
    wait      = min(person interval starts) - start     (None when nobody answered)
    queue, direction, outcome: of the first leg (by start, then file order) that has one
    reason    = the last leg's reason when the call was not handled
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from adapters.base import Contact, Leg

OTHER_QUEUE = "other"
DEFAULT_DIRECTION = "inbound"


def union_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of closed intervals [a, b]; overlaps and repeats count once."""
    total = 0.0
    current_start = current_end = None
    for a, b in sorted(intervals):
        if b <= a:
            continue
        if current_end is None or a > current_end:
            if current_end is not None and current_start is not None:
                total += current_end - current_start
            current_start, current_end = a, b
        elif b > current_end:
            current_end = b
    if current_end is not None and current_start is not None:
        total += current_end - current_start
    return total


def merge_legs(call: str, legs: Sequence[Leg]) -> Contact:
    """One contact for the call `call` from its legs, given in order (start, then file order).

    `legs` must not be empty. The order decides ties (the queue of two legs starting in the
    same second is the one the file wrote first); the arithmetic does not depend on it.
    """
    first = legs[0]
    if len(legs) == 1:  # the usual case of one CDR per call: no sorting, no union
        return single_leg_contact(first)
    start = min(leg.start for leg in legs)
    person = [(leg.end - leg.billsec, leg.end) for leg in legs if leg.person and leg.billsec > 0]
    answered = [
        (leg.end - leg.billsec, leg.end) for leg in legs if leg.answered and leg.billsec > 0
    ]
    talk = union_seconds(person)
    handled = bool(person)
    wait = max(0.0, min(a for a, _ in person) - start) if handled else None
    queue = next((leg.queue for leg in legs if leg.queue), OTHER_QUEUE)
    direction = next((leg.direction for leg in legs if leg.direction), DEFAULT_DIRECTION)
    outcome = next((leg.outcome for leg in legs if leg.outcome), "")
    customer = next((leg.customer for leg in legs if leg.customer is not None), None)
    prices = [leg.price for leg in legs if leg.price is not None]
    return Contact(
        call,
        first.channel,
        direction,
        queue,
        start,
        handled,
        talk,
        talk,
        union_seconds(answered),
        outcome,
        customer,
        sum(prices) if prices else None,
        "" if handled else legs[-1].reason,
        wait,
    )


def single_leg_contact(leg: Leg) -> Contact:
    """merge_legs of a call of one leg, the store's hot path: no lists, no union."""
    handled = leg.person and leg.billsec > 0
    talk = leg.billsec if handled else 0.0
    wait = leg.end - leg.billsec - leg.start if handled else None
    # tuple.__new__ skips NamedTuple.__new__'s Python-level call (once per stored call).
    return tuple.__new__(Contact, (
        leg.call,
        leg.channel,
        leg.direction or DEFAULT_DIRECTION,
        leg.queue or OTHER_QUEUE,
        leg.start,
        handled,
        talk,
        talk,
        leg.billsec if leg.answered else 0.0,
        leg.outcome,
        leg.customer,
        leg.price,
        "" if handled else leg.reason,
        wait if wait is None or wait > 0 else 0.0,
    ))


def single_leg_rows(
    legs: Sequence[Leg], source: str, day_of: Callable[[float], int]
) -> list[tuple[Any, ...]]:
    """The store's rows for calls of one leg each, in one loop (the hot path of a first
    read): each is single_leg_contact(leg)'s fields, then source, local day and the leg
    kept in the row: its id, end, billsec and flags (answered 1, person 2, queue mapped 4,
    direction mapped 8)."""
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for lid, call, channel, start, end, billsec, answered, person, queue, direction, \
            outcome, customer, price, reason in legs:
        flags = answered + 2 * person + 4 * (queue != "") + 8 * (direction != "")
        billable = billsec if answered else 0.0
        if person and billsec > 0:
            wait = end - billsec - start
            append((call, channel, direction or DEFAULT_DIRECTION, queue or OTHER_QUEUE, start,
                    True, billsec, billsec, billable, outcome, customer, price, "",
                    wait if wait > 0 else 0.0, source, day_of(start), lid, end, billsec, flags))
        else:
            append((call, channel, direction or DEFAULT_DIRECTION, queue or OTHER_QUEUE, start,
                    False, 0.0, 0.0, billable, outcome, customer, price, reason, None,
                    source, day_of(start), lid, end, billsec, flags))
    return rows


def leg_of_contact(contact: Contact) -> Leg:
    """A stored contact that has no legs (written before legs were kept) as one leg.

    Its talk interval is taken to end at start + wait + talk, so merging it with a later
    leg keeps its talk and billable seconds.
    """
    wait = contact.wait_seconds or 0.0
    seconds = contact.billable_seconds if contact.billable_seconds else contact.talk_seconds
    end = contact.start + wait + seconds
    return Leg(
        "contact:" + contact.id,
        contact.id,
        contact.channel,
        contact.start,
        end,
        seconds,
        seconds > 0,
        contact.handled,
        contact.queue,
        contact.direction,
        contact.outcome,
        contact.customer,
        contact.price,
        contact.reason,
    )
