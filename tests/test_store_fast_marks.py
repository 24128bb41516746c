"""Repeat marks of a first read's fast path (calls of one leg, all new) equal a rebuild.

commit_records stores a chunk of new single-leg calls with one statement and marks its
repeats with one pass of look-ups over the chunk (collector.store_writes._mark_repeats:
each contact's follower and its customer's latest earlier start, both in one query).
Here customers recur within a chunk and across chunks, chunks arrive in time order (a
backfill) and out of it, some are re-read (duplicates, the general path), and after
every commit the marks and every column of the days' rollups must equal those rebuilt
from scratch by _rebuild_rollups(repeats=True), which reads every stored contact.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from adapters.base import Leg, hash_customer
from collector.model import KpiDefinitions
from collector.store_base import SqlStore
from tests.store_factory import StoreFactory, query, rebuild

pytest_plugins = ("tests.store_backends",)  # make_store, on SQLite and PostgreSQL

DAY0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # Monday 2026-11-02 00:00 UTC
WINDOW = 3 * 3600.0
DEFS = KpiDefinitions(20.0, (), 5.0, WINDOW)
CUSTOMERS = [f"+47 555 {n:02d}" for n in range(6)]


def leg(n: int, start: float, customer: str | None, person: bool) -> Leg:
    """Call n, one leg of 100 s from DAY0 + start; a person's leg is answered, 60 s billed."""
    billsec = 60.0 if person else 0.0
    return Leg(f"leg{n}", f"call{n}", "voice", DAY0 + start, DAY0 + start + 100, billsec,
               person, person, "support", "inbound", "",
               None if customer is None else hash_customer(customer))


def state(store: SqlStore) -> tuple[list[tuple[object, ...]], list[object]]:
    marks = sorted(query(store, "SELECT customer, start, source, id, day, channel, direction, "
                                "queue, outcome FROM repeats"))
    rollups = sorted(store.rollups_as_of(date(2026, 10, 1), datetime(2026, 12, 31, tzinfo=UTC)))
    return marks, rollups


@pytest.mark.parametrize("seed", range(10))
def test_fast_path_marks_equal_a_rebuild(make_store: StoreFactory, seed: int) -> None:
    rng = random.Random(seed)
    store = make_store(ZoneInfo("UTC"), kpi=DEFS)
    # 120 calls over 3 days (starts on whole minutes, some shared: equal starts of one
    # customer are neither's follower), six customers or none: with a 3 h window many are
    # followed, some only by a call of a later chunk, some by one of an earlier chunk.
    calls = [leg(n, rng.randrange(0, 3 * 86400, 60), rng.choice([*CUSTOMERS, None]),
                 rng.random() < 0.7) for n in range(120)]
    in_order = seed % 2 == 0  # a backfill reads in time order; a webhook stream need not
    if in_order:
        calls.sort(key=lambda c: c.start)
    else:
        rng.shuffle(calls)
    stored: list[Leg] = []
    marked = 0
    while calls:
        take = rng.randint(1, 25)
        chunk, calls = calls[:take], calls[take:]
        if stored and rng.random() < 0.2:  # a re-read: known calls again, with new ones
            chunk = rng.sample(stored, min(3, len(stored))) + chunk
        store.commit_records("pbx", [], chunk, None)
        stored += chunk
        incremental = state(store)
        rebuild(store)
        assert incremental == state(store), (seed, chunk)
        marked = len(incremental[0])
    assert len({c.call for c in stored}) == 120
    # The fuzz must reach the case under test: repeats exist (a seed with none would
    # prove nothing about the look-ups).
    assert marked > 0, seed
