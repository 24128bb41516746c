"""Repeat marks stay right when a recomputed call moves (issue 11 item 5's known limits).

A call's contact is recomputed when another of its legs arrives (issue 9). If that leg is
earlier, the call's start moves earlier; if it carries the caller ID the first leg lacked,
the call's customer changes. A contact that was a repeat only because of this call (the
call was its follower) must lose its mark then, and the incremental marks must equal a
rebuild from scratch. Window 7 d = 604,800 s throughout.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from adapters.base import Leg, hash_customer
from collector.model import KpiDefinitions
from collector.store_base import SqlStore
from tests.store_factory import StoreFactory, query, rebuild

pytest_plugins = ("tests.store_backends",)  # make_store, on SQLite and PostgreSQL

DAY0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # Monday 2026-11-02 00:00 UTC
DEFS = KpiDefinitions(20.0, (), 5.0, 7 * 86400.0)
ALICE, BOB = "+47 555 01", "+47 555 02"


def leg(lid: str, call: str, start: float, customer: str | None, person: bool = True) -> Leg:
    """A 100 s leg from DAY0 + start; a person's leg is answered and billed 60 s."""
    billsec = 60.0 if person else 0.0
    return Leg(lid, call, "voice", DAY0 + start, DAY0 + start + 100, billsec, person, person,
               "support", "inbound", "", None if customer is None else hash_customer(customer))


def marks(store: SqlStore) -> dict[str, int]:
    """Contact id -> 1 when marked a repeat; and the days' summed repeat counts under '*'."""
    got = {cid: 1 for (cid,) in query(store, "SELECT id FROM repeats")}
    got["*"] = sum(r.repeats for r in store.rollups_as_of(date(2026, 10, 1),
                                                            datetime(2026, 12, 31, tzinfo=UTC)))
    return got


def rollups(store: SqlStore) -> list[object]:
    return sorted(store.rollups_as_of(date(2026, 10, 1), datetime(2026, 12, 31, tzinfo=UTC)))


def rebuilt(store: SqlStore) -> dict[str, int]:
    rebuild(store)
    return marks(store)


@pytest.fixture
def store(make_store: StoreFactory) -> SqlStore:
    """The store under test, on SQLite and on PostgreSQL (tests/store_backends.py)."""
    return make_store(ZoneInfo("UTC"), kpi=DEFS)


def test_a_call_whose_start_moves_before_its_predecessor_unmarks_it(store: SqlStore) -> None:
    # A: Alice, handled, Tuesday 00:00 (86,400). B: Alice, first leg Wednesday (172,800).
    store.commit_records("pbx", [], [leg("a:1", "a", 86400, ALICE)], None)
    store.commit_records("pbx", [], [leg("b:1", "b", 2 * 86400, ALICE)], None)
    # B follows A by 86,400 s <= 604,800: A is a repeat; B has no follower.
    assert marks(store) == {"a": 1, "*": 1}
    # B's earlier leg arrives: B now starts Monday 00:00 (0), before A. A has no contact
    # in (86,400, 691,200] any more: not a repeat. B (handled) is followed by A 86,400 s
    # later: B is the repeat now. Still one repeat, on Monday instead of Tuesday.
    store.commit_records("pbx", [], [leg("b:0", "b", 0, ALICE)], None)
    assert marks(store) == {"b": 1, "*": 1}
    assert rebuilt(store) == {"b": 1, "*": 1}


def test_a_call_whose_customer_changes_unmarks_the_old_customers_contact(
        store: SqlStore) -> None:
    # A: Bob, handled, Monday 00:00. B: its first leg (Monday 01:00) carries Bob's number.
    store.commit_records("pbx", [], [leg("a:1", "a", 0, BOB)], None)
    store.commit_records("pbx", [], [leg("b:1", "b", 3600, BOB)], None)
    assert marks(store) == {"a": 1, "*": 1}  # B follows A by 3,600 s
    # B's earlier leg (00:30) with Alice's number: the merged call takes the first leg's
    # customer, Alice. Bob's A has no follower left: not a repeat. Alice has one contact.
    store.commit_records("pbx", [], [leg("b:0", "b", 1800, ALICE)], None)
    assert marks(store) == {"*": 0}
    assert rebuilt(store) == {"*": 0}


def test_an_unanswered_earlier_leg_with_another_number_unmarks_the_predecessor(
        store: SqlStore) -> None:
    # A: Alice, handled, Monday 00:00. B: Alice, first leg Monday 12:00, 43,200 s after A.
    store.commit_records("pbx", [], [leg("a:1", "a", 0, ALICE)], None)
    store.commit_records("pbx", [], [leg("b:1", "b", 43200, ALICE)], None)
    assert marks(store) == {"a": 1, "*": 1}
    # An earlier, unanswered leg of B with Bob's number at 06:00: the call takes the first
    # leg's customer, Bob; B stays handled (its 12:00 leg), but Alice's A has no follower.
    store.commit_records("pbx", [], [leg("b:0", "b", 21600, BOB, person=False)], None)
    assert marks(store) == {"*": 0}
    assert rebuilt(store) == {"*": 0}


def test_marks_elsewhere_are_untouched(store: SqlStore) -> None:
    # Alice: A (0), C (3,600), B's first leg (7,200). A followed by C, C by B: 2 repeats.
    store.commit_records("pbx", [], [leg("a:1", "a", 0, ALICE), leg("c:1", "c", 3600, ALICE),
                                     leg("b:1", "b", 7200, ALICE)], None)
    assert marks(store) == {"a": 1, "c": 1, "*": 2}
    # B's earlier leg at 1,800: order A (0), B (1,800), C (3,600). A is followed by B, B by
    # C: A and B are repeats; C (the last) is not.
    store.commit_records("pbx", [], [leg("b:0", "b", 1800, ALICE)], None)
    assert marks(store) == {"a": 1, "b": 1, "*": 2}
    assert rebuilt(store) == {"a": 1, "b": 1, "*": 2}


@pytest.mark.parametrize("seed", range(12))
def test_incremental_marks_equal_a_rebuild_on_random_arrivals(make_store: StoreFactory,
                                                               seed: int) -> None:
    # Calls of 2-3 legs from three customers (or none), legs arriving in random batches and
    # orders, window 1 h over 3 h of starts: after every commit the marks and the days'
    # rollups (repeats and every other column) equal those rebuilt from scratch (which
    # read every contact).
    import random

    rng = random.Random(seed)
    s = make_store(ZoneInfo("UTC"), kpi=DEFS._replace(fcr_window=3600.0))
    legs = [leg(f"{c}:{n}", f"c{c}", rng.randrange(0, 10800, 60),
                rng.choice([ALICE, BOB, "+47 555 03", None]), person=rng.random() < 0.6)
            for c in range(14) for n in range(rng.choice([2, 3]))]
    rng.shuffle(legs)
    try:
        while legs:
            take = rng.randint(1, 4)
            batch, legs = legs[:take], legs[take:]
            s.commit_records("pbx", [], batch, None)
            incremental, rows = marks(s), rollups(s)
            assert incremental == rebuilt(s), (seed, batch)
            assert rows == rollups(s), (seed, batch)  # every column of every day, too
    finally:
        s.close()
