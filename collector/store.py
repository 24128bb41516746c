"""The contact store: normalised contacts, call legs, read positions and daily rollups, in SQLite.

Contacts are unique per (source, id). A source that splits a call into several records
(Asterisk writes one CDR per dial attempt or bridge) commits legs instead: legs are unique
per (source, call, id), and a call's contact is recomputed from all its stored legs
whenever one arrives, its old share of the rollups taken out and the new one put in. A
call of one leg (most calls) keeps that leg inside its contact row (columns leg, finish,
billsec, flags); its second leg moves both into the legs table. A source's read position
is written in the same transaction as its contacts, legs and the rollups they touch, so a
kill -9 at any moment loses nothing and counts nothing twice. Recompute reads only the
daily rollups (plus, for a moment inside a day, that day's raw rows), so its cost does not
grow with history.

The logic lives in collector.store_base, shared with the PostgreSQL store
(collector.store_pg); this module holds the Store protocol and SQLite's connection,
transactions and in-place migration of older files.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from adapters.base import Leg, QueueCall
from collector.model import Arrival, Contact, KpiDefinitions, Rollup
from collector.store_base import (
    SCHEMA_VERSION,
    Committed,
    SqlStore,
    StoreVersionError,
    check_version,
)
from collector.store_rollup import DAY_CACHE_LIMIT, DayMapper
from collector.store_sql import SQLITE

__all__ = [
    "DAY_CACHE_LIMIT", "SCHEMA_VERSION", "SQLITE_CACHE_KIB", "Committed", "DayMapper",
    "SqliteStore", "Store", "StoreVersionError",
]

# SQLite's page cache per connection, in KiB. It fills over the first half hour of a soak
# (main RSS +2 MB, then flat); set here so that the bound does not depend on the build.
SQLITE_CACHE_KIB = 2048
_INSERT_INLINE = SQLITE.insert_inline_new  # the fast path's statement (bench/backfill.py)
_SERVICE_COLUMNS = (
    ("waited", "INTEGER"), ("wait_seconds", "REAL"), ("in_threshold", "INTEGER"),
    ("short", "INTEGER"), ("identified", "INTEGER"), ("repeats", "INTEGER"),
)


class Store(Protocol):
    """What the scheduler, webhooks and recompute need from storage."""

    def position(self, source: str) -> str | None: ...

    def commit(self, source: str, contacts: Sequence[Contact], position: str | None) -> int: ...

    def commit_records(
        self,
        source: str,
        contacts: Sequence[Contact],
        legs: Sequence[Leg],
        position: str | None,
        queue_calls: Sequence[QueueCall] = (),
    ) -> Committed: ...

    def rollups_as_of(self, first_day: date, now: datetime) -> list[Rollup]: ...

    def arrivals(self, first_day: date, last_day: date) -> list[Arrival]: ...

    def newest_start(self, source: str) -> float | None: ...

    def counts(self) -> dict[str, int]: ...

    def close(self) -> None: ...


class SqliteStore(SqlStore):
    """The default Store: one SQLite file in WAL mode, one writer at a time."""

    _sql = SQLITE
    _db: sqlite3.Connection
    _db_errors = (sqlite3.Error,)

    def __init__(
        self,
        path: Path | str,
        tz: ZoneInfo,
        busy_timeout: float = 10.0,
        readonly: bool = False,
        kpi: KpiDefinitions | None = None,
        customer_key: bytes | None = None,
    ) -> None:
        """`kpi`: the service-level and repeat definitions (default: [service_level] and
        [fcr] defaults). `customer_key`: the secret customer hashes are keyed with; None
        uses the random key this store was created with."""
        self.path = Path(path)
        self._init_state(tz, readonly, kpi, customer_key)
        if readonly:  # a reader next to the writer (the recompute worker): no schema, no meta
            self._db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=busy_timeout,
                isolation_level=None, check_same_thread=False,
            )
            self._db.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            self._kpi = self._stored_kpi() or self._kpi  # the writer's, for today's rows
            return
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._db.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._check_version()
        self._db.executescript(self._sql.schema)
        self._migrate()
        self._db.execute(self._sql.customer_index)
        with self._lock, self._transaction():
            self._reconcile()
        self._reload()

    # -- setup ---------------------------------------------------------------------------
    def _check_version(self) -> None:
        """Refuse a store written by a newer version: its schema may mean other things."""
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            return
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        check_version(row[0] if row else None, self.path)

    def _migrate(self) -> None:
        """Bring a store of schema 1 up to date in place: legs (created by the schema) and
        contacts.wait_seconds. Its contacts stay; each counts as a call of one leg."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(contacts)")}
        for name, kind in (("wait_seconds", "REAL"), ("leg", "TEXT"), ("finish", "REAL"),
                           ("billsec", "REAL"), ("flags", "INTEGER")):
            if name not in columns:
                self._db.execute(f"ALTER TABLE contacts ADD COLUMN {name} {kind}")
        daily = {row[1] for row in self._db.execute("PRAGMA table_info(daily)")}
        for name, kind in _SERVICE_COLUMNS:  # schema 3; filled by _reconcile's rebuild
            if name not in daily:
                self._db.execute(
                    f"ALTER TABLE daily ADD COLUMN {name} {kind} NOT NULL DEFAULT 0"
                )

    # -- SQLite's connection -------------------------------------------------------------
    @contextmanager
    def _session(self) -> Iterator[None]:
        with self._lock:
            yield

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    @contextmanager
    def _read_snapshot(self) -> Iterator[None]:
        self._db.execute("BEGIN")  # WAL: every read inside sees one snapshot
        try:
            yield
        finally:
            self._rollback()

    def _rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not already (disk full, I/O error
        roll back by themselves): a second error must not hide the first one's reason."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        return self._db.executemany(sql, rows).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
