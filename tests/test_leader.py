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
