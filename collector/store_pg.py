"""The PostgreSQL store: SqliteStore's logic and guarantees (collector.store_base) over one
psycopg 3 connection that several exporter processes may share.

Writers: every replica writes its webhooks and the leader its pulls, all into the same
tables. Each write transaction first takes one transaction-level advisory lock
(WRITE_LOCK), so writes are serialised as SQLite's one writer is, and then re-reads what
SQLite keeps in process: the legs counter from meta, whether queue_log entries wait for
the source; newest_start is asked of the database on every call. READ COMMITTED is
enough under that lock, and needed: each statement takes a fresh snapshot, and every
statement after the lock sees everything the previous holder committed (PostgreSQL
releases a transaction's locks only after its commit is visible). Under REPEATABLE READ
the snapshot would be taken by the lock statement itself, before the wait, and miss it.

A pull's commit can be fenced on the leader lock (set_fence): the condition is checked
inside the transaction, and a false one rolls back and raises NotLeader.

A connection the server ended while it sat idle (a restart, pg_terminate_backend) is
found dead before a call uses it (collector.pgconn.ended_by_server: no round trip) and
replaced at once, so a healthy server never fails a call for it. A connection lost during
a call raises StoreUnavailable (its cause is the psycopg error) and is never retried: a
write may have been sent. Later calls reconnect, with a delay from 1 s doubling to 30 s
between attempts, and fail at once while it runs; so does a replacement that cannot
connect (the server really is down). An unreachable database at construction is one
StoreUnavailable line naming the URL (any password redacted) and libpq's reason.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import TransactionStatus

from adapters.base import Contact, Leg, QueueCall
from collector.leader import check_store_url, lock_key, redact_url
from collector.model import KpiDefinitions
from collector.pgconn import connect, ended_by_server, reason
from collector.store_base import Committed, SqlStore, check_version
from collector.store_errors import NotLeader, StoreUnavailable
from collector.store_sql import POSTGRES, TABLES

# Distinct from collector.leader.lock_key() (the leader's session lock).
WRITE_LOCK = lock_key("contact-cost-exporter store writes")
# Rows from which a many-row insert is a COPY: below, a COPY's extra statements (and the
# temporary table's TRUNCATE) cost more than a round trip per row.
COPY_FROM = 64
ANALYZE_AFTER = 20_000  # records committed before the planner's statistics are renewed
Fence = Callable[[], tuple[str, tuple[Any, ...]]]

log = logging.getLogger(__name__)


class _BoolAsInteger(Dumper):
    """Python bools as integers: the store's flag columns are integers, as in SQLite."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> Buffer | None:
        return b"1" if obj else b"0"


