"""Service figures in the store: wait against thresholds, short abandons, repeats (FCR)
marked incrementally, queue_log enrichment of CDR contacts, keyed customer hashes."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapters.base import (
    Contact,
    Leg,
    QueueCall,
    customer_identity,
    hash_customer,
    key_customer,
)
from collector.model import KpiDefinitions, Rollup
from collector.service import repeats_of
from collector.store import SqliteStore
from collector.store_base import SqlStore
from tests.store_factory import StoreFactory, query, rebuild

pytest_plugins = ("tests.store_backends",)  # make_store, on SQLite and PostgreSQL

UTC_ZONE = ZoneInfo("UTC")
DAY0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # Monday 2026-11-02 00:00 UTC
DEFS = KpiDefinitions(20.0, (("sales", 30.0),), 5.0, 7 * 86400.0)


def contact(cid: str, at: float, handled: bool = True, wait: float | None = 10.0,
            customer: str | None = "+47 555 01", queue: str = "support",
            channel: str = "voice") -> Contact:
    talk = 60.0 if handled else 0.0
    return Contact(cid, channel, "inbound", queue, DAY0 + at, handled, talk, talk, talk, "",
                   hash_customer(customer), None, "" if handled else "abandoned", wait)


def totals(store: SqlStore, first: date = date(2026, 11, 1)) -> dict[tuple[str, str], Rollup]:
    """(day, queue) -> the summed rollup, as of far in the future."""
    out: dict[tuple[str, str], list[float]] = {}
    for r in store.rollups_as_of(first, datetime(2026, 12, 31, tzinfo=UTC)):
        key = (r.day.isoformat(), r.queue)
        acc = out.setdefault(key, [0.0] * 12)
        for i, value in enumerate(r[5:]):
            acc[i] += value
    return {k: Rollup(date.fromisoformat(k[0]), "voice", "inbound", k[1], "", *v)  # type: ignore[arg-type]
            for k, v in out.items()}


@pytest.fixture
def store(make_store: StoreFactory) -> SqlStore:
    """The store under test, on SQLite and on PostgreSQL (tests/store_backends.py)."""
    return make_store(UTC_ZONE, kpi=DEFS)


# -- customer keys ------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "identity"), [
    ("+47 555 01 234", "tel:4755501234"),
    ("0047-555-01-234", "tel:4755501234"),  # 00 reads like +
    ("(555) 01.234", "tel:55501234"),
    ('"Alice" <+4755501234>', "tel:4755501234"),  # Asterisk clid form
    ("Kari.Nordmann@Example.NO", "email:kari.nordmann@example.no"),
    (" kari.nordmann@example.no ", "email:kari.nordmann@example.no"),
    ("anonymous", None), ("Restricted", None), ("UNKNOWN", None), ("", None), ("   ", None),
    (None, None), ("0000", None),
])
def test_customer_identity_normalises_phones_and_addresses(raw: str | None,
                                                           identity: str | None) -> None:
    assert customer_identity(raw) == identity


def test_stored_customer_keys_are_keyed_with_the_stores_secret(make_store: StoreFactory) -> None:
    digest = hash_customer("+47 555 01")
    assert digest is not None
    a = make_store(UTC_ZONE, name="a")
    b = make_store(UTC_ZONE, name="b")
    for s in (a, b):
        s.commit("pbx", [contact("1", 0)], None)
    [(stored_a,)] = query(a, "SELECT customer FROM contacts")
    [(stored_b,)] = query(b, "SELECT customer FROM contacts")
    # Two stores made at random: two keys, two different stored values, neither the digest.
    assert stored_a != stored_b and digest not in (stored_a, stored_b)
    key_a = bytes.fromhex(query(a, "SELECT value FROM meta WHERE key = 'customer_key'")[0][0])
    assert stored_a == key_customer(digest, key_a)
    a.close()
    # Reopened, the store keeps its key: the same customer gets the same stored value.
    a = make_store(UTC_ZONE, name="a")
    a.commit("pbx", [contact("2", 60)], None)
    assert {r[0] for r in query(a, "SELECT customer FROM contacts")} == {stored_a}
    a.close()
    b.close()
    # A configured key: two stores agree.
    shared = b"a shared secret of the site"
    c = make_store(UTC_ZONE, name="c", customer_key=shared)
    d = make_store(UTC_ZONE, name="d", customer_key=shared)
    for s in (c, d):
        s.commit("pbx", [contact("1", 0)], None)
    values = [query(s, "SELECT customer FROM contacts")[0][0] for s in (c, d)]
    assert values[0] == values[1] == key_customer(digest, shared)
    c.close()
    d.close()


# -- service parts ------------------------------------------------------------------------------
def test_thresholds_and_short_abandons_are_inclusive(store: SqlStore) -> None:
    store.commit("pbx", [
        contact("a", 0, wait=20.0),  # support: 20 <= 20, in threshold
        contact("b", 100, wait=20.5),  # support: over
        contact("c", 200, wait=30.0, queue="sales"),  # sales: 30 <= 30, in threshold
        contact("d", 300, handled=False, wait=5.0),  # short abandon: 5 <= 5
        contact("e", 400, handled=False, wait=5.5),  # abandoned, not short
        contact("f", 500, handled=False, wait=None),  # abandoned, wait unknown: not short
        contact("g", 600, wait=None, customer=None),  # handled, no wait, no key
    ], None)
    got = totals(store)
    support = got[("2026-11-02", "support")]
    # contacts a b d e f g = 6; handled a b g = 3; waited a b d e = 4 (f, g unknown);
    # wait of handled = 20 + 20.5 = 40.5; in threshold: a; short: d; identified: a b (g none).
    assert (support.contacts, support.handled, support.waited, support.wait_seconds,
            support.answered_in_threshold, support.abandoned_short, support.identified) == (
        6, 3, 4, 40.5, 1, 1, 2)
    sales = got[("2026-11-02", "sales")]
    assert (sales.contacts, sales.answered_in_threshold, sales.wait_seconds) == (1, 1, 30.0)


# -- repeats ------------------------------------------------------------------------------------
def test_repeats_of_is_exact_and_inclusive() -> None:
    week = 604800.0
    # handled at 0; next at exactly 0 + 7 d: a repeat. handled at 604800 followed at
    # 604800 + 604801: not. An unhandled contact is never a repeat itself.
    assert repeats_of([(0.0, True), (week, True), (2 * week + 1, False)], week) == [
        True, False, False]
    # Same second does not follow.
    assert repeats_of([(5.0, True), (5.0, True)], week) == [False, False]


def test_a_later_contact_marks_the_earlier_handled_one_and_updates_its_day(
        store: SqlStore) -> None:
    store.commit("pbx", [contact("a", 0)], None)  # Monday, handled
    assert totals(store)[("2026-11-02", "support")].repeats == 0
    # Any channel and queue, not handled, 3 days later: a is a repeat, counted on Monday.
    store.commit("mail", [contact("b", 3 * 86400, handled=False, queue="sales",
                                  channel="email")], None)
    got = totals(store)
    assert got[("2026-11-02", "support")].repeats == 1
    assert got[("2026-11-05", "sales")].repeats == 0  # b itself is not handled
    # A third contact within a's window does not count a twice.
    store.commit("pbx", [contact("c", 4 * 86400)], None)
    assert totals(store)[("2026-11-02", "support")].repeats == 1
    # Another customer, the same number written otherwise ("0047 555-01"): the same key.
    store.commit("pbx", [contact("d", 4 * 86400 + 60, customer="0047 555-01")], None)
    got = totals(store)
    # c (Thursday, handled) is followed by d a minute later: c is a repeat too.
    assert got[("2026-11-06", "support")].repeats == 1


def test_window_is_exact_seconds_not_calendar_days(store: SqlStore) -> None:
    store.commit("pbx", [contact("a", 0), contact("b", 7 * 86400 + 1)], None)
    assert totals(store)[("2026-11-02", "support")].repeats == 0  # 604,801 s later: not
    other = "+47 555 02"  # another customer, so that a and c do not meet
    store.commit("pbx", [contact("c", 10, customer=other),
                         contact("d", 10 + 7 * 86400, customer=other)], None)
    assert totals(store)[("2026-11-02", "support")].repeats == 1  # c: exactly 604,800 s


def test_an_earlier_contact_arriving_late_is_a_repeat_of_its_own(store: SqlStore) -> None:
    store.commit("mail", [contact("later", 86400, channel="email")], None)
    store.commit("pbx", [contact("earlier", 0)], None)  # read after, started before
    got = totals(store)
    assert got[("2026-11-02", "support")].repeats == 1
    assert got[("2026-11-03", "support")].repeats == 0


def test_contacts_without_a_key_make_no_repeats(store: SqlStore) -> None:
    store.commit("pbx", [contact("a", 0, customer="anonymous"),
                         contact("b", 60, customer="anonymous"),
                         contact("c", 120, customer=None)], None)
    got = totals(store)[("2026-11-02", "support")]
    assert (got.identified, got.repeats) == (0, 0)


def test_repeat_marks_follow_a_call_whose_contact_is_recomputed(store: SqlStore) -> None:
    def leg(lid: str, call: str, start: float, end: float, billsec: float,
            person: bool, queue: str = "") -> Leg:
        return Leg(lid, call, "voice", DAY0 + start, DAY0 + end, billsec, billsec > 0, person,
                   queue, "", "", hash_customer("+47 555 01"))
    # Call x: first its unanswered leg (not handled), then a person's leg arrives later.
    store.commit_records("pbx", [], [leg("x:1", "x", 0, 30, 0, False, "support")], None)
    store.commit_records("pbx", [], [leg("y:1", "y", 3600, 3700, 90, True, "support")], None)
    # x not handled yet: no repeat (y follows it, but x was not handled).
    assert totals(store)[("2026-11-02", "support")].repeats == 0
    store.commit_records("pbx", [], [leg("x:2", "x", 10, 130, 100, True)], None)
    got = totals(store)[("2026-11-02", "support")]
    # x is now handled (a person answered at 30) and y follows within the window.
    assert (got.handled, got.repeats) == (2, 1)
    # The store rebuilt from scratch agrees with the incremental marks.
    rebuild(store)
    assert totals(store)[("2026-11-02", "support")].repeats == 1


def test_a_changed_window_rebuilds_the_marks_once(make_store: StoreFactory) -> None:
    s = make_store(UTC_ZONE, kpi=DEFS)
    s.commit("pbx", [contact("a", 0), contact("b", 2 * 86400)], None)
    assert totals(s)[("2026-11-02", "support")].repeats == 1
    s.close()
    one_day = DEFS._replace(fcr_window=86400.0)
    s = make_store(UTC_ZONE, kpi=one_day)
    assert totals(s)[("2026-11-02", "support")].repeats == 0  # 2 days > 1 day
    s.close()
    # A changed threshold re-rolls the days: a (wait 10) leaves the 5 s threshold.
    s = make_store(UTC_ZONE, kpi=one_day._replace(threshold=5.0))
    assert totals(s)[("2026-11-02", "support")].answered_in_threshold == 0
    s.close()


# -- queue_log enrichment -----------------------------------------------------------------------
def _cdr_leg(call: str, start: float, billsec: float, person: bool) -> Leg:
    return Leg(f"{call}:1", call, "voice", DAY0 + start, DAY0 + start + 100, billsec,
               billsec > 0, person, "", "", "", hash_customer("+47 555 09"))


def test_queue_entry_before_its_cdr_is_applied_once_when_it_arrives(
        make_store: StoreFactory) -> None:
    s = make_store(UTC_ZONE, kpi=DEFS)
    entry = QueueCall("1700.1", "pbx", "sales", DAY0 + 2, 12.0, "answered")
    assert s.commit_records("qlog", [], [], "q1", [entry]).records == 1
    assert s.counts() == {}  # adds no contact of its own
    s.close()
    s = make_store(UTC_ZONE, kpi=DEFS)  # a restart in between
    # The CDR: answered by a person, billsec 70 of a 100 s call, so its own wait is 30 s.
    s.commit_records("pbx", [], [_cdr_leg("1700.1", 0, 70, True)], "p1")
    got = totals(s)
    # The contact moved to queue sales with the queue's exact wait 12 s (<= 30 s).
    assert ("2026-11-02", "other") not in got
    sales = got[("2026-11-02", "sales")]
    assert (sales.contacts, sales.handled, sales.wait_seconds,
            sales.answered_in_threshold) == (1, 1, 12.0, 1)
    # The queue log re-read: a duplicate, nothing changes.
    assert s.commit_records("qlog", [], [], "q1", [entry]).duplicates == 1
    assert totals(s)[("2026-11-02", "sales")].contacts == 1
    s.close()


def test_queue_entry_after_its_cdr_enriches_the_stored_contact(store: SqlStore) -> None:
    store.commit_records("pbx", [], [_cdr_leg("1700.2", 0, 0, False)], "p1")
    assert totals(store)[("2026-11-02", "other")].waited == 0  # unanswered: no wait known
    store.commit_records("qlog", [], [], "q1",
                         [QueueCall("1700.2", "pbx", "support", DAY0, 4.0, "abandoned")])
    got = totals(store)
    assert ("2026-11-02", "other") not in got  # the emptied row is dropped
    support = got[("2026-11-02", "support")]
    # Abandoned after 4 s: a short abandon (<= 5 s).
    assert (support.contacts, support.handled, support.waited, support.abandoned_short) == (
        1, 0, 1, 1)
    [(reason,)] = query(store, "SELECT reason FROM contacts")
    assert reason == "abandoned"


def test_a_store_of_schema_2_gains_the_service_columns(tmp_path: Path) -> None:
    # SQLite only: a PostgreSQL store starts at schema 3 (there was never an older one).
    path = tmp_path / "old.db"
    s = SqliteStore(path, UTC_ZONE, kpi=DEFS)
    s.commit("pbx", [contact("a", 0), contact("b", 60)], None)
    s.close()
    db = sqlite3.connect(path)  # make it look like schema 2: no service columns, no kpi
    db.execute("DROP TABLE daily")
    db.execute("""CREATE TABLE daily (day INTEGER NOT NULL, channel TEXT NOT NULL,
        direction TEXT NOT NULL, queue TEXT NOT NULL, outcome TEXT NOT NULL,
        contacts INTEGER NOT NULL, handled INTEGER NOT NULL, handle_seconds REAL NOT NULL,
        talk_seconds REAL NOT NULL, billable_seconds REAL NOT NULL, price REAL NOT NULL,
        max_start REAL NOT NULL, PRIMARY KEY (day, channel, direction, queue, outcome))""")
    db.execute("DELETE FROM meta WHERE key IN ('kpi', 'schema')")
    db.execute("INSERT INTO meta VALUES ('schema', '2')")
    db.execute("DELETE FROM repeats")
    db.commit()
    db.close()
    s = SqliteStore(path, UTC_ZONE, kpi=DEFS)
    got = totals(s)[("2026-11-02", "support")]
    # Rebuilt from the contacts: 2 handled, both waited 10 s (in threshold), a repeats.
    assert (got.contacts, got.waited, got.answered_in_threshold, got.repeats) == (2, 2, 2, 1)
    s.close()


def test_an_enriched_call_stays_enriched_when_its_next_leg_arrives(store: SqlStore) -> None:
    store.commit_records("qlog", [], [], "q1",
                         [QueueCall("1700.3", "pbx", "sales", DAY0, 8.0, "answered")])
    # First leg: unanswered ring of the queue's first member; the call is not handled yet.
    store.commit_records("pbx", [], [_cdr_leg("1700.3", 0, 0, False)], "p1")
    # Second leg: another member answers (a person, billsec 70): the call's contact is
    # recomputed from both legs and enriched again with the queue's wait.
    second = Leg("1700.3:2", "1700.3", "voice", DAY0 + 5, DAY0 + 100, 70, True, True, "", "",
                 "", hash_customer("+47 555 09"))
    store.commit_records("pbx", [], [second], "p2")
    got = totals(store)
    assert list(got) == [("2026-11-02", "sales")]  # one row, no leftover in "other"
    sales = got[("2026-11-02", "sales")]
    # 1 contact, handled, wait 8 s from the queue log (the CDRs alone would say 25 s).
    assert (sales.contacts, sales.handled, sales.waited, sales.wait_seconds,
            sales.answered_in_threshold) == (1, 1, 1, 8.0, 1)
