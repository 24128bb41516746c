"""Store: unique per (source, id), legs merged per call, position atomic with rows, rollups by local day."""

from __future__ import annotations

import itertools
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.base import Leg
from collector.calls import merge_legs
from collector.model import Contact, Rollup
from collector.store import Committed, DayMapper, SqliteStore, StoreVersionError
from collector.store_base import SqlStore
from tests.store_factory import INTEGRITY_ERRORS, StoreFactory, query

pytest_plugins = ("tests.store_backends",)  # make_store, on SQLite and PostgreSQL

OSLO = ZoneInfo("Europe/Oslo")


def call(cid: str, start: str, handled: bool = True, secs: float = 300, queue: str = "support",
         outcome: str = "", price: float | None = None) -> Contact:
    epoch = datetime.fromisoformat(start).timestamp()
    return Contact(cid, "voice", "inbound", queue, epoch, handled, secs if handled else 0,
                   secs if handled else 0, secs if handled else 0, outcome, None, price,
                   "" if handled else "no_answer")


@pytest.fixture
def store(make_store: StoreFactory) -> SqlStore:
    """The store under test, on SQLite and on PostgreSQL (tests/store_backends.py)."""
    return make_store(OSLO)


def test_day_mapper_uses_local_days_across_dst() -> None:
    days = DayMapper(OSLO)
    # 2026-03-28 23:30 UTC is 2026-03-29 00:30 CET (+1): local day 29 March.
    assert days.day(datetime(2026, 3, 28, 23, 30, tzinfo=UTC).timestamp()) == date(2026, 3, 29).toordinal()
    # 2026-03-29 22:30 UTC is 2026-03-30 00:30 CEST (+2): local day 30 March.
    assert days.day(datetime(2026, 3, 29, 22, 30, tzinfo=UTC).timestamp()) == date(2026, 3, 30).toordinal()
    # 2026-03-29 21:59 UTC is 23:59 CEST on the 29th.
    assert days.day(datetime(2026, 3, 29, 21, 59, tzinfo=UTC).timestamp()) == date(2026, 3, 29).toordinal()


def test_commit_is_idempotent_per_source_and_id(store: SqlStore) -> None:
    batch = [
        call("a", "2026-11-02T09:00:00+01:00", secs=300),
        call("b", "2026-11-02T10:00:00+01:00", secs=120, outcome="sale", price=0.5),
        call("c", "2026-11-02T11:00:00+01:00", handled=False),
    ]
    assert store.commit("pbx", batch, '{"offset":3}') == 3
    # The same three again plus one new one: only the new one counts.
    again = [*batch, call("d", "2026-11-02T12:00:00+01:00", secs=60)]
    assert store.commit("pbx", again, '{"offset":4}') == 1
    # The same id from another source is another contact.
    assert store.commit("helpdesk", [call("a", "2026-11-02T09:00:00+01:00")], None) == 1
    assert store.counts() == {"pbx": 4, "helpdesk": 1}
    assert store.position("pbx") == '{"offset":4}'
    assert store.position("helpdesk") is None

    rollups = store.rollups_as_of(date(2026, 11, 1), datetime(2026, 11, 3, tzinfo=UTC))
    by_outcome = {r.outcome: r for r in rollups}
    # No outcome: a(300) + c(unhandled) + d(60) from pbx, a(300) from helpdesk.
    assert by_outcome[""] == Rollup(date(2026, 11, 2), "voice", "inbound", "support", "", 4, 3,
                                    660.0, 660.0, 660.0, 0.0)
    assert by_outcome["sale"] == Rollup(date(2026, 11, 2), "voice", "inbound", "support", "sale",
                                        1, 1, 120.0, 120.0, 120.0, 0.5)


def test_duplicate_inside_one_batch_counts_once(store: SqlStore) -> None:
    c = call("x", "2026-11-02T09:00:00+01:00")
    assert store.commit("pbx", [c, c], None) == 1
    [rollup] = store.rollups_as_of(date(2026, 11, 1), datetime(2026, 11, 3, tzinfo=UTC))
    assert rollup.contacts == 1


def test_failed_commit_keeps_old_position_and_rows(store: SqlStore) -> None:
    store.commit("pbx", [call("a", "2026-11-02T09:00:00+01:00")], "p1")
    broken = call("b", "2026-11-02T09:05:00+01:00")._replace(channel=None)  # NOT NULL fails
    with pytest.raises(INTEGRITY_ERRORS, match=r"(?i)not[ -]null"):
        store.commit("pbx", [call("z", "2026-11-02T09:01:00+01:00"), broken], "p2")
    assert store.position("pbx") == "p1"
    assert store.counts() == {"pbx": 1}
    [rollup] = store.rollups_as_of(date(2026, 11, 1), datetime(2026, 11, 3, tzinfo=UTC))
    assert rollup.contacts == 1


