"""Leader election on a real PostgreSQL (tests/pg_helpers.py starts it): one leader at a time,
failover after kill -9 and after pg_terminate_backend, fencing, backoff, readable errors
without the password."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from collector.leader import (
    LeaderLock,
    StoreUrlError,
    check_store_url,
    lock_key,
    redact_url,
    split_key,
)
from tests.conftest import free_port
from tests.pg_helpers import PASSWORD, PostgresServer, postgres_db, postgres_server

__all__ = ["postgres_db", "postgres_server"]  # fixtures used by name below

REPO = Path(__file__).resolve().parent.parent


def _fenced(url: str, lock: LeaderLock) -> bool:
    """What a store transaction on another connection sees for `lock`'s fence."""
    sql, params = lock.fence_sql()
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT {sql}", params).fetchone()
    return bool(row and row[0])


def test_the_cluster_is_real_and_password_protected(postgres_server: PostgresServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rows = postgres_server.admin("SHOW server_version_num")
    assert int(str(rows[0][0])) >= 130000
    assert postgres_server.admin("SHOW listen_addresses") == [("127.0.0.1",)]
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres_server.url, connect_timeout=5).close()


def test_one_leader_and_a_clean_handover(postgres_db: str) -> None:
    a, b = LeaderLock(postgres_db), LeaderLock(postgres_db)
    try:
        assert a.poll() is True
        assert b.poll() is False
        assert a.poll() is True and b.poll() is False  # held across polls, no flapping
        assert a.verify() is True and b.verify() is False
        assert _fenced(postgres_db, a) is True
        assert _fenced(postgres_db, b) is False
        a.close()  # a clean stop gives the lock up at once
        assert b.poll() is True
        assert _fenced(postgres_db, b) is True
    finally:
        a.close()
        b.close()


def test_pg_terminate_backend_moves_leadership_and_fences_the_old_leader(
    postgres_db: str, postgres_server: PostgresServer
) -> None:
    now = [0.0]
    a = LeaderLock(postgres_db, clock=lambda: now[0])
    b = LeaderLock(postgres_db, clock=lambda: now[0])
    try:
        assert a.poll() and not b.poll()
        assert a.pid is not None
        postgres_server.admin(f"SELECT pg_terminate_backend({a.pid})")
        # the follower takes over within two polls (the backend exits asynchronously)
        taken = b.poll() or (time.sleep(0.5) is None and b.poll())
        assert taken is True
        # the old leader's session is gone: its fence fails, and it steps down when it looks
        assert _fenced(postgres_db, a) is False
        assert a.verify() is False
        assert a.is_leader is False
        assert a.error is not None and "127.0.0.1" in a.error
        # it reconnects after its backoff (1 s) and stays a follower
        assert a.poll() is False  # still inside the backoff: no attempt
        now[0] = 1.5
        assert a.poll() is False
        assert a.error is None and a.pid is not None
        assert b.poll() is True
    finally:
        a.close()
        b.close()


HOLDER = textwrap.dedent("""
    import sys, time
    from collector.leader import LeaderLock
    lock = LeaderLock(sys.argv[1])
    while not lock.poll():
        time.sleep(0.1)
    print("leader", flush=True)
    time.sleep(300)
""")


def test_kill_9_of_the_leader_process_hands_over_within_two_intervals(postgres_db: str) -> None:
    interval = 1.0
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, postgres_db], cwd=REPO,
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    follower = LeaderLock(postgres_db)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "leader"
        assert follower.poll() is False
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed = time.monotonic()
        polls = 0
        while not follower.poll():  # one poll per interval, as the exporter does
            polls += 1
            assert polls < 2, "no new leader within two intervals"
            time.sleep(interval)
        assert time.monotonic() - killed <= 2 * interval
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        follower.close()


def test_unreachable_store_is_one_readable_error_without_the_password() -> None:
    now = [100.0]
    secret = "hunter2-Very-Secret"
    lock = LeaderLock(f"postgresql://cce@127.0.0.1:{free_port()}/cce", password=secret,
                      connect_timeout=2, clock=lambda: now[0])
    attempts = []
    real = lock._connect

    def counting() -> psycopg.Connection[object]:
        attempts.append(now[0])
        return real()

    lock._connect = counting  # type: ignore[method-assign]
    assert lock.poll() is False
    assert lock.error is not None
    assert lock.error.startswith("PostgreSQL at postgresql://cce@127.0.0.1:")
    assert "\n" not in lock.error and secret not in lock.error
    # backoff 1, 2, 4 s: polls inside it make no attempt
    for t in (100.5, 101.0, 101.5, 103.0, 103.5, 107.0):
        now[0] = t
        assert lock.poll() is False
    assert attempts == [100.0, 101.0, 103.0, 107.0]


def test_store_urls() -> None:
    assert check_store_url("postgresql://cce@db.example:5432/cce") == (
        "postgresql://cce@db.example:5432/cce")
    with pytest.raises(StoreUrlError) as caught:
        check_store_url("postgresql://cce:s3cret-pw@db:5432/cce")
    assert "s3cret-pw" not in str(caught.value)
    assert "postgresql://cce:***@db:5432/cce" in str(caught.value)
    assert "CONTACT_COST_STORE_PASSWORD" in str(caught.value)
    with pytest.raises(StoreUrlError, match="not a postgresql:// URL"):
        check_store_url("mysql://cce@db/cce")
    assert redact_url("postgresql://u:p@h/d") == "postgresql://u:***@h/d"
    assert redact_url("postgresql://u@h/d") == "postgresql://u@h/d"


