"""The contact store: normalised contacts, read positions and daily rollups, in SQLite.

Contacts are unique per (source, id). A source's read position is written in the same
transaction as its contacts and the rollups they add to, so a kill -9 at any moment
loses nothing and counts nothing twice. Recompute reads only the daily rollups (plus, for
a moment inside a day, that day's raw rows), so its cost does not grow with history.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from collector.model import Contact, Rollup

SCHEMA_VERSION = "1"
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_BUCKET = 900  # offsets of every IANA zone change on quarter-hour boundaries
# Epochs a day inside datetime's range (years 1..9999): a start beyond them (a parser let
# through a date of year 1 or 1e300 seconds) is filed under the nearest such day instead of
# failing the whole batch, and with it every later read of the source.
_FIRST_EPOCH = -62135596800 + 2 * 86400
_LAST_EPOCH = 253402300799 - 2 * 86400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    channel TEXT NOT NULL,
    direction TEXT NOT NULL,
    queue TEXT NOT NULL,
    start REAL NOT NULL,
    day INTEGER NOT NULL,
    handled INTEGER NOT NULL,
    handle_seconds REAL NOT NULL,
    talk_seconds REAL NOT NULL,
    billable_seconds REAL NOT NULL,
    outcome TEXT NOT NULL,
    customer TEXT,
    price REAL,
    reason TEXT NOT NULL,
    PRIMARY KEY (source, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contacts_by_day ON contacts (day);
CREATE TABLE IF NOT EXISTS positions (
    source TEXT PRIMARY KEY,
    position TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS daily (
    day INTEGER NOT NULL,
    channel TEXT NOT NULL,
    direction TEXT NOT NULL,
    queue TEXT NOT NULL,
    outcome TEXT NOT NULL,
    contacts INTEGER NOT NULL,
    handled INTEGER NOT NULL,
    handle_seconds REAL NOT NULL,
    talk_seconds REAL NOT NULL,
    billable_seconds REAL NOT NULL,
    price REAL NOT NULL,
    max_start REAL NOT NULL,
    PRIMARY KEY (day, channel, direction, queue, outcome)
) WITHOUT ROWID;
"""

