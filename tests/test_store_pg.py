"""PostgresStore beyond the shared contract (tests/store_backends.py runs that on both):
several writers at once, kill -9 of a writer, the leader fence, a lost connection, an
unreachable database, and figures equal to SQLite's, type for type.

All against the real PostgreSQL of tests/pg_helpers.py (skipped without one; CI=true fails).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from adapters.base import Contact, Leg, hash_customer
from collector.leader import LeaderLock, StoreUrlError, lock_key
from collector.model import KpiDefinitions, Rollup
from collector.store import SqliteStore
from collector.store_pg import WRITE_LOCK, PostgresStore
from collector.stores import STORE_ERRORS, NotLeader, StoreUnavailable, open_store
from tests.conftest import free_port
from tests.pg_helpers import PASSWORD, PostgresServer, postgres_db, postgres_server

__all__ = ["postgres_db", "postgres_server"]  # fixtures used by name below

REPO = Path(__file__).resolve().parent.parent
UTC_ZONE = ZoneInfo("UTC")
T = datetime(2026, 11, 2, 8, tzinfo=UTC).timestamp()  # Monday 2026-11-02 08:00 UTC
DEFS = KpiDefinitions(20.0, (("sales", 30.0),), 5.0, 3 * 3600.0)
KEY = b"one key for both stores, so the customers match"
PHONES = ["+47 555 01", "+47 555 02", "+47 555 03", None]
ALL_DAYS = (date(2026, 10, 1), datetime(2026, 12, 31, tzinfo=UTC))


def call_legs(i: int) -> list[Leg]:
    """Call c{i} at T + 97 i s: every third has an unanswered ring first (two legs); the
    answered leg talks 30 + i % 50 s after a 10 s ring; customers cycle over PHONES."""
    start = T + 97 * i
    phone = PHONES[i % len(PHONES)]
    customer = None if phone is None else hash_customer(phone)
    queue = ("support", "sales", "")[i % 3]
    talk = 30.0 + i % 50
    answered = Leg(f"{i}:b", f"c{i}", "voice", start + 5, start + 15 + talk, talk, True, True,
                   queue, "", "sale" if i % 7 == 0 else "", customer, 0.25 if i % 5 else None)
    if i % 3:
        return [answered._replace(start=start)]
    ring = Leg(f"{i}:a", f"c{i}", "voice", start, start + 20, 0.0, False, False, queue, "", "",
               customer, None, "no_answer")
    return [ring, answered]


def webhook_contact(i: int) -> Contact:
    phone = PHONES[(i + 1) % len(PHONES)]
    handled = i % 4 != 0
    return Contact(f"w{i}", "chat", "inbound", "support", T + 61 * i + 30, handled,
                   120.0 if handled else 0.0, 120.0 if handled else 0.0, 0.0, "",
                   None if phone is None else hash_customer(phone), None,
                   "" if handled else "abandoned", 4.0 + i % 30)


def assert_same_figures(got: Sequence[Rollup], want: Sequence[Rollup]) -> None:
    """Equal rollups, and each value of the same Python type (ints stay ints)."""
    got, want = sorted(got), sorted(want)
    assert got == want
    for a, b in zip(got, want, strict=True):
        assert [type(v) for v in a] == [type(v) for v in b], (a, b)


def serial_sqlite(tmp_path: Path, legs: Sequence[Leg], contacts: Sequence[Contact]) -> list[Rollup]:
    store = SqliteStore(tmp_path / "serial.db", UTC_ZONE, kpi=DEFS, customer_key=KEY)
    try:
        store.commit_records("pbx", [], legs, None)
        store.commit_records("hooks", contacts, [], None)
        return store.rollups_as_of(*ALL_DAYS)
    finally:
        store.close()


def test_the_write_lock_is_not_the_leader_lock() -> None:
    assert lock_key() != WRITE_LOCK


@pytest.mark.parametrize("default_isolation", ["read committed", "repeatable read"])
def test_two_writers_at_once_count_each_record_once(
        postgres_db: str, postgres_server: PostgresServer, tmp_path: Path,
        default_isolation: str) -> None:
    # Two replicas' stores (two connections) take the same legs and webhook contacts at
    # once, in different batches and orders (a redelivery to each replica, a re-read):
    # 120 calls (40 of two legs: 160 legs) and 60 contacts, each counted exactly once.
    # Also when the database's default is REPEATABLE READ: the store asks for READ
    # COMMITTED itself (under REPEATABLE READ the second writer's snapshot predates the
    # first one's commit: "could not serialize access due to concurrent update").
    database = postgres_db.rsplit("/", 1)[1]
    postgres_server.admin(
        f"ALTER DATABASE \"{database}\" SET default_transaction_isolation = '{default_isolation}'"
    )
    legs = [leg for i in range(120) for leg in call_legs(i)]
    contacts = [webhook_contact(i) for i in range(60)]
    assert len(legs) == 160
    stores = [PostgresStore(postgres_db, UTC_ZONE, kpi=DEFS, customer_key=KEY) for _ in "ab"]
    plans = [
        (legs, 7, contacts, 3),  # replica a: file order, batches of 7 legs, 3 contacts
        (legs[::-1], 5, contacts[::-1], 4),  # replica b: backwards, batches of 5 and 4
    ]
    records = [0, 0]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def write(k: int) -> None:
        store, (ls, n, cs, m) = stores[k], plans[k]
        try:
            barrier.wait()
            for step in range(max(-(-len(ls) // n), -(-len(cs) // m))):  # interleaved
                part = ls[step * n : step * n + n]
                records[k] += store.commit_records("pbx", [], part, None).records
                part_c = cs[step * m : step * m + m]
                records[k] += store.commit_records("hooks", part_c, [], None).records
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    try:
        assert sum(records) == 160 + 60  # new records over both writers: each leg, contact once
        assert stores[0].counts() == stores[1].counts() == {"pbx": 120, "hooks": 60}
        # The legs counter is one sequence over both writers: 40 calls of two legs, both
        # legs in the legs table (n 0..79, no gaps, none twice).
        with psycopg.connect(postgres_db) as conn:
            ns = [row[0] for row in conn.execute("SELECT n FROM legs ORDER BY n")]
            legs_meta = conn.execute("SELECT value FROM meta WHERE key = 'legs'").fetchone()
        assert ns == list(range(80)) and legs_meta == ("80",)
        # The figures equal one serial run on SQLite, value for value and type for type.
        want = serial_sqlite(tmp_path, legs, contacts)
        assert_same_figures(stores[0].rollups_as_of(*ALL_DAYS), want)
        assert sum(r.repeats for r in want) > 0 and sum(r.waited for r in want) > 0
    finally:
        for store in stores:
            store.close()


WRITER = """
import sys
from zoneinfo import ZoneInfo
sys.path.insert(0, {repo!r})
from collector.store_pg import PostgresStore
from tests.test_store_pg import BATCHES, kill_batches