def test_rollups_as_of_inside_a_day_uses_raw_rows(store: SqlStore) -> None:
    store.commit("pbx", [
        call("a", "2026-11-02T09:00:00+01:00", secs=100),
        call("b", "2026-11-02T15:00:00+01:00", secs=200),
        call("c", "2026-11-01T15:00:00+01:00", secs=50),
    ], None)
    noon = datetime(2026, 11, 2, 12, 0, tzinfo=OSLO)
    rollups = sorted(store.rollups_as_of(date(2026, 11, 1), noon))
    # 1 Nov whole; 2 Nov only call a (09:00 <= 12:00); call b (15:00) is after the moment.
    assert [(r.day.day, r.contacts, r.handle_seconds) for r in rollups] == [(1, 1, 50.0), (2, 1, 100.0)]
    evening = datetime(2026, 11, 2, 23, 0, tzinfo=OSLO)
    rollups = sorted(store.rollups_as_of(date(2026, 11, 2), evening))
    assert [(r.day.day, r.contacts, r.handle_seconds) for r in rollups] == [(2, 2, 300.0)]


def test_timezone_change_rebuilds_days(make_store: StoreFactory) -> None:
    store = make_store(ZoneInfo("UTC"))
    # 23:30 UTC on 1 Nov is 00:30 on 2 Nov in Oslo.
    store.commit("pbx", [call("a", "2026-11-01T23:30:00+00:00")], None)
    assert store.rollups_as_of(date(2026, 11, 1), datetime(2026, 11, 3, tzinfo=UTC))[0].day == date(2026, 11, 1)
    store.close()
    store = make_store(OSLO)
    [rollup] = store.rollups_as_of(date(2026, 11, 1), datetime(2026, 11, 3, tzinfo=UTC))
    assert rollup.day == date(2026, 11, 2)
    store.close()


def test_store_survives_reopen(make_store: StoreFactory) -> None:
    store = make_store(OSLO)
    store.commit("pbx", [call("a", "2026-11-02T09:00:00+01:00")], "p1")
    store.close()
    store = make_store(OSLO)
    assert store.position("pbx") == "p1"
    assert store.commit("pbx", [call("a", "2026-11-02T09:00:00+01:00")], "p2") == 0
    store.close()


# -- legs: several records per call -----------------------------------------------------------
T = datetime(2026, 11, 2, 10, 0, tzinfo=OSLO).timestamp()  # 1793610000
WEEK = (date(2026, 11, 1), datetime(2026, 11, 3, tzinfo=UTC))


def leg(lid: str, start: float, end: float, billsec: float, answered: bool, person: bool,
        call: str = "q1", outcome: str = "", reason: str = "") -> Leg:
    return Leg(lid, call, "voice", T + start, T + end, billsec, answered, person, "support",
               "", outcome, None, None, reason)


# The queue call of tests/fixtures/asterisk/calls21.csv: agents 201 and 202 do not answer
# (20 s each), 203 answers at +55 s and talks 300 s.
QUEUE_CALL = [
    leg("1:1", 0, 20, 0, False, False, reason="no_answer"),
    leg("1:2", 25, 45, 0, False, False, reason="no_answer"),
    leg("1:3", 50, 355, 300, True, True, outcome="sale"),
]


def rollup_tuples(store: SqlStore) -> list[tuple[str, int, int, float, float]]:
    return sorted((r.outcome, r.contacts, r.handled, r.talk_seconds, r.billable_seconds)
                  for r in store.rollups_as_of(*WEEK))


def stored_contacts(store: SqlStore) -> list[tuple[object, ...]]:
    return query(
        store,
        "SELECT id, handled, talk_seconds, billable_seconds, outcome, reason, wait_seconds "
        "FROM contacts ORDER BY id",
    )


def test_legs_of_one_call_in_one_commit_are_one_contact(store: SqlStore) -> None:
    assert store.commit_records("pbx", [], QUEUE_CALL, "p1") == Committed(3, 0)
    # One call: handled, talk 300, billable 300, wait 355 - 300 - 0 = 55; outcome "sale".
    assert stored_contacts(store) == [("q1", 1, 300.0, 300.0, "sale", "", 55.0)]
    assert rollup_tuples(store) == [("sale", 1, 1, 300.0, 300.0)]
    assert store.counts() == {"pbx": 1}


