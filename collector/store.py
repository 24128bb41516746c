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
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from adapters.base import Leg
from collector.calls import leg_of_contact, merge_legs, single_leg_contact, single_leg_rows
from collector.model import Contact, Rollup

# 1: contacts, positions, daily. 2: + contacts.wait_seconds, + legs (opens a 1 in place).
SCHEMA_VERSION = "2"
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
    wait_seconds REAL,
    leg TEXT,  -- a call of one leg: that leg's id (its other fields below); else NULL
    finish REAL,
    billsec REAL,
    flags INTEGER,
    PRIMARY KEY (source, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contacts_by_day ON contacts (day);
CREATE TABLE IF NOT EXISTS legs (
    source TEXT NOT NULL,
    call TEXT NOT NULL,
    id TEXT NOT NULL,
    n INTEGER NOT NULL,
    channel TEXT NOT NULL,
    start REAL NOT NULL,
    finish REAL NOT NULL,
    billsec REAL NOT NULL,
    answered INTEGER NOT NULL,
    person INTEGER NOT NULL,
    queue TEXT NOT NULL,
    direction TEXT NOT NULL,
    outcome TEXT NOT NULL,
    customer TEXT,
    price REAL,
    reason TEXT NOT NULL,
    PRIMARY KEY (source, call, id)
) WITHOUT ROWID;
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

_CONTACT_COLUMNS = (
    "id, channel, direction, queue, start, handled, handle_seconds, talk_seconds, "
    "billable_seconds, outcome, customer, price, reason, wait_seconds"
)  # Contact's field order
_INSERT = (
    f"INSERT OR IGNORE INTO contacts ({_CONTACT_COLUMNS}, source, day) "  # noqa: S608 - constants
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
# After the fast path's OR IGNORE skipped something, the rows known to be new go in with a
# plain INSERT, so that a constraint other than the key (NOT NULL) fails loudly.
_INSERT_NEW = _INSERT.replace("INSERT OR IGNORE", "INSERT")
_REPLACE = _INSERT.replace("INSERT OR IGNORE", "INSERT OR REPLACE")
_INSERT_INLINE = (
    f"INSERT OR IGNORE INTO contacts ({_CONTACT_COLUMNS}, source, day, leg, finish, "  # noqa: S608
    "billsec, flags) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_NEW_INLINE = _INSERT_INLINE.replace("INSERT OR IGNORE", "INSERT")
# The inline leg's flags: what a Leg knows that its contact does not show.
_ANSWERED, _PERSON, _QUEUE_MAPPED, _DIRECTION_MAPPED = 1, 2, 4, 8
_LEG_COLUMNS = (
    "id, call, channel, start, finish, billsec, answered, person, queue, direction, "
    "outcome, customer, price, reason"
)  # Leg's field order
_INSERT_LEG = (
    f"INSERT OR IGNORE INTO legs ({_LEG_COLUMNS}, source, n) "  # noqa: S608 - constants
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_NEW_LEG = _INSERT_LEG.replace("INSERT OR IGNORE", "INSERT")
_LEGS_OF_CALL = (
    f"SELECT {_LEG_COLUMNS} FROM legs WHERE source = ? AND call = ? ORDER BY start, n"  # noqa: S608
)
_DELETE_EMPTY_DAILY = (
    "DELETE FROM daily WHERE day = ? AND channel = ? AND direction = ? AND queue = ? "
    "AND outcome = ? AND contacts <= 0"
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


class Committed(NamedTuple):
    """What one commit did: records (contacts or legs) new to the store, and repeats."""

    records: int  # new contacts plus new legs
    duplicates: int  # records already stored (a re-read, a redelivery) or repeated in the batch


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
    ) -> Committed: ...

    def rollups_as_of(self, first_day: date, now: datetime) -> list[Rollup]: ...

    def newest_start(self, source: str) -> float | None: ...

    def counts(self) -> dict[str, int]: ...

    def close(self) -> None: ...


def _flags(leg: Leg) -> int:
    return (
        (_ANSWERED if leg.answered else 0)
        | (_PERSON if leg.person else 0)
        | (_QUEUE_MAPPED if leg.queue else 0)
        | (_DIRECTION_MAPPED if leg.direction else 0)
    )


def _inline_leg(contact: Contact, leg_id: str, finish: float, billsec: float, flags: int) -> Leg:
    """The one leg a contact row holds, exactly as it was committed."""
    return Leg(
        leg_id,
        contact.id,
        contact.channel,
        contact.start,
        finish,
        billsec,
        bool(flags & _ANSWERED),
        bool(flags & _PERSON),
        contact.queue if flags & _QUEUE_MAPPED else "",
        contact.direction if flags & _DIRECTION_MAPPED else "",
        contact.outcome,
        contact.customer,
        contact.price,
        contact.reason,
    )


class StoreVersionError(RuntimeError):
    """The store was written by a newer version of the exporter."""


def _leg_start(leg: Leg) -> float:
    return leg.start


def _leg_of_row(row: tuple[object, ...]) -> Leg:
    lid, call, channel, start, finish, billsec, answered, person, *rest = row
    return Leg(
        lid, call, channel, start, finish, billsec, bool(answered), bool(person), *rest  # type: ignore[arg-type]
    )


# Bounds on what a long-running process keeps (issue 10 item 14, measured by bench/soak.py).
# The day caches hold one entry per quarter hour that any contact started in: an export
# spread over years, or with garbage dates, grew them without end. Cleared when full.
DAY_CACHE_LIMIT = 8192  # quarter hours: 85 days
# SQLite's page cache per connection, in KiB. It fills over the first half hour of a soak
# (main RSS +2 MB, then flat); set here so that the bound does not depend on the build.
SQLITE_CACHE_KIB = 2048


class DayMapper:
    """UTC epoch seconds -> local calendar day ordinal, with offsets cached per 15 minutes."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._offsets: dict[int, int] = {}
        # 15-minute bucket -> local day, for offsets that are whole quarter hours (all of
        # today's zones): local midnight is then a bucket boundary, so the whole bucket
        # lies in one local day. One dict lookup per contact.
        self._days: dict[int, int] = {}

    def offset(self, epoch: float) -> int:
        bucket = int(epoch // _BUCKET)
        offset = self._offsets.get(bucket)
        if offset is None:
            moment = datetime.fromtimestamp(bucket * _BUCKET, UTC).astimezone(self.tz)
            offset = int(moment.utcoffset().total_seconds())  # type: ignore[union-attr]
            if len(self._offsets) >= DAY_CACHE_LIMIT:
                self._offsets.clear()
            self._offsets[bucket] = offset
        return offset

    def day(self, epoch: float) -> int:
        if not _FIRST_EPOCH <= epoch <= _LAST_EPOCH:  # also NaN
            epoch = _FIRST_EPOCH if epoch < 0 else _LAST_EPOCH
        bucket = int(epoch // _BUCKET)
        day = self._days.get(bucket)
        if day is None:
            offset = self.offset(epoch)
            day = int((epoch + offset) // 86400) + _EPOCH_ORDINAL
            if offset % _BUCKET == 0:
                if len(self._days) >= DAY_CACHE_LIMIT:
                    self._days.clear()
                self._days[bucket] = day
        return day


Totals = dict[tuple[int, str, str, str, str], list[float]]


def _add(totals: Totals, day: int, c: Contact, sign: int = 1) -> None:
    """Add (sign 1) or take out (sign -1) one contact's share of its day's rollup row."""
    key = (day, c.channel, c.direction, c.queue, c.outcome)
    acc = totals.get(key)
    if acc is None:
        acc = totals[key] = [0, 0, 0.0, 0.0, 0.0, 0.0, c.start]
    acc[0] += sign
    if c.handled:
        acc[1] += sign
        acc[2] += sign * c.handle_seconds
        acc[3] += sign * c.talk_seconds
    acc[4] += sign * c.billable_seconds
    if c.price is not None:
        acc[5] += sign * c.price
    if c.start > acc[6]:  # an upper bound stays one when a contact moves earlier
        acc[6] = c.start


def _add_rows(totals: Totals, rows: list[tuple[Any, ...]]) -> None:
    """_add for many contact rows at once (Contact's fields, then source, day, ...)."""
    get = totals.get
    for c in rows:
        key = (c[15], c[1], c[2], c[3], c[9])  # day, channel, direction, queue, outcome
        acc = get(key)
        if acc is None:
            acc = totals[key] = [0, 0, 0.0, 0.0, 0.0, 0.0, c[4]]
        acc[0] += 1
        if c[5]:  # handled
            acc[1] += 1
            acc[2] += c[6]
            acc[3] += c[7]
        acc[4] += c[8]
        if c[11] is not None:
            acc[5] += c[11]
        if c[4] > acc[6]:
            acc[6] = c[4]


class SqliteStore:
    """The default Store: one SQLite file in WAL mode, one writer at a time."""

    def __init__(
        self, path: Path | str, tz: ZoneInfo, busy_timeout: float = 10.0, readonly: bool = False
    ) -> None:
        self.path = Path(path)
        self._days = DayMapper(tz)
        self._lock = threading.RLock()
        self._legs_written = 0
        self._readonly = readonly
        self._newest: dict[str, float | None] = {}  # source -> newest contact start, once read
        if readonly:  # a reader next to the writer (the recompute worker): no schema, no meta
            self._db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=busy_timeout,
                isolation_level=None, check_same_thread=False,
            )
            self._db.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
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
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._check_meta(tz)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'legs'").fetchone()
        self._legs_written = int(row[0]) if row else 0  # the file order of the next leg

    # -- setup ---------------------------------------------------------------------------
    def _check_version(self) -> None:
        """Refuse a store written by a newer version: its schema may mean other things."""
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            return
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row and row[0].isdigit() and int(row[0]) > int(SCHEMA_VERSION):
            raise StoreVersionError(
                f"{self.path}: store schema {row[0]} is newer than this exporter's "
                f"({SCHEMA_VERSION}); upgrade the exporter or point it at another store"
            )

    def _migrate(self) -> None:
        """Bring a store of schema 1 up to date in place: legs (created by _SCHEMA) and
        contacts.wait_seconds. Its contacts stay; each counts as a call of one leg."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(contacts)")}
        for name, kind in (("wait_seconds", "REAL"), ("leg", "TEXT"), ("finish", "REAL"),
                           ("billsec", "REAL"), ("flags", "INTEGER")):
            if name not in columns:
                self._db.execute(f"ALTER TABLE contacts ADD COLUMN {name} {kind}")

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
        """Store new contacts and move the position; returns how many contacts were new."""
        return self.commit_records(source, contacts, (), position).records

    def commit_records(
        self,
        source: str,
        contacts: Sequence[Contact],
        legs: Sequence[Leg],
        position: str | None,
    ) -> Committed:
        """Store new contacts and legs, roll them up and move the position, atomically.

        A contact or leg already stored for this source (same id; for a leg, same call and
        id) is a duplicate: re-reading an export or a redelivered webhook counts once. Each
        call that gains a leg gets its contact recomputed from all its legs; the rollups
        lose the call's old contribution and gain the new one in the same transaction.
        """
        with self._lock:
            legs_before = self._legs_written
            self._db.execute("BEGIN IMMEDIATE")
            try:
                totals: Totals = {}
                inserted = self._insert(source, contacts)
                for day, contact in inserted:
                    _add(totals, day, contact)
                merged: list[tuple[int, Contact]] = []
                fresh_legs, moved = self._commit_legs(source, legs, totals, merged)
                self._db.executemany(
                    _UPSERT_DAILY, (key + tuple(acc) for key, acc in totals.items())
                )
                if moved:  # a call left its old row (day, queue or outcome changed)
                    self._db.executemany(_DELETE_EMPTY_DAILY, moved)
                if self._legs_written != legs_before:
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('legs', ?)",
                        (str(self._legs_written),),
                    )
                if position is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO positions VALUES (?, ?, ?)",
                        (source, position, datetime.now(UTC).timestamp()),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._legs_written = legs_before
                self._rollback()
                raise
            if source in self._newest:
                starts = [c.start for _, c in inserted] + [c.start for _, c in merged]
                known = self._newest[source]
                if starts and (known is None or max(starts) > known):
                    self._newest[source] = max(starts)
        records = len(inserted) + fresh_legs
        return Committed(records, len(contacts) + len(legs) - records)

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
        self._db.executemany(_INSERT_NEW, ((*c, source, day) for day, c in fresh))
        return fresh

    def _commit_legs(
        self,
        source: str,
        legs: Sequence[Leg],
        totals: Totals,
        merged: list[tuple[int, Contact]],
    ) -> tuple[int, list[tuple[int, str, str, str, str]]]:
        """Store the new legs and recompute their calls' contacts into `merged`.

        Returns how many legs were new, and the rollup keys that calls' old contacts were
        taken out of (to drop rows left empty). Fast path: every leg is a call of its own,
        new to the store (a day's file read for the first time): one contact row each,
        holding its leg.
        """
        if not legs:
            return 0, []
        if len({leg.call for leg in legs}) == len(legs):
            rows = single_leg_rows(legs, source, self._days.day)
            before = self._db.total_changes
            self._db.execute("SAVEPOINT calls")
            self._db.executemany(_INSERT_INLINE, rows)
            if self._db.total_changes - before == len(rows):
                self._db.execute("RELEASE calls")
                _add_rows(totals, rows)
                newest = max(rows, key=itemgetter(4))  # for newest_start, not every row
                merged.append((newest[15], Contact._make(newest[:14])))
                return len(legs), []
            # Some calls are known already (a re-read, a call's next leg): the general path.
            self._db.execute("ROLLBACK TO calls")
            self._db.execute("RELEASE calls")
            merged.clear()
        return self._merge_calls(source, legs, totals, merged)

    def _merge_calls(
        self,
        source: str,
        legs: Sequence[Leg],
        totals: Totals,
        merged: list[tuple[int, Contact]],
    ) -> tuple[int, list[tuple[int, str, str, str, str]]]:
        by_call: dict[str, list[Leg]] = {}
        for leg in legs:
            group = by_call.get(leg.call)
            if group is None:
                by_call[leg.call] = [leg]
            else:
                group.append(leg)
        stored = self._stored_calls(source, list(by_call))
        day_of = self._days.day
        fresh = 0
        moved: list[tuple[int, str, str, str, str]] = []
        inline_rows: list[tuple[object, ...]] = []
        table_legs: list[Leg] = []
        for call, group in by_call.items():
            old = stored.get(call)
            known: list[Leg] = []
            in_table = False
            if old is not None:
                if old[2] is not None:
                    known = [old[2]]  # the one leg kept in its contact row
                else:
                    known = [_leg_of_row(row) for row in self._db.execute(
                        _LEGS_OF_CALL, (source, call)
                    )]
                    in_table = bool(known)
                    if not in_table:  # stored before legs were kept, or a plain contact
                        known = [leg_of_contact(old[1])]
            seen = {leg.id for leg in known}
            new: list[Leg] = []
            for leg in group:
                if leg.id not in seen:  # else already stored, or repeated in this batch
                    seen.add(leg.id)
                    new.append(leg)
            if not new:
                continue
            fresh += len(new)
            if old is None and len(new) == 1:
                leg = new[0]
                contact = single_leg_contact(leg)
                day = day_of(contact.start)
                inline_rows.append(
                    (*contact, source, day, leg.id, leg.end, leg.billsec, _flags(leg))
                )
            else:
                # A call of several legs: all of them in the legs table, in file order
                # (the legs stored before first), the contact row without an inline leg.
                table_legs.extend(new if in_table else known + new)
                everything = known + new
                everything.sort(key=_leg_start)  # stable: file order breaks ties
                contact = merge_legs(call, everything)
                day = day_of(contact.start)
                if old is not None:
                    old_day, old_contact = old[0], old[1]
                    _add(totals, old_day, old_contact, -1)
                    moved.append((old_day, old_contact.channel, old_contact.direction,
                                  old_contact.queue, old_contact.outcome))
                self._db.execute(_REPLACE, (*contact, source, day))
            merged.append((day, contact))
            _add(totals, day, contact)
        first = self._legs_written
        self._db.executemany(
            _INSERT_NEW_LEG, ((*leg, source, n) for n, leg in enumerate(table_legs, first))
        )
        self._legs_written = first + len(table_legs)
        self._db.executemany(_INSERT_NEW_INLINE, inline_rows)
        return fresh, moved

    def _stored_calls(
        self, source: str, calls: list[str]
    ) -> dict[str, tuple[int, Contact, Leg | None]]:
        """call -> (day, contact, its inline leg or None) for the calls already stored."""
        found: dict[str, tuple[int, Contact, Leg | None]] = {}
        for i in range(0, len(calls), 500):
            part = calls[i : i + 500]
            marks = ",".join("?" * len(part))
            for row in self._db.execute(
                f"SELECT day, {_CONTACT_COLUMNS}, leg, finish, billsec, flags "  # noqa: S608
                f"FROM contacts WHERE source = ? AND id IN ({marks})",
                (source, *part),
            ):
                day, cid, channel, direction, queue, start, handled, *rest = row
                *fields, leg_id, finish, billsec, flags = rest
                contact = Contact(cid, channel, direction, queue, start, bool(handled), *fields)
                leg = None if leg_id is None else _inline_leg(contact, leg_id, finish, billsec,
                                                              flags)
                found[cid] = (day, contact, leg)
        return found

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
        """Start of the newest contact stored from `source`; None when it has none.

        The writer scans the source's contacts once, then keeps the figure up to date on
        each commit (a scan per batch would grow with history).
        """
        with self._lock:
            if source in self._newest:
                return self._newest[source]
            row = self._db.execute(
                "SELECT max(start) FROM contacts WHERE source = ?", (source,)
            ).fetchone()
            newest = None if row is None or row[0] is None else float(row[0])
            if not self._readonly:
                self._newest[source] = newest
        return newest

    def counts(self) -> dict[str, int]:
        """Stored contacts per source (for tests, the landing page and reports)."""
        with self._lock:
            return dict(
                self._db.execute("SELECT source, count(*) FROM contacts GROUP BY source")
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
