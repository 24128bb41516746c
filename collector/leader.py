"""Leader election among replicas that share one PostgreSQL store: a session advisory lock.

Every replica polls `LeaderLock.poll()` once per interval. The replica whose dedicated
connection holds the advisory lock is the leader; it alone pulls sources. The lock lives
as long as that database session: a leader killed with kill -9 (the kernel closes its
socket, the server ends the session) or whose session is terminated
(pg_terminate_backend) loses it at once, and a follower takes it at its next poll, so a
new leader is in place within one interval (two at most, when the poll races the loss).

A leader checks that its session still holds the lock on every poll and before every
pull (`verify()`), and a store transaction can fence its commit on the lock with
`fence_sql()`: once the session is gone the lock is gone, so a stale leader's commit
finds no lock and is refused, and no two replicas ever write a pull at the same time.

Connecting fails softly: the error is kept (readable, never a password) and retried with
exponential backoff. The password comes from `password` (CONTACT_COST_STORE_PASSWORD) or
libpq's own environment (PGPASSWORD) and pgpass, never from the URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from collector.pgconn import connect, reason

LOCK_NAME = "contact-cost-exporter leader"


class StoreUrlError(ValueError):
    """A store URL that cannot be used; the message never holds a password."""


def lock_key(name: str = LOCK_NAME) -> int:
    """A stable signed 64-bit advisory-lock key for `name`."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def split_key(key: int) -> tuple[int, int]:
    """pg_locks shows a bigint key as classid (high 32 bits) and objid (low 32 bits)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def redact_url(url: str) -> str:
    """The URL with any password shown as ***, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def check_store_url(url: str) -> str:
    """A postgresql:// URL without a password; StoreUrlError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreUrlError(f"{redact_url(url)} is not a postgresql:// URL")
    if parts.password is not None:
        raise StoreUrlError(
            f"{redact_url(url)}: the password does not belong in the file; set "
            "CONTACT_COST_STORE_PASSWORD, or use PGPASSWORD or ~/.pgpass"
        )
    if not parts.hostname and "host=" not in parts.query:
        raise StoreUrlError(f"{url}: no host")
    return url


class LeaderLock:
    """Leadership held through one dedicated PostgreSQL session."""

    def __init__(
        self,
        url: str,
        password: str | None = None,
        name: str = LOCK_NAME,
        connect_timeout: int = 5,
        backoff: tuple[float, float] = (1.0, 30.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = check_store_url(url)
        self.key = lock_key(name)
        self._password = password
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._clock = clock
        self._conn: psycopg.Connection[Any] | None = None
        self._leader = False
        self._delay = 0.0
        self._retry_at = 0.0
        self.error: str | None = None  # why the last connect or check failed, for logs
        self.pid: int | None = None  # the lock session's backend pid while connected

    @property
    def is_leader(self) -> bool:
        return self._leader

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect(self.url, self._password, application_name="contact-cost-exporter leader",
                       connect_timeout=self._connect_timeout)
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        self.pid = int(row[0]) if row else None
        return conn

    def _failed(self, exc: BaseException, now: float) -> None:
        self._drop()
        low, high = self._backoff
        self._delay = low if self._delay == 0 else min(high, self._delay * 2)
        self._retry_at = now + self._delay
        self.error = f"PostgreSQL at {redact_url(self.url)}: {reason(exc)}"

    def _drop(self) -> None:
        self._leader = False
        self.pid = None
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _holds(self, conn: psycopg.Connection[Any]) -> bool:
        classid, objid = split_key(self.key)
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 1",
            (classid, objid),
        ).fetchone()
        return bool(row and row[0])

    def poll(self) -> bool:
        """Keep or try to take the lock; whether this replica leads now. Never raises."""
        now = self._clock()
        if self._conn is None:
            if now < self._retry_at:
                return False
            try:
                self._conn = self._connect()
            except psycopg.Error as exc:
                self._failed(exc, now)
                return False
        try:
            if self._leader:
                self._leader = self._holds(self._conn)
            if not self._leader:
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                self._leader = bool(row and row[0])
        except psycopg.Error as exc:
            self._failed(exc, now)
            return False
        self._delay, self.error = 0.0, None
        return self._leader

    def verify(self) -> bool:
        """Whether the lock is still held, asked of the server (before a pull). Never raises."""
        if self._conn is None or not self._leader:
            return False
        try:
            self._leader = self._holds(self._conn)
        except psycopg.Error as exc:
            self._failed(exc, self._clock())
        return self._leader

    def fence_sql(self) -> tuple[str, tuple[int, int, int]]:
        """A condition for a store transaction on another connection: true only while this
        session holds the lock. Use as `SELECT <sql>` and roll back when it is false."""
        classid, objid = split_key(self.key)
        return (
            "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objid = %s AND objsubid = 1 AND pid = %s)",
            (classid, objid, self.pid if self.pid is not None else -1),
        )

    def close(self) -> None:
        """Give the lock up (a clean stop hands leadership over at once)."""
        if self._conn is not None and self._leader:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        self._drop()