def test_legs_split_across_reads_update_the_call_and_its_rollups(store: SqlStore) -> None:
    # Read 1 has only the two unanswered legs: one abandoned call, reason no_answer.
    assert store.commit_records("pbx", [], QUEUE_CALL[:2], "p1") == Committed(2, 0)
    assert stored_contacts(store) == [("q1", 0, 0.0, 0.0, "", "no_answer", None)]
    assert rollup_tuples(store) == [("", 1, 0, 0.0, 0.0)]
    # Read 2 re-reads leg 2 (a duplicate) and brings leg 3: the same call, now handled. The
    # call leaves the "" outcome row (which is removed, not left at 0) for the "sale" row.
    assert store.commit_records("pbx", [], QUEUE_CALL[1:], "p2") == Committed(1, 1)
    assert stored_contacts(store) == [("q1", 1, 300.0, 300.0, "sale", "", 55.0)]
    assert rollup_tuples(store) == [("sale", 1, 1, 300.0, 300.0)]
    assert store.position("pbx") == "p2"


def test_legs_in_any_order_give_the_same_call(make_store: StoreFactory) -> None:
    results = []
    for n, order in enumerate([[0, 1, 2], [2, 0, 1], [1, 2, 0]]):
        s = make_store(OSLO, name=f"o{n}")
        for i in order:
            s.commit_records("pbx", [], [QUEUE_CALL[i]], None)
        results.append((stored_contacts(s), rollup_tuples(s)))
        s.close()
    assert results[0] == results[1] == results[2]


def test_rereading_all_legs_counts_duplicates_only(store: SqlStore) -> None:
    store.commit_records("pbx", [], QUEUE_CALL, "p1")
    before = (stored_contacts(store), rollup_tuples(store))
    # The whole call again, plus one leg twice inside the batch: 4 duplicates, nothing new.
    assert store.commit_records("pbx", [], [*QUEUE_CALL, QUEUE_CALL[0]], "p2") == Committed(0, 4)
    assert (stored_contacts(store), rollup_tuples(store)) == before


def test_a_call_moving_to_an_earlier_day_leaves_the_old_day(store: SqlStore) -> None:
    # A leg starting 10:05 on 2 Nov, then one of the same call from 23:59 on 1 Nov.
    late = leg("b", 300, 400, 100, True, True, call="x")
    store.commit_records("pbx", [], [late], None)
    early = Leg("a", "x", "voice", T - 36060, T - 36000, 60.0, True, True, "support", "", "",
                None, None, "")
    store.commit_records("pbx", [], [early], None)
    # The call's start is 1 Nov 23:59 local: it counts on 1 Nov only, talk 60 + 100.
    assert [(r.day, r.contacts, r.talk_seconds) for r in store.rollups_as_of(*WEEK)] == [
        (date(2026, 11, 1), 1, 160.0)
    ]


def test_failed_leg_commit_changes_nothing(store: SqlStore) -> None:
    store.commit_records("pbx", [], QUEUE_CALL[:2], "p1")
    before = (stored_contacts(store), rollup_tuples(store))
    broken = QUEUE_CALL[2]._replace(channel=None)  # NOT NULL fails after the legs' savepoint
    with pytest.raises(INTEGRITY_ERRORS):
        store.commit_records("pbx", [], [broken], "p2")
    assert (stored_contacts(store), rollup_tuples(store)) == before
    assert store.position("pbx") == "p1"
    # The same leg, sound, still goes in afterwards (the file order counter was rolled back).
    assert store.commit_records("pbx", [], [QUEUE_CALL[2]], "p2") == Committed(1, 0)
    assert rollup_tuples(store) == [("sale", 1, 1, 300.0, 300.0)]


def test_plain_contacts_count_duplicates_too(store: SqlStore) -> None:
    a = call("a", "2026-11-02T09:00:00+01:00")
    assert store.commit_records("helpdesk", [a], [], None) == Committed(1, 0)
    assert store.commit_records("helpdesk", [a, a], [], None) == Committed(0, 2)