def test_lock_key_is_stable_and_splits_as_pg_locks_shows_it() -> None:
    key = lock_key()
    assert key == lock_key("contact-cost-exporter leader")
    assert -(2**63) <= key < 2**63 and key != lock_key("another center")
    high, low = split_key(key)
    assert ((high << 32) | low) == key & 0xFFFFFFFFFFFFFFFF
    assert split_key(-1) == (0xFFFFFFFF, 0xFFFFFFFF)


def test_password_from_the_argument_when_the_environment_has_none(
    postgres_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    without = LeaderLock(postgres_db, connect_timeout=5)
    assert without.poll() is False
    assert without.error is not None and PASSWORD not in without.error
    with_password = LeaderLock(postgres_db, password=PASSWORD)
    try:
        assert with_password.poll() is True
    finally:
        with_password.close()


def _lock_threads() -> list[object]:
    import threading

    return [t for t in threading.enumerate() if t.name == "leader-lock-watcher"]


def test_a_terminated_session_is_noticed_at_once_without_a_poll(
    postgres_db: str, postgres_server: PostgresServer
) -> None:
    """The watcher thread waits on the lock session's socket: pg_terminate_backend makes the
    server write FATAL and close it, and the leader steps down with no poll() or verify()."""
    lost: list[float] = []
    a = LeaderLock(postgres_db, settle=0.0)
    a.on_lost = lambda: lost.append(time.monotonic())
    try:
        assert a.poll() is True and a.pid is not None
        assert len(_lock_threads()) == 1
        terminated = time.monotonic()
        postgres_server.admin(f"SELECT pg_terminate_backend({a.pid})")
        deadline = terminated + 0.5
        while a.is_leader and time.monotonic() < deadline:
            time.sleep(0.005)
        assert a.is_leader is False, "still leader 0.5 s after its session was terminated"
        assert len(lost) == 1 and lost[0] - terminated < 0.5  # on_lost once, at once
        print(f"\nloss noticed {lost[0] - terminated:.3f} s after pg_terminate_backend")
        assert a.error is not None and "terminating connection" in a.error
        assert a.pid is None  # the dead connection was dropped (reconnect after backoff)
    finally:
        a.close()
    assert _lock_threads() == []  # close() stops the watcher


def test_the_watcher_sleeps_and_stops_with_close(postgres_db: str) -> None:
    """No busy loop: an idle leader's watcher uses no CPU; close() ends it (also a
    follower, which has no watcher, closes cleanly)."""
    a, b = LeaderLock(postgres_db, settle=0.0), LeaderLock(postgres_db, settle=0.0)
    try:
        assert a.poll() is True and b.poll() is False
        assert len(_lock_threads()) == 1  # only the leader watches
        started = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - started < 0.05  # this process slept: no spin
        assert a.verify() is True and a.poll() is True  # its own queries wake no false alarm
        assert a.is_leader is True
    finally:
        a.close()
        b.close()
    assert _lock_threads() == []
    # A lock closed while it led can lead again, with a new watcher, and close again.
    try:
        assert b.poll() is True and len(_lock_threads()) == 1
    finally:
        b.close()
    assert _lock_threads() == []


def test_a_new_leader_says_so_only_after_the_settle(postgres_db: str) -> None:
    """poll() that takes the lock waits `settle` seconds before it reports leading (the old
    leader's watcher steps down meanwhile); a lock it already holds is kept without waiting."""
    a = LeaderLock(postgres_db, settle=0.3)
    try:
        started = time.monotonic()
        assert a.poll() is True
        took = time.monotonic() - started
        assert 0.3 <= took < 2.0
        started = time.monotonic()
        assert a.poll() is True
        assert time.monotonic() - started < 0.2  # kept: no second settle
    finally:
        a.close()


def test_terminate_and_handover_cycles_never_show_two_leaders(
    postgres_db: str, postgres_server: PostgresServer
) -> None:
    """Ten pg_terminate_backend hand-overs between two locks polled as fast as they can,
    is_leader sampled on both every millisecond throughout: never both at once."""
    import threading

    locks = [LeaderLock(postgres_db, backoff=(0.05, 0.05)), LeaderLock(postgres_db,
                                                                       backoff=(0.05, 0.05))]
    stop = threading.Event()
    both: list[float] = []
    samples = [0]

    def sample() -> None:
        while not stop.is_set():
            if locks[0].is_leader and locks[1].is_leader:
                both.append(time.monotonic())
            samples[0] += 1
            time.sleep(0.001)

    def keep_polling(lock: LeaderLock) -> None:
        while not stop.is_set():
            lock.poll()
            time.sleep(0.02)

    threads = [threading.Thread(target=sample)] + [
        threading.Thread(target=keep_polling, args=(lock,)) for lock in locks]
    try:
        for thread in threads:
            thread.start()
        handovers: list[float] = []
        for _ in range(10):
            leader = wait_leader_of(locks)
            assert leader.pid is not None
            other = locks[1 - locks.index(leader)]
            terminated = time.monotonic()
            postgres_server.admin(f"SELECT pg_terminate_backend({leader.pid})")
            deadline = terminated + 5
            while not other.is_leader and time.monotonic() < deadline:
                time.sleep(0.002)
            assert other.is_leader, "no hand-over within 5 s"
            handovers.append(time.monotonic() - terminated)
        print(f"\nhand-overs: {min(handovers):.3f}-{max(handovers):.3f} s, {samples[0]} samples")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for lock in locks:
            lock.close()
    assert both == [], f"two leaders in {len(both)} samples"
    assert samples[0] > 1000
    assert _lock_threads() == []


def wait_leader_of(locks: list[LeaderLock]) -> LeaderLock:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        leading = [lock for lock in locks if lock.is_leader]
        if len(leading) == 1:
            return leading[0]
        time.sleep(0.005)
    raise AssertionError("no single leader within 10 s")
