"""The call model: legs -> one contact, with the arithmetic worked out by hand."""

from __future__ import annotations

from adapters.base import Contact, Leg
from collector.calls import (
    leg_of_contact,
    merge_legs,
    single_leg_contact,
    single_leg_rows,
    union_seconds,
)

T = 1793610000.0  # 2026-11-02 10:00:00 Europe/Oslo (09:00Z)


def leg(lid: str, start: float, end: float, billsec: float, answered: bool, person: bool,
        queue: str = "", direction: str = "", outcome: str = "", reason: str = "",
        call: str = "c1") -> Leg:
    return Leg(lid, call, "voice", T + start, T + end, billsec, answered, person,
               queue, direction, outcome, "cust", None, reason)


def test_union_counts_overlaps_and_repeats_once() -> None:
    assert union_seconds([]) == 0
    # [0,10] + [5,15] overlap by 5: 15; [20,25] apart: +5 = 20.
    assert union_seconds([(20, 25), (0, 10), (5, 15)]) == 20
    # Touching intervals join: [0,10] + [10,20] = 20; a repeat adds nothing.
    assert union_seconds([(0, 10), (10, 20), (0, 10)]) == 20
    # An interval inside another adds nothing; an empty one neither.
    assert union_seconds([(0, 100), (30, 40), (50, 50)]) == 100


def test_queue_call_two_unanswered_agents_then_one() -> None:
    legs = [
        leg("1", 0, 20, 0, False, False, queue="support", reason="no_answer"),
        leg("2", 25, 45, 0, False, False, queue="support", reason="no_answer"),
        leg("3", 50, 355, 300, True, True, queue="support", outcome="sale"),
    ]
    contact = merge_legs("c1", legs)
    # start = the first leg's 10:00:00; talk = billsec of the one person-answered leg = 300;
    # its interval is [355 - 300, 355] = [55, 355], so wait = 55 - 0 = 55.
    assert contact == Contact("c1", "voice", "inbound", "support", T, True, 300.0, 300.0,
                              300.0, "sale", "cust", None, "", 55.0)


def test_local_channel_halves_count_once() -> None:
    # ;1 half: answered by the Local channel (not a person), [10, 250]; ;2 half: the phone,
    # the same [10, 250]. Talk = 240 from the ;2 half alone; billable = the union = 240.
    legs = [
        leg("a", 0, 250, 240, True, False, queue="support"),
        leg("b", 2, 250, 240, True, True),
    ]
    contact = merge_legs("c1", legs)
    assert (contact.handled, contact.talk_seconds, contact.billable_seconds) == (True, 240, 240)
    assert contact.wait_seconds == 10  # 250 - 240 = 10 after the call's start
    assert contact.queue == "support"  # the first leg with a mapped context


def test_ivr_only_call_is_billable_but_not_handled() -> None:
    contact = merge_legs("c1", [leg("1", 0, 40, 38, True, False, reason="no_agent")])
    assert (contact.handled, contact.talk_seconds, contact.billable_seconds) == (False, 0, 38)
    assert contact.reason == "no_agent" and contact.wait_seconds is None
    assert (contact.queue, contact.direction) == ("other", "inbound")  # nothing mapped


def test_unhandled_reason_is_the_last_legs_and_labels_the_first_mapped() -> None:
    legs = [
        leg("1", 0, 20, 0, False, False, reason="no_answer"),
        leg("2", 20, 30, 0, False, False, queue="sales", direction="outbound", reason="busy"),
        leg("3", 30, 40, 0, False, False, queue="support", outcome="lead", reason="congestion"),
    ]
    contact = merge_legs("c1", legs)
    assert (contact.queue, contact.direction, contact.outcome) == ("sales", "outbound", "lead")
    assert (contact.handled, contact.reason, contact.billable_seconds) == (False, "congestion", 0)


def test_an_answered_leg_with_zero_billsec_is_no_person() -> None:
    contact = merge_legs("c1", [leg("1", 0, 3, 0, True, True)])
    assert (contact.handled, contact.talk_seconds, contact.wait_seconds) == (False, 0, None)


def test_a_legacy_contact_as_a_leg_keeps_its_seconds() -> None:
    old = Contact("c1", "voice", "inbound", "support", T, True, 120.0, 120.0, 120.0)
    as_leg = leg_of_contact(old)
    # No wait known: the interval is [T, T + 120]; a later leg [T+200, T+260] adds 60.
    later = leg("2", 150, 260, 60, True, True)
    contact = merge_legs("c1", [as_leg, later])
    assert (contact.talk_seconds, contact.billable_seconds, contact.wait_seconds) == (180, 180, 0)


def test_the_stores_one_leg_rows_are_merge_legs_of_one_leg() -> None:
    legs = [
        leg("p", 0, 100, 60, True, True, queue="support", direction="outbound", outcome="sale"),
        leg("ivr", 0, 40, 38, True, False, reason="no_agent"),
        leg("na", 0, 20, 0, False, False, queue="support", reason="no_answer"),
        leg("zero", 0, 3, 0, True, True, reason="no_agent"),
        leg("odd", 10, 20, 30, True, True),  # billsec longer than the leg: wait clamps to 0
    ]
    rows = single_leg_rows(legs, "pbx", lambda epoch: 7)
    for one, row in zip(legs, rows, strict=True):
        assert row[:14] == tuple(single_leg_contact(one)) == tuple(merge_legs(one.call, [one]))
        assert row[14:16] == ("pbx", 7) and row[16:19] == (one.id, one.end, one.billsec)
    # flags: answered 1 + person 2 + queue mapped 4 + direction mapped 8.
    assert [row[19] for row in rows] == [15, 1, 4, 3, 3]
    assert rows[4][13] == 0.0  # wait = 20 - 30 - 10 < 0: 0, never negative