# -- schema 1 stores (before legs) open in place ---------------------------------------------
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE contacts (
    source TEXT NOT NULL, id TEXT NOT NULL, channel TEXT NOT NULL, direction TEXT NOT NULL,
    queue TEXT NOT NULL, start REAL NOT NULL, day INTEGER NOT NULL, handled INTEGER NOT NULL,
    handle_seconds REAL NOT NULL, talk_seconds REAL NOT NULL, billable_seconds REAL NOT NULL,
    outcome TEXT NOT NULL, customer TEXT, price REAL, reason TEXT NOT NULL,
    PRIMARY KEY (source, id)
) WITHOUT ROWID;
CREATE INDEX contacts_by_day ON contacts (day);
CREATE TABLE positions (source TEXT PRIMARY KEY, position TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE daily (
    day INTEGER NOT NULL, channel TEXT NOT NULL, direction TEXT NOT NULL, queue TEXT NOT NULL,
    outcome TEXT NOT NULL, contacts INTEGER NOT NULL, handled INTEGER NOT NULL,
    handle_seconds REAL NOT NULL, talk_seconds REAL NOT NULL, billable_seconds REAL NOT NULL,
    price REAL NOT NULL, max_start REAL NOT NULL,
    PRIMARY KEY (day, channel, direction, queue, outcome)
) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema', '1'), ('timezone', 'Europe/Oslo');
"""


def schema_1_store(path: Path) -> None:
    """A store as version 1 wrote it: one contact (call q1, talk 120 s from 10:00:00)."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    day = date(2026, 11, 2).toordinal()
    db.execute("INSERT INTO contacts VALUES ('pbx','q1','voice','inbound','support',?,?,1,"
               "120,120,120,'','c',NULL,'')", (T, day))
    db.execute("INSERT INTO daily VALUES (?,'voice','inbound','support','',1,1,120,120,120,0,?)",
               (day, T))
    db.execute("INSERT INTO positions VALUES ('pbx','p1',0)")
    db.commit()
    db.close()


def test_a_schema_1_store_opens_and_keeps_its_contacts(tmp_path: Path) -> None:
    # SQLite only: a PostgreSQL store starts at schema 3 (there was never an older one).
    path = tmp_path / "old.db"
    schema_1_store(path)
    store = SqliteStore(path, OSLO)
    assert store.position("pbx") == "p1"
    assert store.counts() == {"pbx": 1}
    assert stored_contacts(store) == [("q1", 1, 120.0, 120.0, "", "", None)]
    assert store._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("3",)
    # A later leg of that call joins it: the old contact is its first leg, [10:00, 10:02];
    # the new leg's talk [10:05, 10:06] adds 60 s: one call, talk 180.
    assert store.commit_records("pbx", [], [leg("n", 240, 360, 60, True, True)], "p2") == (1, 0)
    assert rollup_tuples(store) == [("", 1, 1, 180.0, 180.0)]
    store.close()
    SqliteStore(path, OSLO).close()  # and opens again as schema 2


def test_a_store_from_a_newer_version_is_refused(make_store: StoreFactory) -> None:
    store = make_store(OSLO)
    query(store, "UPDATE meta SET value = '99' WHERE key = 'schema'")  # autocommit
    store.close()
    with pytest.raises(StoreVersionError, match="schema 99 is newer"):
        make_store(OSLO)


def test_a_one_leg_call_keeps_its_leg_inline_until_a_second_arrives(store: SqlStore) -> None:
    answered = QUEUE_CALL[2]
    assert store.commit_records("pbx", [], [answered], None) == Committed(1, 0)
    inline = "SELECT leg, finish, billsec, flags FROM contacts WHERE id = 'q1'"
    # flags: answered 1 + person 2 + queue mapped 4 = 7 (direction not mapped).
    assert query(store, inline) == [("1:3", T + 355, 300.0, 7)]
    assert query(store, "SELECT count(*) FROM legs") == [(0,)]
    # The same leg again is a duplicate, found in the contact row.
    assert store.commit_records("pbx", [], [answered], None) == Committed(0, 1)
    # A second leg moves both into the legs table; the call is merged from both:
    # start 10:00:00 (the earlier leg), wait 55, talk 300.
    assert store.commit_records("pbx", [], [QUEUE_CALL[0], answered], None) == Committed(1, 1)
    assert query(store, inline) == [(None, None, None, None)]
    assert query(store, "SELECT id FROM legs ORDER BY start") == [("1:1",), ("1:3",)]
    assert stored_contacts(store) == [("q1", 1, 300.0, 300.0, "sale", "", 55.0)]
    assert rollup_tuples(store) == [("sale", 1, 1, 300.0, 300.0)]


# -- property: any split, order and repetition of the same legs gives the same figures -------
LEG = st.builds(
    lambda call, n, start, ring, billsec, answered, person, queue, outcome: Leg(
        f"l{n}", f"c{call}", "voice", T + start, T + start + ring + billsec, float(billsec),
        answered, answered and person, queue, "", outcome, None, None,
        "" if answered and person else "no_answer"),
    st.integers(0, 2), st.integers(0, 7), st.integers(-90_000, 3600), st.integers(0, 60),
    st.integers(0, 600), st.booleans(), st.booleans(), st.sampled_from(["", "support", "sales"]),
    st.sampled_from(["", "sale"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(legs=st.lists(LEG, min_size=1, max_size=12), cuts=st.lists(st.integers(0, 12), max_size=4),
       repeats=st.lists(st.integers(0, 11), max_size=4))
def test_any_split_of_the_legs_gives_each_call_once(
    make_store: StoreFactory, legs: list[Leg], cuts: list[int], repeats: list[int]
) -> None:
    unique: dict[tuple[str, str], Leg] = {}
    for one in legs:
        unique.setdefault((one.call, one.id), one)  # a repeated id is the same leg re-read
    legs = list(unique.values())
    stream = legs + [legs[i % len(legs)] for i in repeats]  # re-reads after the first pass
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    make_store.wipe("p")  # a fresh store for each example
    store = make_store(OSLO, name="p")
    records = duplicates = 0
    for a, b in itertools.pairwise(bounds):
        committed = store.commit_records("pbx", [], stream[a:b], None)
        records, duplicates = records + committed.records, duplicates + committed.duplicates
    assert (records, duplicates) == (len(legs), len(stream) - len(legs))
    calls: dict[str, list[Leg]] = {}
    for one in legs:  # first appearance is file order
        calls.setdefault(one.call, []).append(one)
    expected = {call: merge_legs(call, sorted(group, key=lambda leg: leg.start))
                for call, group in calls.items()}
    rows = query(
        store, "SELECT id, start, handled, talk_seconds, billable_seconds, wait_seconds, queue, "
        "outcome, reason FROM contacts")
    assert {r[0]: r[1:] for r in rows} == {
        c.id: (c.start, int(c.handled), c.talk_seconds, c.billable_seconds, c.wait_seconds,
               c.queue, c.outcome, c.reason) for c in expected.values()}
    first, moment = date(2026, 10, 30), datetime(2026, 11, 4, tzinfo=UTC)
    rollups = store.rollups_as_of(first, moment)
    assert sum(r.contacts for r in rollups) == len(expected)
    assert all(r.contacts > 0 for r in rollups)  # no row left at 0 by a call that moved
    assert sum(r.talk_seconds for r in rollups) == sum(
        c.talk_seconds for c in expected.values() if c.handled)
    assert sum(r.billable_seconds for r in rollups) == sum(
        c.billable_seconds for c in expected.values())
    store.close()


# -- moving a store: export_tables / import_tables (collector.migrate) -----------------------
def test_export_then_import_copies_every_table_and_continues(make_store: StoreFactory) -> None:
    source = make_store(OSLO, customer_key=b"site key")
    source.commit_records("pbx", [], QUEUE_CALL[:2], "p1")  # a call of two legs: legs table
    source.commit("helpdesk", [call("h", "2026-11-02T09:00:00+01:00", price=0.5)], "h1")
    exported = {table: [row for batch in batches for row in batch]
                for table, batches in source.export_tables()}
    assert list(exported) == ["meta", "contacts", "legs", "positions", "daily", "repeats",
                              "queue_calls"]
    assert len(exported["contacts"]) == 2 and len(exported["legs"]) == 2
    assert dict(exported["meta"])["legs"] == "2"  # the next leg's file order
    copy = make_store(OSLO, name="copy", customer_key=b"site key")
    copied = copy.import_tables(source.export_tables())
    assert copied["contacts"] == 2 and copied["legs"] == 2 and copied["positions"] == 2
    again = {table: [row for batch in batches for row in batch]
             for table, batches in copy.export_tables()}
    assert again == exported  # every row of every table, meta included
    assert sorted(copy.rollups_as_of(*WEEK)) == sorted(source.rollups_as_of(*WEEK))
    # The copy carries on where the original stood: the call's third leg merges into it
    # (file order n = 2 after the two stored), a re-read is a duplicate.
    assert copy.commit_records("pbx", [], QUEUE_CALL, "p2") == Committed(1, 2)
    assert query(copy, "SELECT id, n FROM legs ORDER BY n") == [("1:1", 0), ("1:2", 1), ("1:3", 2)]
    # The helpdesk contact (300 s, no outcome) and the call, now answered: a sale.
    assert rollup_tuples(copy) == [("", 1, 1, 300.0, 300.0), ("sale", 1, 1, 300.0, 300.0)]
    # A store with rows takes no import.
    with pytest.raises(ValueError, match="not empty"):
        copy.import_tables(source.export_tables())