batches = kill_batches()
store = PostgresStore({url!r}, ZoneInfo("UTC"))
done = int(store.position("pbx") or 0)
for i in range(done, BATCHES):
    store.commit_records("pbx", [], batches[i], str(i + 1))
store.close()
"""
BATCHES = 40


def kill_batches() -> list[list[Leg]]:
    """40 batches of 150 calls (200 legs: every third call has two), calls within a batch."""
    return [[leg for i in range(150 * b, 150 * b + 150) for leg in call_legs(i)]
            for b in range(BATCHES)]


def test_kill_9_of_a_writer_mid_commit_leaves_nothing_half_written(
        postgres_db: str, tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO), url=postgres_db))
    PostgresStore(postgres_db, UTC_ZONE).close()  # the schema, before the writer races us
    batches = kill_batches()
    child = subprocess.Popen([sys.executable, str(script)], cwd=REPO, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        with psycopg.connect(postgres_db, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute("SELECT position FROM positions").fetchone()
                if row and int(row[0]) >= 3:
                    break
                assert child.poll() is None, "the writer stopped before it was killed"
                time.sleep(0.02)
            child.kill()  # SIGKILL, somewhere inside a commit (it does nothing else)
            child.wait(timeout=10)
            row = conn.execute("SELECT position FROM positions").fetchone()
            assert row is not None
            done = int(row[0])
            assert 3 <= done < BATCHES, "the writer finished before it was killed"
            # Exactly the committed batches: 150 calls each, and their rollups.
            count = conn.execute("SELECT count(*) FROM contacts").fetchone()
            rollup_contacts = conn.execute("SELECT sum(contacts) FROM daily").fetchone()
        assert count == (150 * done,)
        assert rollup_contacts == (150 * done,)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # The writer again, from the stored position: it finishes, and the figures are a
    # clean run's.
    subprocess.run([sys.executable, str(script)], cwd=REPO, check=True, timeout=120)
    store = PostgresStore(postgres_db, UTC_ZONE)
    try:
        assert store.counts() == {"pbx": 150 * BATCHES}
        assert store.position("pbx") == str(BATCHES)
        want = serial_sqlite(tmp_path, [leg for batch in batches for leg in batch], [])
        assert_same_figures(store.rollups_as_of(*ALL_DAYS), want)
    finally:
        store.close()


def test_a_fenced_commit_is_refused_once_the_leader_session_is_gone(
        postgres_db: str, postgres_server: PostgresServer) -> None:
    lock = LeaderLock(postgres_db)
    store = PostgresStore(postgres_db, UTC_ZONE)
    try:
        assert lock.poll()
        store.set_fence(lock.fence_sql)
        assert store.commit_records("pbx", [], call_legs(1), "p1").records == 1
        postgres_server.admin(f"SELECT pg_terminate_backend({lock.pid})")
        deadline = time.monotonic() + 10
        gone = f"SELECT 1 FROM pg_stat_activity WHERE pid = {int(lock.pid or 0)}"  # noqa: S608
        while postgres_server.admin(gone) and time.monotonic() < deadline:
            time.sleep(0.02)
        # The lock's session is gone, and the lock with it: the pull's commit is refused,
        # rolled back whole (no contact, the old position), and the store still works.
        with pytest.raises(NotLeader, match="leader lock"):
            store.commit_records("pbx", [], call_legs(2), "p2")
        assert store.counts() == {"pbx": 1}
        assert store.position("pbx") == "p1"
        # A webhook's commit (no position) is not a pull: it is not fenced.
        assert store.commit_records("hooks", [webhook_contact(1)], [], None).records == 1
        assert store.counts() == {"pbx": 1, "hooks": 1}
    finally:
        store.close()
        lock.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _ended(postgres_server: PostgresServer, pid: int) -> None:
    """End one session and wait until the server has let it go (and closed its socket)."""
    postgres_server.admin(f"SELECT pg_terminate_backend({pid})")
    deadline = time.monotonic() + 10
    gone = f"SELECT 1 FROM pg_stat_activity WHERE pid = {int(pid)}"  # noqa: S608
    while postgres_server.admin(gone) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_terminated_idle_session_is_replaced_on_next_use_without_a_failure(
        postgres_db: str, postgres_server: PostgresServer) -> None:
    clock = Clock()
    store = PostgresStore(postgres_db, UTC_ZONE, clock=clock)
    try:
        store.commit_records("pbx", [], call_legs(1), "p1")
        old = store._db.info.backend_pid
        _ended(postgres_server, old)
        # The session ended while idle: the next call (a write) finds that out before it
        # sends anything, connects again and works; no backoff started, no error kept.
        assert store.commit_records("pbx", [], call_legs(2), "p2").records == 1  # one leg
        assert store._db.info.backend_pid != old
        assert (store._delay, store.error) == (0.0, None)
        assert store.counts() == {"pbx": 2} and store.position("pbx") == "p2"
        # And a read after a second termination, the clock not moved: no backoff waited.
        _ended(postgres_server, store._db.info.backend_pid)
        assert store.counts() == {"pbx": 2}
    finally:
        store.close()


def test_after_a_server_restart_the_first_calls_succeed(
        postgres_db: str, postgres_server: PostgresServer) -> None:
    """pg_ctl restart -m fast ends every session (FATAL, then the socket closes): a writer
    and a reader that sat idle through it work on their first call once it is back."""
    clock = Clock()
    store = PostgresStore(postgres_db, UTC_ZONE, clock=clock)
    reader = PostgresStore(postgres_db, UTC_ZONE, readonly=True, clock=clock)
    try:
        store.commit_records("pbx", [], call_legs(1), "p1")
        assert reader.counts() == {"pbx": 1}
        postgres_server.restart()
        assert reader.counts() == {"pbx": 1}
        assert store.commit_records("hooks", [webhook_contact(1)], [], None).records == 1
        assert store.position("pbx") == "p1"
        assert reader.counts() == {"pbx": 1, "hooks": 1}
        assert [(s._delay, s.error) for s in (store, reader)] == [(0.0, None), (0.0, None)]
    finally:
        reader.close()
        store.close()


def test_a_stopped_server_fails_calls_fast_then_they_reconnect_after_the_backoff(
        postgres_db: str, postgres_server: PostgresServer) -> None:
    clock = Clock()
    store = PostgresStore(postgres_db, UTC_ZONE, clock=clock)
    try:
        store.commit_records("pbx", [], call_legs(1), "p1")
        postgres_server.pg_ctl("stop", "-m", "fast")
        try:
            # The server is gone: the ended connection cannot be replaced. StoreUnavailable
            # (a storage error the runtime counts), the psycopg error as its cause, quickly
            # (loopback refuses at once); nothing is written.
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="PostgreSQL at ") as caught:
                store.commit_records("pbx", [], call_legs(2), "p2")
            assert time.monotonic() - started < 2
            assert isinstance(caught.value.__cause__, psycopg.OperationalError)
            assert isinstance(caught.value, STORE_ERRORS)
            assert store._delay == 1.0
            # Within the first second of backoff calls fail at once, without connecting.
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="reconnecting in 1 s"):
                store.counts()
            assert time.monotonic() - started < 0.5
        finally:
            postgres_server.pg_ctl("start")
        with pytest.raises(StoreUnavailable, match="reconnecting in 1 s"):
            store.counts()  # back, but the backoff still runs
        clock.now += 1.0
        # After it, the next call reconnects and works; the lost commit left nothing.
        assert store.counts() == {"pbx": 1}
        assert store.position("pbx") == "p1"
        assert store.commit_records("pbx", [], call_legs(2), "p2").records == 1  # one leg
        assert store._delay == 0.0
    finally:
        store.close()


def test_a_connection_lost_during_a_write_fails_and_is_not_retried(
        postgres_db: str, postgres_server: PostgresServer) -> None:
    """Only a connection dead before a call is replaced: one lost while the call runs (its
    transaction sent) raises, and the write is not sent again on a new connection."""
    clock = Clock()
    store = PostgresStore(postgres_db, UTC_ZONE, clock=clock)
    holder = psycopg.connect(postgres_db, password=PASSWORD, autocommit=True)
    try:
        store.commit_records("pbx", [], call_legs(1), "p1")
        pid = store._db.info.backend_pid
        # Another writer holds the write lock, so the commit waits inside its transaction.
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        failed: list[BaseException] = []

        def commit() -> None:
            try:
                store.commit_records("pbx", [], call_legs(2), "p2")
            except BaseException as exc:  # noqa: BLE001 - kept for the assertions
                failed.append(exc)

        writer = threading.Thread(target=commit)
        writer.start()
        waiting = ("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "  # noqa: S608
                   f"AND pid = {int(pid)}")
        deadline = time.monotonic() + 10
        while not postgres_server.admin(waiting) and time.monotonic() < deadline:
            time.sleep(0.02)
        postgres_server.admin(f"SELECT pg_terminate_backend({pid})")
        writer.join(10)
        holder.execute("COMMIT")
        assert len(failed) == 1 and isinstance(failed[0], StoreUnavailable), failed
        assert isinstance(failed[0].__cause__, psycopg.OperationalError)
        assert store._delay == 1.0  # a failure mid-call: the backoff starts, as before
        clock.now += 1.0
        assert store.counts() == {"pbx": 1} and store.position("pbx") == "p1"
    finally:
        holder.close()
        store.close()


def test_reconnect_attempts_back_off_from_1_s_doubling_to_30_s(postgres_db: str) -> None:
    clock = Clock()
    store = PostgresStore(postgres_db, UTC_ZONE, clock=clock)
    real_connect = store._connect
    try:
        store._lost(psycopg.OperationalError("server closed the connection unexpectedly"))
        store._connect = _refuse  # type: ignore[method-assign]
        waits = []
        for _ in range(7):
            waits.append(store._retry_at - clock.now)
            clock.now = store._retry_at
            with pytest.raises(StoreUnavailable, match="connection refused"):
                store.counts()
        assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
        store._connect = real_connect  # type: ignore[method-assign]
        clock.now = store._retry_at
        assert store.counts() == {}
        assert store._delay == 0.0  # a success starts the backoff over
    finally:
        store.close()


def _refuse() -> Any:
    raise psycopg.OperationalError("connection refused")


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    url = f"postgresql://cce@127.0.0.1:{free_port()}/cce"
    with pytest.raises(StoreUnavailable) as caught:
        PostgresStore(url, UTC_ZONE, password="pw-Never-Shown-4711")
    text = str(caught.value)
    assert text.startswith(f"PostgreSQL at {url}: ")
    assert "\n" not in text and "pw-Never-Shown-4711" not in text
    assert "refused" in text or "connect" in text
    # A password in the URL is refused before any connection, and not repeated.
    with pytest.raises(StoreUrlError) as refused:
        PostgresStore("postgresql://cce:pw-Never-Shown-4711@127.0.0.1:1/cce", UTC_ZONE)
    assert "pw-Never-Shown-4711" not in str(refused.value)


def test_a_wrong_password_is_one_line_without_it(
        postgres_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    with pytest.raises(StoreUnavailable) as caught:
        PostgresStore(postgres_db, UTC_ZONE, password="wrong-Secret-991")
    text = str(caught.value)
    assert "password authentication failed" in text
    assert "\n" not in text and "wrong-Secret-991" not in text and PASSWORD not in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_open_store_passes_the_store_password(
        postgres_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import SecretStr

    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    settings: Any = SimpleNamespace(store=postgres_db, tz=UTC_ZONE, kpi_definitions=DEFS,
                                    customer_key=None, store_password=SecretStr(PASSWORD))
    store = open_store(settings)
    reader = open_store(settings, readonly=True)
    try:
        store.commit_records("hooks", [webhook_contact(1)], [], None)
        assert reader.counts() == {"hooks": 1}
    finally:
        reader.close()
        store.close()


def test_a_readonly_store_reads_the_writers_figures_and_writes_nothing(
        postgres_db: str) -> None:
    writer = PostgresStore(postgres_db, UTC_ZONE, kpi=DEFS)
    reader = PostgresStore(postgres_db, UTC_ZONE, readonly=True)
    try:
        writer.commit_records("pbx", [], call_legs(3), "p1")
        assert reader._kpi == DEFS  # the writer's definitions, from meta
        assert reader.rollups_as_of(*ALL_DAYS) == writer.rollups_as_of(*ALL_DAYS)
        assert reader.newest_start("pbx") == T + 3 * 97  # call 3 starts with its ring
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.commit_records("pbx", [], call_legs(4), "p2")
        assert writer.counts() == {"pbx": 1}
    finally:
        reader.close()
        writer.close()


def test_newest_start_sees_another_writers_commits(postgres_db: str) -> None:
    # SQLite's one writer keeps the figure in process; on PostgreSQL another replica's
    # webhook moves it, so it is asked of the database each time.
    a = PostgresStore(postgres_db, UTC_ZONE)
    b = PostgresStore(postgres_db, UTC_ZONE)
    try:
        a.commit_records("hooks", [webhook_contact(1)], [], None)
        assert a.newest_start("hooks") == T + 61 + 30
        b.commit_records("hooks", [webhook_contact(5)], [], None)
        assert a.newest_start("hooks") == T + 5 * 61 + 30
    finally:
        a.close()
        b.close()


def test_a_sqlite_store_copied_into_postgresql_reads_back_row_for_row(
        postgres_db: str, tmp_path: Path) -> None:
    from adapters.base import QueueCall

    sqlite = SqliteStore(tmp_path / "s.db", UTC_ZONE, kpi=DEFS, customer_key=KEY)
    pg = PostgresStore(postgres_db, UTC_ZONE, kpi=DEFS, customer_key=KEY)
    try:
        sqlite.commit_records("pbx", [], [leg for i in range(30) for leg in call_legs(i)], "p9")
        sqlite.commit_records("hooks", [webhook_contact(i) for i in range(12)], [], None)
        # A queue_log entry for call c1 (stored: enriches it) and one for a call to come.
        entries = [QueueCall("c1", "pbx", "sales", T + 97, 3.0, "answered"),
                   QueueCall("c99", "pbx", "support", T + 9999, 7.0, "abandoned")]
        sqlite.commit_records("qlog", [], [], "q1", entries)
        pg.import_tables(sqlite.export_tables())

        def rows(store: Any) -> dict[str, list[tuple[Any, ...]]]:
            return {t: [r for batch in b for r in batch] for t, b in store.export_tables()}

        want, got = rows(sqlite), rows(pg)
        assert got == want
        for table in want:  # and each value of the same Python type
            assert [[type(v) for v in r] for r in got[table]] == \
                [[type(v) for v in r] for r in want[table]], table
        assert len(want["queue_calls"]) == 2 and len(want["repeats"]) > 0
        assert_same_figures(pg.rollups_as_of(*ALL_DAYS), sqlite.rollups_as_of(*ALL_DAYS))
        # Both carry on alike: call c99 arrives and takes its waiting queue_log entry.
        late = call_legs(99)
        for store in (sqlite, pg):
            store.commit_records("pbx", [], late, "p10")
        assert_same_figures(pg.rollups_as_of(*ALL_DAYS), sqlite.rollups_as_of(*ALL_DAYS))
        # Inside the day (09:00, before call c99's 10:40): that day from its raw rows.
        mid_day = (date(2026, 11, 2), datetime(2026, 11, 2, 9, tzinfo=UTC))
        assert_same_figures(pg.rollups_as_of(*mid_day), sqlite.rollups_as_of(*mid_day))
        assert sum(r.contacts for r in sqlite.rollups_as_of(*mid_day)) == 30 + 12
        days = (date(2026, 11, 2), date(2026, 11, 3))
        assert sorted(pg.arrivals(*days)) == sorted(sqlite.arrivals(*days))
        assert pg.newest_start("qlog") == sqlite.newest_start("qlog") == T + 9999
    finally:
        pg.close()
        sqlite.close()


def test_planner_statistics_are_renewed_after_a_large_ingest(postgres_db: str) -> None:
    # A backfill into an empty store: until ANALYZE, a look-up by key is planned against
    # the statistics of an empty table (a scan per look-up). After ANALYZE_AFTER records
    # the store renews them itself instead of waiting for autovacuum.
    from collector.store_pg import ANALYZE_AFTER

    store = PostgresStore(postgres_db, UTC_ZONE)
    last = "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'contacts'"
    try:
        store.commit_records("hooks", [webhook_contact(i) for i in range(ANALYZE_AFTER - 1)],
                             [], None)
        with psycopg.connect(postgres_db, autocommit=True) as conn:
            assert conn.execute(last).fetchone() == (None,)
            store.commit_records("hooks", [webhook_contact(ANALYZE_AFTER)], [], None)
            assert conn.execute(last).fetchone() != (None,)
            assert conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'contacts'"
                                ).fetchone() == (ANALYZE_AFTER,)
        assert store._grown == 0 and store._analyzed_rows == ANALYZE_AFTER
    finally:
        store.close()


def test_two_replicas_starting_at_once_share_one_schema_and_key(postgres_db: str) -> None:
    # Both create the schema on an empty database at the same moment: the write lock makes
    # one create it and draw the customer key, the other find both (CREATE ... IF NOT
    # EXISTS racing on its own fails on the catalog's unique index).
    barrier = threading.Barrier(4)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            opened.append(PostgresStore(postgres_db, UTC_ZONE, kpi=DEFS))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not errors, errors
        assert len(opened) == 4 and len({store._key for store in opened}) == 1
        with psycopg.connect(postgres_db) as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        assert sorted(meta) == ["customer_key", "kpi", "schema", "timezone"]
        assert bytes.fromhex(meta["customer_key"]) == opened[0]._key
    finally:
        for store in opened:
            store.close()


def test_both_schemas_have_the_same_tables_and_columns_in_order(
        postgres_db: str, tmp_path: Path) -> None:
    # collector.migrate copies column for column: names, order and the kind of each
    # (PostgreSQL's REAL would be float4: every REAL is DOUBLE PRECISION there).
    import sqlite3

    SqliteStore(tmp_path / "s.db", UTC_ZONE).close()
    PostgresStore(postgres_db, UTC_ZONE).close()
    lite = sqlite3.connect(tmp_path / "s.db")
    tables = [r[0] for r in lite.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    kinds = {"TEXT": "text", "REAL": "double precision", "INTEGER": "bigint"}
    # not null: declared, or a key column (PostgreSQL's keys are never null; SQLite lets a
    # rowid table's TEXT PRIMARY KEY be null, a quirk the store never uses)
    want = {t: [(r[1], kinds[r[2]], bool(r[3]) or r[5] > 0)
                for r in lite.execute(f"PRAGMA table_info({t})")] for t in tables}
    lite.close()
    with psycopg.connect(postgres_db) as conn:
        got = {t: [(name, kind, nullable == "NO") for name, kind, nullable in conn.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (t,))] for t in tables}
    assert tables == ["contacts", "daily", "legs", "meta", "positions", "queue_calls", "repeats"]
    assert got == want


def test_large_batches_copied_in_count_and_skip_as_small_ones(
        postgres_db: str, tmp_path: Path) -> None:
    # From COPY_FROM rows a many-row insert is a COPY (skipping known keys through a
    # temporary twin of the table); the same commits on SQLite give the same answers.
    from collector.store_pg import COPY_FROM

    single = [call_legs(i)[-1] for i in range(2 * COPY_FROM)]  # calls of one leg each
    contacts = [webhook_contact(i) for i in range(2 * COPY_FROM)]
    assert len(single) > COPY_FROM
    extra = [call_legs(i)[-1] for i in range(2 * COPY_FROM, 2 * COPY_FROM + 20)]
    sqlite = SqliteStore(tmp_path / "s.db", UTC_ZONE, kpi=DEFS, customer_key=KEY)
    pg = PostgresStore(postgres_db, UTC_ZONE, kpi=DEFS, customer_key=KEY)
    try:
        for store in (sqlite, pg):
            # every call new: the fast path (contact rows with their leg inline)
            assert store.commit_records("pbx", [], single, "p1") == (len(single), 0)
            # all known plus some new: the fast path finds out, the general path stores
            assert store.commit_records("pbx", [], single + extra, "p2") == (
                len(extra), len(single))
            assert store.commit_records("hooks", contacts, [], None) == (len(contacts), 0)
            assert store.commit_records("hooks", contacts[::-1] + contacts[:3], [], None) == (
                0, len(contacts) + 3)
        assert pg.counts() == sqlite.counts() == {
            "pbx": len(single) + len(extra), "hooks": len(contacts)}
        assert_same_figures(pg.rollups_as_of(*ALL_DAYS), sqlite.rollups_as_of(*ALL_DAYS))
    finally:
        pg.close()
        sqlite.close()
