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

Between polls a watcher thread waits (poll(2), no timeout, no busy loop) on the lock
session's socket while this replica leads. An idle session's socket becomes readable only
when the server says something unasked: on pg_terminate_backend it writes FATAL and
closes, and the TCP keepalives (collector.pgconn) end a socket whose server vanished. The
watcher then re-checks under the lock's mutex and steps down at once, calling `on_lost`
(the exporter sets contactcenter_leader to 0). The server writes that FATAL before the
ending session releases the lock, so the old leader learns of the loss before a follower
can take the lock; and a follower that takes the lock waits `settle` seconds (well above
the watcher's latency, far below an interval) before it says it leads and pulls. So
contactcenter_leader is never 1 on two replicas at once when a session is terminated or
a leader is killed.

The one case this cannot cover: a network partition in which the server ends the
session (its keepalives gave up on the client) before the client's own keepalives give
up on the server. The old leader then says 1 until its keepalive or its next lock check
fails (about 10 s, KEEPALIVES), while the new leader already says 1. Its pulls stay
fenced: a commit checks the lock on the server and is refused, so even then no two
replicas ever store a pull.

Connecting fails softly: the error is kept (readable, never a password) and retried with
exponential backoff. The password comes from `password` (CONTACT_COST_STORE_PASSWORD) or
libpq's own environment (PGPASSWORD) and pgpass, never from the URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg

from collector.pgconn import connect, ended_by_server, reason

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


# libpq takes any connection keyword as a URL query parameter, these secrets too.
_SECRET_PARAMS = ("password", "sslpassword")


def _redact_query(query: str) -> str:
    """The query with the values of secret parameters shown as ***."""
    pieces = [f"{p.split('=', 1)[0]}=***"
              if unquote(p.split("=", 1)[0]).lower() in _SECRET_PARAMS else p
              for p in query.split("&")]
    return "&".join(pieces)


def redact_url(url: str) -> str:
    """The URL with any password (user:password@ or ?password=) shown as ***, for messages."""
    parts = urlsplit(url)
    if parts.query and _redact_query(parts.query) != parts.query:
        parts = parts._replace(query=_redact_query(parts.query))
        url = urlunsplit(parts)
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
    if parts.password is not None or redact_url(url) != url:  # user:pw@ or ?password=
        raise StoreUrlError(
            f"{redact_url(url)}: the password does not belong in the file; set "
            "CONTACT_COST_STORE_PASSWORD, or use PGPASSWORD or ~/.pgpass"
        )
    if not parts.hostname and "host=" not in parts.query:
        raise StoreUrlError(f"{url}: no host")
    return url


# A follower that takes the lock says it leads only this long afterwards: the old leader's
# watcher has stepped down by then (it learns of a terminated session in 3-10 ms on
# loopback). The exporter uses at most a quarter of its interval.
SETTLE_SECONDS = 0.5


class LeaderLock:
    """Leadership held through one dedicated PostgreSQL session. Thread-safe: the poll,
    verify, close and the watcher thread use the connection under one mutex."""

    def __init__(
        self,
        url: str,
        password: str | None = None,
        name: str = LOCK_NAME,
        connect_timeout: int = 5,
        backoff: tuple[float, float] = (1.0, 30.0),
        clock: Callable[[], float] = time.monotonic,
        settle: float = SETTLE_SECONDS,
    ) -> None:
        self.url = check_store_url(url)
        self.key = lock_key(name)
        self._password = password
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._clock = clock
        self._settle = settle
        self._conn: psycopg.Connection[Any] | None = None
        self._leader = False
        self._delay = 0.0
        self._retry_at = 0.0
        self._mutex = threading.RLock()
        self._closing = threading.Event()  # set by close(): the watcher ends, a settle too
        self._watcher: threading.Thread | None = None
        self._wake: tuple[int, int] | None = None  # a pipe that wakes the watcher
        self.error: str | None = None  # why the last connect or check failed, for logs
        self.pid: int | None = None  # the lock session's backend pid while connected
        # Called (from the watcher thread, holding no lock) when it found leadership lost.
        self.on_lost: Callable[[], None] | None = None

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
        self._nudge()

    def _holds(self, conn: psycopg.Connection[Any]) -> bool:
        classid, objid = split_key(self.key)
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 1",
            (classid, objid),
        ).fetchone()
        return bool(row and row[0])

    def poll(self) -> bool:
        """Keep or try to take the lock; whether this replica leads now. Never raises.

        A lock just taken is announced `settle` seconds later (this call waits), once the
        replica that held it before has surely stepped down."""
        with self._mutex:
            now = self._clock()
            if self._conn is not None and not self._leader and ended_by_server(self._conn):
                self._drop()  # a follower's idle session ended (a restart): a new one now
                self._retry_at = 0.0
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
                    row = self._conn.execute("SELECT pg_try_advisory_lock(%s)",
                                             (self.key,)).fetchone()
                    if row and row[0] and self._settle > 0:
                        self._closing.wait(self._settle)
                        self._leader = self._holds(self._conn)  # still ours after the wait
                    else:
                        self._leader = bool(row and row[0])
            except psycopg.Error as exc:
                self._failed(exc, now)
                return False
            self._delay, self.error = 0.0, None
            if self._leader:
                self._watch()
            return self._leader

    def verify(self) -> bool:
        """Whether the lock is still held, asked of the server (before a pull). Never raises."""
        with self._mutex:
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
        """Give the lock up (a clean stop hands leadership over at once) and stop the
        watcher. A later poll() connects (and watches) again."""
        self._closing.set()  # a settle under way ends now
        with self._mutex:
            watcher, self._watcher = self._watcher, None
            self._nudge()
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join()
        with self._mutex:
            if self._conn is not None and self._leader:
                with contextlib.suppress(psycopg.Error):
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            self._drop()
            if self._wake is not None:
                for fd in self._wake:
                    os.close(fd)
                self._wake = None
            self._closing.clear()

    # -- the watcher: learns of a lost session between polls --------------------------------
    def _nudge(self) -> None:
        """Make the watcher look again (the connection or the role changed, or closing)."""
        if self._wake is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake[1], b"x")

    def _watch(self) -> None:
        """Start the watcher if it is not running (called holding the mutex, when leading)."""
        if self._closing.is_set():
            return  # close() is stopping it
        if self._watcher is not None:
            self._nudge()  # perhaps a new connection to watch
            return
        if self._wake is None:
            read_end, write_end = os.pipe()
            os.set_blocking(write_end, False)  # a full pipe already wakes it: never block
            self._wake = (read_end, write_end)
        self._watcher = threading.Thread(target=self._watch_loop, args=(self._wake[0],),
                                         name="leader-lock-watcher", daemon=True)
        self._watcher.start()

    def _watch_loop(self, wake: int) -> None:
        """Wait on the lock session's socket while leading; on readiness, re-check. Ends
        when closing, or when close() has let it go (self._watcher is no longer this)."""
        while not self._closing.is_set() and self._watcher is threading.current_thread():
            with self._mutex:
                conn = self._conn if self._leader else None
                fd = conn.fileno() if conn is not None else None
            waiter = select.poll()
            waiter.register(wake, select.POLLIN)
            if fd is not None:
                waiter.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
            ready = dict(waiter.poll())
            if wake in ready:
                os.read(wake, 4096)  # drained; look at the state again
                continue
            if conn is not None and self._check_unasked(conn):
                on_lost = self.on_lost
                if on_lost is not None:
                    with contextlib.suppress(Exception):
                        on_lost()

    def _check_unasked(self, conn: psycopg.Connection[Any]) -> bool:
        """The socket was readable: unless that was a poll's or verify's own answer, the
        server spoke unasked (FATAL, then EOF) or the socket failed. Whether we lost."""
        with self._mutex:
            if conn is not self._conn or not self._leader or self._closing.is_set():
                return False  # changed meanwhile: the loop looks again
            idle = select.poll()
            idle.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
            if not idle.poll(0):
                return False  # it was the answer to a query another thread made
            try:
                self._leader = self._holds(conn)
            except psycopg.Error as exc:
                self._failed(exc, self._clock())
            return not self._leader
