"""The store, once for both databases: setup (schema version, zone, definitions, customer
key), reads, and moving a store (export_tables / import_tables), over the write path of
collector.store_writes.

SqliteStore (collector.store) and PostgresStore (collector.store_pg) differ only in how
they connect, open a transaction and keep or re-read what a process may cache; every
statement comes from collector.store_sql for their dialect.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Any

from collector.model import Arrival, KpiDefinitions, Rollup
from collector.store_sql import KEYS, TABLES
from collector.store_writes import Committed, StoreWrites

__all__ = ["EXPORT_BATCH", "SCHEMA_VERSION", "Committed", "SqlStore", "StoreVersionError",
           "check_version"]

# 1: contacts, positions, daily. 2: + contacts.wait_seconds, + legs (opens a 1 in place).
# 3: + daily service columns (waited .. repeats), + repeats, + queue_calls, + keyed
# customer hashes (opens a 1 or 2 in place and rebuilds its rollups once).
SCHEMA_VERSION = "3"
EXPORT_BATCH = 5000  # rows per list in export_tables


class StoreVersionError(RuntimeError):
    """The store was written by a newer version of the exporter."""


def check_version(stored: str | None, where: object) -> None:
    """Refuse a store written by a newer version: its schema may mean other things."""
    if stored and stored.isdigit() and int(stored) > int(SCHEMA_VERSION):
        raise StoreVersionError(
            f"{where}: store schema {stored} is newer than this exporter's "
            f"({SCHEMA_VERSION}); upgrade the exporter or point it at another store"
        )


class SqlStore(StoreWrites):
    """The Store protocol over one connection; subclasses say how to connect and write."""

    # -- what the databases do differently (reads) ---------------------------------------
    def _read_snapshot(self) -> AbstractContextManager[None]:
        """A consistent read of every table (export_tables)."""
        raise NotImplementedError

    def _insert_rows(self, table: str, rows: Sequence[tuple[Any, ...]]) -> int:
        """Rows of every column of `table` (import_tables); a duplicate key fails."""
        return self._many(self._sql.dialect.insert(table, TABLES[table]), rows)

    def _cursor(self, sql: str) -> Any:
        """A cursor over `sql`'s rows that need not hold them all at once."""
        return self._db.execute(sql)

    # -- setup ---------------------------------------------------------------------------
    def _meta(self) -> dict[str, str]:
        return dict(self._db.execute(self._sql.meta).fetchall())

    def _reconcile(self) -> None:
        """Inside a transaction: write the schema version and time zone, keep the
        definitions the rollups were made with, and the customer-hash key.

        A changed zone moves local days: day and the rollups are recomputed. A store
        without a key gets a random one (kept in meta, never shown). Rollups made with
        other definitions are rebuilt once from the stored contacts; a changed window
        recomputes every repeat mark too.
        """
        sql = self._sql
        meta = self._meta()
        self._db.execute(sql.put_meta, ("schema", SCHEMA_VERSION))
        if meta.get("timezone") not in (None, self._tz.key):
            self._rebuild_days()
        self._db.execute(sql.put_meta, ("timezone", self._tz.key))
        stored_key = meta.get("customer_key")
        if stored_key is None:
            stored_key = secrets.token_hex(32)
            self._db.execute(sql.add_meta, ("customer_key", stored_key))
        self._key = self._configured_key or bytes.fromhex(stored_key)
        old = self._stored_kpi()
        if old != self._kpi:
            self._rebuild_rollups(repeats=old is None or old.fcr_window != self._kpi.fcr_window)
            self._db.execute(sql.put_meta, ("kpi", json.dumps(
                [self._kpi.threshold, self._kpi.queue_thresholds, self._kpi.short_abandon,
                 self._kpi.fcr_window])))

    def _reload(self) -> None:
        """What this process keeps between commits, read from the store."""
        row = self._db.execute(self._sql.meta_value, ("legs",)).fetchone()
        self._legs_written = int(row[0]) if row else 0  # the file order of the next leg
        self._targets = {row[0] for row in self._db.execute(self._sql.targets)}
        self._newest.clear()

    def _rebuild_days(self) -> None:
        """The time zone changed: local days move, so recompute day and the rollups."""
        rows = self._db.execute(self._sql.all_starts).fetchall()
        self._many(self._sql.update_day,
                   ((self._days.day(start), source, cid) for source, cid, start in rows))
        self._rebuild_rollups(repeats=True)  # the repeat marks name days too

    def _stored_kpi(self) -> KpiDefinitions | None:
        try:
            row = self._db.execute(self._sql.meta_value, ("kpi",)).fetchone()
        except self._db_errors:
            return None
        if not row:
            return None
        try:
            threshold, queues, short, window = json.loads(row[0])
            return KpiDefinitions(
                float(threshold), tuple((str(q), float(t)) for q, t in queues),
                float(short), float(window),
            )
        except (ValueError, TypeError):
            return None

    def _rebuild_rollups(self, repeats: bool) -> None:
        """Daily rollups (and, with `repeats`, every repeat mark) from the stored contacts."""
        sql, db = self._sql, self._db
        if repeats:
            db.execute("DELETE FROM repeats")
            db.execute(sql.rebuild_marks, (self._kpi.fcr_window,))
        db.execute("DELETE FROM daily")
        db.execute(f"INSERT INTO daily ({', '.join(TABLES['daily'])}) "
                   + sql.aggregate(self._kpi, "1 = 1"), ())
        db.execute(sql.count_daily_repeats)

    # -- reads ---------------------------------------------------------------------------
    def position(self, source: str) -> str | None:
        with self._session():
            row = self._db.execute(self._sql.position, (source,)).fetchone()
        return row[0] if row else None

    def rollups_as_of(self, first_day: date, now: datetime) -> list[Rollup]:
        """Daily rollups from `first_day` up to the moment `now`.

        Days before now's local day come from the rollup table. Now's day comes from the
        rollup table too when nothing in it started after `now` (the usual case), and is
        otherwise aggregated from that day's raw rows up to `now` (report --at in the past).
        """
        now_epoch = now.timestamp()
        today = self._days.day(now_epoch)
        first = first_day.toordinal()
        sql = self._sql
        with self._session():
            rows = self._db.execute(sql.daily_range, (first, today)).fetchall()
            if any(r[0] == today and r[11] > now_epoch for r in rows):
                rows = [r for r in rows if r[0] != today]
                partial = {
                    tuple(r[:5]): list(r) for r in self._db.execute(
                        sql.aggregate(self._kpi, "day = ? AND start <= ?"), (today, now_epoch)
                    )
                }
                for *key, count in self._db.execute(sql.repeats_of_day, (today, now_epoch)):
                    if tuple(key) in partial:
                        partial[tuple(key)][17] = count
                rows += [tuple(r) for r in partial.values()]
        make = Rollup._make
        ordinal = date.fromordinal
        # the daily row without max_start (r[11]): Rollup's field order
        return [make((ordinal(r[0]), *r[1:11], *r[12:18])) for r in rows]

    def arrivals(self, first_day: date, last_day: date) -> list[Arrival]:
        """Handled contacts per label set and 15-minute bucket of start, over local days
        `first_day`..`last_day` (the projection's weekday-and-hour profile)."""
        with self._session():
            rows = self._db.execute(
                self._sql.arrivals, (first_day.toordinal(), last_day.toordinal())
            ).fetchall()
        return [Arrival(float(r[0]), r[1], r[2], r[3], int(r[4])) for r in rows]

    def newest_start(self, source: str) -> float | None:
        """Start of the newest record stored from `source`; None when it has none. A
        record is a contact, or a queue_log entry kept for another source's contacts
        (cdr_source: the log stores no contact of its own, but is not quiet).

        SQLite's one writer scans the source's records once, then keeps the figure up to
        date on each commit (a scan per batch would grow with history); PostgreSQL asks
        the database each time (index look-ups), as other processes write there too.
        """
        with self._session():
            if source in self._newest:
                return self._newest[source]
            row = self._db.execute(self._sql.newest, (source, source)).fetchone()
            newest = None if row is None or row[0] is None else float(row[0])
            if self._cache_newest and not self._readonly:
                self._newest[source] = newest
        return newest

    def counts(self) -> dict[str, int]:
        """Stored contacts per source (for tests, the landing page and reports)."""
        with self._session():
            return {str(s): int(n) for s, n in self._db.execute(self._sql.counts)}

    # -- moving a store (collector.migrate) ----------------------------------------------
    def export_tables(self) -> Iterator[tuple[str, Iterator[list[tuple[Any, ...]]]]]:
        """Every table with every column, in schema order, from one consistent read: each
        table's rows come in lists of up to EXPORT_BATCH (read each table's rows before
        asking for the next table)."""
        with self._session(), self._read_snapshot():
            for table, columns in TABLES.items():
                cursor = self._cursor(
                    f"SELECT {', '.join(columns)} FROM {table} "  # noqa: S608 - constants
                    f"ORDER BY {', '.join(KEYS[table])}"
                )
                yield table, _batches(cursor)

    def import_tables(
        self, tables: Iterable[tuple[str, Iterable[Sequence[tuple[Any, ...]]]]]
    ) -> dict[str, int]:
        """Copy `tables` (export_tables' shape) into this empty store in one transaction,
        meta included (customer key, definitions, legs counter); then the definitions and
        zone this store was opened with are applied as on start-up (a rebuild if they
        differ). Returns the rows copied per table. ValueError when the store has rows."""
        copied: dict[str, int] = {}
        with self._session():
            with self._transaction():
                for table in TABLES:
                    if table != "meta" and self._db.execute(
                        f"SELECT 1 FROM {table} LIMIT 1"  # noqa: S608 - constants
                    ).fetchone():
                        raise ValueError(f"the target store is not empty ({table} has rows)")
                for table, batches in tables:
                    if table not in TABLES:
                        raise ValueError(f"unknown table {table!r}")
                    copied[table] = 0
                    for batch in batches:
                        if table == "meta":  # over the new store's own; its schema stays
                            rows = [r for r in batch if r[0] != "schema"]
                            put = self._sql.put_meta
                            copied[table] += self._many(put, rows) if rows else 0
                        elif batch:
                            copied[table] += self._insert_rows(table, batch)
                self._reconcile()
            self._reload()
        return copied

    def close(self) -> None:
        raise NotImplementedError


def _batches(cursor: Any) -> Iterator[list[tuple[Any, ...]]]:
    while True:
        rows = cursor.fetchmany(EXPORT_BATCH)
        if not rows:
            return
        yield [tuple(r) for r in rows]