_INSERT = (
    "INSERT OR IGNORE INTO contacts (id, channel, direction, queue, start, handled, "
    "handle_seconds, talk_seconds, billable_seconds, outcome, customer, price, reason, "
    "source, day) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_UPSERT_DAILY = """
INSERT INTO daily (day, channel, direction, queue, outcome, contacts, handled,
    handle_seconds, talk_seconds, billable_seconds, price, max_start)
VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (day, channel, direction, queue, outcome) DO UPDATE SET
    contacts = contacts + excluded.contacts,
    handled = handled + excluded.handled,
    handle_seconds = handle_seconds + excluded.handle_seconds,
    talk_seconds = talk_seconds + excluded.talk_seconds,
    billable_seconds = billable_seconds + excluded.billable_seconds,
    price = price + excluded.price,
    max_start = max(max_start, excluded.max_start)
"""
_AGGREGATE = """
SELECT day, channel, direction, queue, outcome, count(*), sum(handled),
    total(CASE WHEN handled THEN handle_seconds END),
    total(CASE WHEN handled THEN talk_seconds END),
    total(billable_seconds), total(price), max(start)
FROM contacts WHERE {where}
GROUP BY day, channel, direction, queue, outcome
"""


class Store(Protocol):
    """What the scheduler, webhooks and recompute need from storage."""

    def position(self, source: str) -> str | None: ...

    def commit(self, source: str, contacts: Sequence[Contact], position: str | None) -> int: ...

    def rollups_as_of(self, first_day: date, now: datetime) -> list[Rollup]: ...

    def newest_start(self, source: str) -> float | None: ...

    def close(self) -> None: ...


class DayMapper:
    """UTC epoch seconds -> local calendar day ordinal, with offsets cached per 15 minutes."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._offsets: dict[int, int] = {}

    def offset(self, epoch: float) -> int:
        bucket = int(epoch // _BUCKET)
        offset = self._offsets.get(bucket)
        if offset is None:
            moment = datetime.fromtimestamp(bucket * _BUCKET, UTC).astimezone(self.tz)
            offset = int(moment.utcoffset().total_seconds())  # type: ignore[union-attr]
            self._offsets[bucket] = offset
        return offset

    def day(self, epoch: float) -> int:
        if not _FIRST_EPOCH <= epoch <= _LAST_EPOCH:  # also NaN
            epoch = _FIRST_EPOCH if epoch < 0 else _LAST_EPOCH
        return int((epoch + self.offset(epoch)) // 86400) + _EPOCH_ORDINAL


def _add(totals: dict[tuple[int, str, str, str, str], list[float]], day: int, c: Contact) -> None:
    key = (day, c.channel, c.direction, c.queue, c.outcome)
    acc = totals.get(key)
    if acc is None:
        acc = totals[key] = [0, 0, 0.0, 0.0, 0.0, 0.0, c.start]
    acc[0] += 1
    if c.handled:
        acc[1] += 1
        acc[2] += c.handle_seconds
        acc[3] += c.talk_seconds
    acc[4] += c.billable_seconds
    if c.price is not None:
        acc[5] += c.price
    if c.start > acc[6]:
        acc[6] = c.start


class SqliteStore:
    """The default Store: one SQLite file in WAL mode, one writer at a time."""

    def __init__(
        self, path: Path | str, tz: ZoneInfo, busy_timeout: float = 10.0, readonly: bool = False
    ) -> None:
        self.path = Path(path)
        self._days = DayMapper(tz)
        self._lock = threading.RLock()
        if readonly:  # a reader next to the writer (the recompute worker): no schema, no meta
            self._db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=busy_timeout,
                isolation_level=None, check_same_thread=False,
            )
            return
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._check_meta(tz)

    # -- setup ---------------------------------------------------------------------------
    def _check_meta(self, tz: ZoneInfo) -> None:
        with self._lock:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,)
                )
                if meta.get("timezone") not in (None, tz.key):
                    self._rebuild_days()
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('timezone', ?)", (tz.key,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _rebuild_days(self) -> None:
        """The time zone changed: local days move, so recompute day and the rollups."""
        rows = self._db.execute("SELECT source, id, start FROM contacts").fetchall()
        self._db.executemany(
            "UPDATE contacts SET day = ? WHERE source = ? AND id = ?",
            ((self._days.day(start), source, cid) for source, cid, start in rows),
        )
        self._db.execute("DELETE FROM daily")
        self._db.execute(
            "INSERT INTO daily " + _AGGREGATE.format(where="1")
        )

    # -- Store interface -----------------------------------------------------------------
    def position(self, source: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT position FROM positions WHERE source = ?", (source,)
            ).fetchone()
        return row[0] if row else None

    def commit(self, source: str, contacts: Sequence[Contact], position: str | None) -> int:
        """Store new contacts, roll them up and move the position, atomically.

        Returns how many contacts were new. Contacts already stored for this source (same
        id) are ignored, so re-reading an export or a redelivered webhook counts once.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                inserted = self._insert(source, contacts)
                totals: dict[tuple[int, str, str, str, str], list[float]] = {}
                for day, contact in inserted:
                    _add(totals, day, contact)
                self._db.executemany(
                    _UPSERT_DAILY, (key + tuple(acc) for key, acc in totals.items())
                )
                if position is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO positions VALUES (?, ?, ?)",
                        (source, position, datetime.now(UTC).timestamp()),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return len(inserted)

    def _rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not already (disk full, I/O error
        roll back by themselves): a second error must not hide the first one's reason."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _insert(self, source: str, contacts: Sequence[Contact]) -> list[tuple[int, Contact]]:
        day_of = self._days.day
        rows = [(day_of(c.start), c) for c in contacts]
        before = self._db.total_changes
        self._db.execute("SAVEPOINT fast")
        self._db.executemany(_INSERT, ((*c, source, day) for day, c in rows))
        if self._db.total_changes - before == len(rows):
            self._db.execute("RELEASE fast")
            return rows
        # Some ids were known already (re-read export, redelivery): find out which.
        self._db.execute("ROLLBACK TO fast")
        self._db.execute("RELEASE fast")
        known = self._known_ids(source, [c.id for _, c in rows])
        fresh: list[tuple[int, Contact]] = []
        for day, c in rows:
            if c.id not in known:
                known.add(c.id)  # also drops a repeat inside this batch
                fresh.append((day, c))
        self._db.executemany(_INSERT, ((*c, source, day) for day, c in fresh))
        return fresh

    def _known_ids(self, source: str, ids: Iterable[str]) -> set[str]:
        unique = list(dict.fromkeys(ids))
        known: set[str] = set()
        for i in range(0, len(unique), 500):
            part = unique[i : i + 500]
            marks = ",".join("?" * len(part))
            known.update(
                row[0]
                for row in self._db.execute(
                    f"SELECT id FROM contacts WHERE source = ? AND id IN ({marks})",  # noqa: S608
                    (source, *part),
                )
            )
        return known

    def rollups_as_of(self, first_day: date, now: datetime) -> list[Rollup]:
        """Daily rollups from `first_day` up to the moment `now`.

        Days before now's local day come from the rollup table. Now's day comes from the
        rollup table too when nothing in it started after `now` (the usual case), and is
        otherwise aggregated from that day's raw rows up to `now` (report --at in the past).
        """
        now_epoch = now.timestamp()
        today = self._days.day(now_epoch)
        first = first_day.toordinal()
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM daily WHERE day >= ? AND day <= ?", (first, today)
            ).fetchall()
            if any(r[0] == today and r[11] > now_epoch for r in rows):
                rows = [r for r in rows if r[0] != today]
                rows += self._db.execute(
                    _AGGREGATE.format(where="day = ? AND start <= ?"), (today, now_epoch)
                ).fetchall()
        return [
            Rollup(date.fromordinal(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], *r[7:11])
            for r in rows
        ]

    def newest_start(self, source: str) -> float | None:
        """Start of the newest contact stored from `source`; None when it has none."""
        with self._lock:
            row = self._db.execute(
                "SELECT max(start) FROM contacts WHERE source = ?", (source,)
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def counts(self) -> dict[str, int]:
        """Stored contacts per source (for tests, the landing page and reports)."""
        with self._lock:
            return dict(
                self._db.execute("SELECT source, count(*) FROM contacts GROUP BY source")
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