class PostgresStore(SqlStore):
    """A Store in a PostgreSQL database, shared by any number of exporter processes."""

    _sql = POSTGRES
    _db_errors = (psycopg.Error,)
    _cache_newest = False  # other processes write too

    def __init__(
        self,
        url: str,
        tz: ZoneInfo,
        *,
        password: str | None = None,
        readonly: bool = False,
        kpi: KpiDefinitions | None = None,
        customer_key: bytes | None = None,
        connect_timeout: int = 5,
        backoff: tuple[float, float] = (1.0, 30.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`url`: postgresql://user@host:port/db, without a password (StoreUrlError);
        `password`: None leaves it to libpq (PGPASSWORD, ~/.pgpass). `readonly` (the
        recompute worker): no schema is created or changed, only reads."""
        self.url = check_store_url(url)
        self._password = password
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._clock = clock
        self._delay = 0.0
        self._retry_at = 0.0
        self._closed = False
        self._fence: Fence | None = None
        self._grown = 0  # records committed through this store since its last ANALYZE
        self._analyzed_rows = 0  # contacts then
        self._cursors = 0  # server-side cursors opened (export_tables)
        self._depth = 0  # store calls under way in this thread's hold of the lock
        self.error: str | None = None  # why the connection was lost, while it is
        self._init_state(tz, readonly, kpi, customer_key)
        self._db = None
        try:
            self._db = self._connect()
            if readonly:
                self._kpi = self._stored_kpi() or self._kpi  # the writers', for today's rows
                return
            with self._lock, self._locked():
                row = self._db.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
                if row and row[0]:
                    stored = self._db.execute(self._sql.meta_value, ("schema",)).fetchone()
                    check_version(stored[0] if stored else None, redact_url(self.url))
                self._db.execute(self._sql.schema)
                self._db.execute(self._sql.customer_index)
                self._reconcile()
            self._reload()
        except psycopg.Error as exc:
            self._drop()
            raise StoreUnavailable(self._describe(exc)) from None
        except BaseException:
            self._drop()
            raise

    # -- the connection ------------------------------------------------------------------
    def _describe(self, exc: BaseException) -> str:
        return f"PostgreSQL at {redact_url(self.url)}: {reason(exc)}"

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect(
            self.url, self._password,
            application_name="contact-cost-exporter store" + (" reader" if self._readonly else ""),
            connect_timeout=self._connect_timeout,
            # no NOTICE per commit for the temporary tables' CREATE ... IF NOT EXISTS
            options="-c client_min_messages=warning"
            + (" -c default_transaction_read_only=on" if self._readonly else ""),
        )
        conn.adapters.register_dumper(bool, _BoolAsInteger)
        return conn

    def _drop(self) -> None:
        if self._db is not None:
            with contextlib.suppress(psycopg.Error):
                self._db.close()
            self._db = None

    def _lost(self, exc: BaseException) -> None:
        """The connection broke: drop it and wait before the next attempt."""
        self._drop()
        low, high = self._backoff
        self._delay = low if self._delay == 0 else min(high, self._delay * 2)
        self._retry_at = self._clock() + self._delay
        self.error = self._describe(exc)

    def _ensure(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"PostgreSQL at {redact_url(self.url)}: the store is closed")
        if self._db is not None:
            if not ended_by_server(self._db):
                return
            # Dead before this call began (nothing of it was sent): a new connection now,
            # no failure counted and no backoff; if none can be made, that is an outage.
            log.info("PostgreSQL at %s: the server had ended the store's idle connection "
                     "(a restart or a terminated session); connecting again",
                     redact_url(self.url))
            self._drop()
            self._retry_at = 0.0  # this connection worked: no backoff is running
        now = self._clock()
        if now < self._retry_at:
            raise StoreUnavailable(
                f"{self.error}; reconnecting in {self._retry_at - now:.0f} s"
            )
        try:
            self._db = self._connect()
        except psycopg.Error as exc:
            self._lost(exc)
            raise StoreUnavailable(self._describe(exc)) from exc
        self._delay, self.error = 0.0, None

    @contextmanager
    def _session(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0 or self._db is None:  # a call within a call keeps its own
                self._ensure()
            self._depth += 1
            try:
                yield
            except psycopg.Error as exc:
                db = self._db
                if db is None or db.closed or db.broken:
                    self._lost(exc)
                    raise StoreUnavailable(self._describe(exc)) from exc
                raise
            finally:
                self._depth -= 1

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """A transaction holding the store's write lock."""
        db = self._db
        # READ COMMITTED whatever the database's default: see the module's docstring
        db.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        try:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._locked():
            row = self._db.execute(self._sql.meta_value, ("legs",)).fetchone()
            self._legs_written = int(row[0]) if row else 0  # another process may have written
            yield

    @contextmanager
    def _read_snapshot(self) -> Iterator[None]:
        self._db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        finally:
            self._rollback()

    def _cursor(self, sql: str) -> Any:
        self._cursors += 1  # a name of its own within the snapshot's transaction
        cursor = self._db.cursor(name=f"export_{self._cursors}")
        cursor.execute(sql)
        return cursor

    def _insert_rows(self, table: str, rows: Sequence[tuple[Any, ...]]) -> int:
        return self._copy(table, TABLES[table], False, rows)

    def _rollback(self) -> None:
        db = self._db
        if db is None or db.closed or db.broken:
            return
        if db.info.transaction_status != TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                db.execute("ROLLBACK")

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        bulk = self._sql.bulk.get(sql)
        if bulk is not None:
            rows = list(rows)
            if len(rows) >= COPY_FROM:
                return self._copy(*bulk, rows)
        with self._db.cursor() as cursor:
            cursor.executemany(sql, rows)
            return max(int(cursor.rowcount), 0)

    def _copy(self, table: str, columns: tuple[str, ...], skip_known: bool,
              rows: Iterable[Sequence[Any]]) -> int:
        """The rows into `table` with COPY (one round trip, not one per row): straight in,
        or, with `skip_known`, through a temporary twin of the table and INSERT ... ON
        CONFLICT DO NOTHING, as the statement it stands for. Returns the rows inserted."""
        names = ", ".join(columns)
        target = table
        if skip_known:
            target = f"stage_{table}"
            # LIKE copies the columns and NOT NULL, not the key: every row goes in
            self._db.execute(f"CREATE TEMP TABLE IF NOT EXISTS {target} (LIKE {table})")
        with self._db.cursor() as cursor:
            with cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
                count = 0
                for row in rows:
                    copy.write_row(row)
                    count += 1
            if not skip_known:
                return count
            cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {target} "  # noqa: S608
                           "ON CONFLICT DO NOTHING")
            inserted = max(int(cursor.rowcount), 0)
            cursor.execute(f"TRUNCATE {target}")
            return inserted

    # -- what SQLite keeps in process, asked of the database -----------------------------
    def _awaits_queue_calls(self, source: str) -> bool:
        row = self._db.execute(self._sql.has_target, (source,)).fetchone()
        return bool(row and row[0])

    def _note_target(self, target: str) -> None:
        pass  # asked of the table on each commit

    # -- planner statistics --------------------------------------------------------------
    def commit_records(
        self,
        source: str,
        contacts: Sequence[Contact],
        legs: Sequence[Leg],
        position: str | None,
        queue_calls: Sequence[QueueCall] = (),
    ) -> Committed:
        committed = super().commit_records(source, contacts, legs, position, queue_calls)
        self._grown += committed.records
        if self._grown >= max(ANALYZE_AFTER, self._analyzed_rows // 5):
            self._analyze()
        return committed

    def import_tables(
        self, tables: Iterable[tuple[str, Iterable[Sequence[tuple[Any, ...]]]]]
    ) -> dict[str, int]:
        copied = super().import_tables(tables)
        self._analyze()
        return copied

    def _analyze(self) -> None:
        """Fresh planner statistics once the tables have grown by a fifth (a backfill
        into an empty store: autovacuum may take a minute, and until then a look-up by
        key is planned as a scan of what was a small table)."""
        with self._session():
            try:
                self._db.execute("ANALYZE contacts, legs, repeats, queue_calls")
                row = self._db.execute(
                    "SELECT reltuples FROM pg_class WHERE oid = 'contacts'::regclass"
                ).fetchone()
            except psycopg.Error:
                db = self._db
                if db is None or db.closed or db.broken:
                    raise
                return  # not the tables' owner: autovacuum's statistics will do
            self._analyzed_rows = int(row[0]) if row and row[0] > 0 else 0
            self._grown = 0

    # -- leadership ----------------------------------------------------------------------
    def set_fence(self, fence: Fence | None) -> None:
        """With a fence, every commit with a position runs `SELECT <sql>` (the fence's
        condition, collector.leader.LeaderLock.fence_sql) in its transaction and raises
        NotLeader, rolled back, when it is false. Commits without a position (webhooks)
        are not fenced."""
        self._fence = fence

    def _check_fence(self) -> None:
        if self._fence is None:
            return
        condition, params = self._fence()
        row = self._db.execute(f"SELECT {condition}", params).fetchone()
        if not (row and row[0]):
            raise NotLeader(
                "the leader lock is no longer held: this pull's commit is refused "
                "(another replica may be pulling)"
            )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()
