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

import json
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from adapters.base import Leg, QueueCall, key_customer
from collector.calls import leg_of_contact, merge_legs, single_leg_contact, single_leg_rows
from collector.model import Arrival, Contact, KpiDefinitions, Rollup
from collector.service import enrich_contact, service_parts

# 1: contacts, positions, daily. 2: + contacts.wait_seconds, + legs (opens a 1 in place).
# 3: + daily service columns (waited .. repeats), + repeats, + queue_calls, + keyed
# customer hashes (opens a 1 or 2 in place and rebuilds its rollups once).
SCHEMA_VERSION = "3"
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
    waited INTEGER NOT NULL DEFAULT 0,
    wait_seconds REAL NOT NULL DEFAULT 0,
    in_threshold INTEGER NOT NULL DEFAULT 0,
    short INTEGER NOT NULL DEFAULT 0,
    identified INTEGER NOT NULL DEFAULT 0,
    repeats INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, channel, direction, queue, outcome)
) WITHOUT ROWID;
-- A handled contact counted as a repeat, and the daily row it is counted in.
CREATE TABLE IF NOT EXISTS repeats (
    customer TEXT NOT NULL,
    start REAL NOT NULL,
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    day INTEGER NOT NULL,
    channel TEXT NOT NULL,
    direction TEXT NOT NULL,
    queue TEXT NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (customer, start, source, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS repeats_by_day ON repeats (day);
CREATE INDEX IF NOT EXISTS repeats_by_contact ON repeats (source, id);
-- A queue_log entry for a contact of another source (cdr_source), kept until it arrives.
CREATE TABLE IF NOT EXISTS queue_calls (
    target TEXT NOT NULL,
    call TEXT NOT NULL,
    source TEXT NOT NULL,
    queue TEXT NOT NULL,
    enter REAL NOT NULL,
    wait REAL NOT NULL,
    left TEXT NOT NULL,
    PRIMARY KEY (target, call)
) WITHOUT ROWID;
"""
_CUSTOMER_INDEX = (
    "CREATE INDEX IF NOT EXISTS contacts_by_customer ON contacts (customer, start) "
    "WHERE customer IS NOT NULL"
)
_SERVICE_COLUMNS = (
    ("waited", "INTEGER"), ("wait_seconds", "REAL"), ("in_threshold", "INTEGER"),
    ("short", "INTEGER"), ("identified", "INTEGER"), ("repeats", "INTEGER"),
)

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
    handle_seconds, talk_seconds, billable_seconds, price, max_start,
    waited, wait_seconds, in_threshold, short, identified, repeats)
VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (day, channel, direction, queue, outcome) DO UPDATE SET
    contacts = contacts + excluded.contacts,
    handled = handled + excluded.handled,
    handle_seconds = handle_seconds + excluded.handle_seconds,
    talk_seconds = talk_seconds + excluded.talk_seconds,
    billable_seconds = billable_seconds + excluded.billable_seconds,
    price = price + excluded.price,
    max_start = max(max_start, excluded.max_start),
    waited = waited + excluded.waited,
    wait_seconds = wait_seconds + excluded.wait_seconds,
    in_threshold = in_threshold + excluded.in_threshold,
    short = short + excluded.short,
    identified = identified + excluded.identified,
    repeats = repeats + excluded.repeats
"""
_AGGREGATE = """
SELECT day, channel, direction, queue, outcome, count(*), sum(handled),
    total(CASE WHEN handled THEN handle_seconds END),
    total(CASE WHEN handled THEN talk_seconds END),
    total(billable_seconds), total(price), max(start),
    count(wait_seconds),
    total(CASE WHEN handled THEN wait_seconds END),
    total(CASE WHEN handled AND wait_seconds <= {threshold} THEN 1 END),
    total(CASE WHEN NOT handled AND wait_seconds <= {short} THEN 1 END),
    total(CASE WHEN handled AND customer IS NOT NULL THEN 1 END),
    0
FROM contacts WHERE {where}
GROUP BY day, channel, direction, queue, outcome
"""
_REPEATS_OF_DAY = """
SELECT day, channel, direction, queue, outcome, count(*) FROM repeats
WHERE day = ? AND start <= ? GROUP BY day, channel, direction, queue, outcome
"""


# Repeat marking (SqliteStore._mark_repeats): the commit's contacts in a temporary table.
_FCR_TEMP = (
    "CREATE TEMP TABLE IF NOT EXISTS fcr_touched "
    "(customer TEXT, start REAL NOT NULL, source TEXT NOT NULL, id TEXT NOT NULL)"
)
# Touched contacts with a later contact of their customer within the window.
_FCR_FOLLOWED = """
SELECT t.source, t.id FROM fcr_touched t WHERE t.customer IS NOT NULL AND EXISTS (
    SELECT 1 FROM contacts c WHERE c.customer IS NOT NULL AND c.customer = t.customer
    AND c.start > t.start AND c.start <= t.start + ?1)
"""
# The current marks of the touched contacts (by contact, whatever customer or start).
_FCR_MARKS = """
SELECT r.customer, r.start, r.source, r.id, r.day, r.channel, r.direction, r.queue,
    r.outcome FROM fcr_touched t JOIN repeats r ON r.source = t.source AND r.id = t.id
"""
# Each touched contact's customer's latest start before it, within the window.
_FCR_LATEST_BEFORE = """
SELECT t.customer, (SELECT max(d.start) FROM contacts d WHERE d.customer IS NOT NULL
    AND d.customer = t.customer AND d.start < t.start AND d.start >= t.start - ?1)
FROM fcr_touched t WHERE t.customer IS NOT NULL
"""
# Handled, unmarked contacts at those starts: the touched contact is their new follower.
_FCR_PREDECESSORS = """
SELECT c.customer, c.start, c.source, c.id, c.day, c.channel, c.direction, c.queue,
    c.outcome
FROM fcr_before p JOIN contacts c ON c.customer IS NOT NULL AND c.customer = p.customer
    AND c.start = p.start
WHERE c.handled AND NOT EXISTS (SELECT 1 FROM repeats r WHERE r.source = c.source AND r.id = c.id)
"""

# A recomputed call that left (customer, start): the customer's latest contact before that
# start, within the window, may have had the call as its only follower (issue 11's known
# limits: a start that moved earlier past it, a changed customer). Any earlier contact has
# that latest one as its follower, so only those at the latest start are checked again.
_FCR_LATEST_BEFORE_ONE = """
SELECT max(start) FROM contacts WHERE customer = ?1 AND start < ?2 AND start >= ?2 - ?3
"""
_FCR_RECHECK = """
SELECT c.customer, c.start, c.source, c.id, c.day, c.channel, c.direction, c.queue,
    c.outcome, c.handled AND EXISTS (SELECT 1 FROM contacts f WHERE f.customer = c.customer
        AND f.start > c.start AND f.start <= c.start + ?3)
FROM contacts c WHERE c.customer = ?1 AND c.start = ?2
"""


def aggregate_sql(defs: KpiDefinitions, where: str) -> str:
    """_AGGREGATE for the definitions: the threshold per queue as one CASE expression."""
    threshold = repr(float(defs.threshold))
    if defs.queue_thresholds:
        cases = " ".join(
            "WHEN '{}' THEN {!r}".format(q.replace("'", "''"), float(t))
            for q, t in defs.queue_thresholds
        )
        threshold = f"(CASE queue {cases} ELSE {threshold} END)"
    return _AGGREGATE.format(
        threshold=threshold, short=repr(float(defs.short_abandon)), where=where
    )


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
        queue_calls: Sequence[QueueCall] = (),
    ) -> Committed: ...

    def rollups_as_of(self, first_day: date, now: datetime) -> list[Rollup]: ...

    def arrivals(self, first_day: date, last_day: date) -> list[Arrival]: ...

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


class Totals(dict[tuple[int, str, str, str, str], list[float]]):
    """Rollup deltas of one commit, by daily row: contacts .. max_start, then the service
    columns waited, wait_seconds, in_threshold, short, identified, repeats."""

    def __init__(self, defs: KpiDefinitions) -> None:
        super().__init__()
        self.defs = defs


def _service(acc: list[float], c: Sequence[Any], sign: int, defs: KpiDefinitions) -> None:
    waited, wait, in_threshold, short, identified = service_parts(c, defs)
    acc[7] += sign * waited
    acc[8] += sign * wait
    acc[9] += sign * in_threshold
    acc[10] += sign * short
    acc[11] += sign * identified


def _add(totals: Totals, day: int, c: Contact, sign: int = 1) -> None:
    """Add (sign 1) or take out (sign -1) one contact's share of its day's rollup row."""
    key = (day, c.channel, c.direction, c.queue, c.outcome)
    acc = totals.get(key)
    if acc is None:
        acc = totals[key] = [0, 0, 0.0, 0.0, 0.0, 0.0, c.start, 0, 0.0, 0, 0, 0, 0]
    _service(acc, c, sign, totals.defs)
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
    defs = totals.defs
    short_abandon = defs.short_abandon
    thresholds = dict(defs.queue_thresholds)
    default = defs.threshold
    for c in rows:
        key = (c[15], c[1], c[2], c[3], c[9])  # day, channel, direction, queue, outcome
        acc = get(key)
        if acc is None:
            acc = totals[key] = [0, 0, 0.0, 0.0, 0.0, 0.0, c[4], 0, 0.0, 0, 0, 0, 0]
        wait = c[13]
        if c[5]:  # handled
            if c[10] is not None:
                acc[11] += 1
            if wait is not None:
                acc[7] += 1
                acc[8] += wait
                if wait <= thresholds.get(c[3], default):
                    acc[9] += 1
        elif wait is not None:
            acc[7] += 1
            if wait <= short_abandon:
                acc[10] += 1
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
        self._kpi = kpi or KpiDefinitions()
        self._key = b""
        self._targets: set[str] = set()  # sources with queue_log entries waiting for them
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
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._db.execute(_CUSTOMER_INDEX)
        self._check_meta(tz)
        self._check_kpi(customer_key)
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
        daily = {row[1] for row in self._db.execute("PRAGMA table_info(daily)")}
        for name, kind in _SERVICE_COLUMNS:  # schema 3; filled by _check_kpi's rebuild
            if name not in daily:
                self._db.execute(
                    f"ALTER TABLE daily ADD COLUMN {name} {kind} NOT NULL DEFAULT 0"
                )

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
        self._rebuild_rollups(repeats=True)  # the repeat marks name days too

    # -- service figures and repeats (issue 11) -------------------------------------------
    def _stored_kpi(self) -> KpiDefinitions | None:
        try:
            row = self._db.execute(
                "SELECT value FROM meta WHERE key = 'kpi'"
            ).fetchone()
        except sqlite3.Error:
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

    def _check_kpi(self, customer_key: bytes | None) -> None:
        """Keep the definitions the rollups were made with, and the customer-hash key.

        A store without a key gets a random one (kept in meta, never shown). Rollups made
        with other definitions are rebuilt once from the stored contacts; a changed window
        recomputes every repeat mark too.
        """
        with self._lock:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            self._db.execute("BEGIN IMMEDIATE")
            try:
                stored_key = meta.get("customer_key")
                if stored_key is None:
                    stored_key = secrets.token_hex(32)
                    self._db.execute(
                        "INSERT INTO meta VALUES ('customer_key', ?)", (stored_key,)
                    )
                self._key = customer_key or bytes.fromhex(stored_key)
                old = self._stored_kpi()
                if old != self._kpi:
                    self._rebuild_rollups(
                        repeats=old is None or old.fcr_window != self._kpi.fcr_window
                    )
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('kpi', ?)",
                        (json.dumps([self._kpi.threshold, self._kpi.queue_thresholds,
                                     self._kpi.short_abandon, self._kpi.fcr_window]),),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._targets = {
                row[0] for row in self._db.execute("SELECT DISTINCT target FROM queue_calls")
            }

    def _rebuild_rollups(self, repeats: bool) -> None:
        """Daily rollups (and, with `repeats`, every repeat mark) from the stored contacts."""
        if repeats:
            self._db.execute("DELETE FROM repeats")
            self._db.execute(
                """INSERT INTO repeats SELECT c.customer, c.start, c.source, c.id, c.day,
                    c.channel, c.direction, c.queue, c.outcome
                FROM contacts c WHERE c.handled AND c.customer IS NOT NULL AND EXISTS (
                    SELECT 1 FROM contacts d WHERE d.customer IS NOT NULL
                    AND d.customer = c.customer AND d.start > c.start
                    AND d.start <= c.start + ?)""",
                (self._kpi.fcr_window,),
            )
        self._db.execute("DELETE FROM daily")
        self._db.execute("INSERT INTO daily " + aggregate_sql(self._kpi, "1"))
        self._db.execute(
            """UPDATE daily SET repeats = (SELECT count(*) FROM repeats r WHERE
                r.day = daily.day AND r.channel = daily.channel
                AND r.direction = daily.direction AND r.queue = daily.queue
                AND r.outcome = daily.outcome)"""
        )

    def _key_records(
        self, contacts: Sequence[Contact], legs: Sequence[Leg]
    ) -> tuple[Sequence[Contact], Sequence[Leg]]:
        """Contacts and legs with their customer digests keyed with the store's secret."""
        key = self._key
        keyed: dict[str, str] = {}

        def mac(digest: str) -> str:
            value = keyed.get(digest)
            if value is None:
                value = keyed[digest] = key_customer(digest, key)
            return value

        if any(c.customer is not None for c in contacts):
            contacts = [
                c if c.customer is None else c._replace(customer=mac(c.customer))
                for c in contacts
            ]
        if legs:
            new = tuple.__new__
            legs = [
                leg if leg[11] is None
                else new(Leg, (*leg[:11], mac(leg[11]), *leg[12:]))
                for leg in legs
            ]
        return contacts, legs

    def _commit_queue_calls(
        self, source: str, entries: Sequence[QueueCall], totals: Totals,
        others: list[tuple[str, int, tuple[Any, ...]]],
        moved: list[tuple[int, str, str, str, str]],
    ) -> int:
        """Keep new queue_log entries; enrich the contacts that have arrived already."""
        fresh: list[QueueCall] = []
        for entry in entries:
            before = self._db.total_changes
            self._db.execute(
                "INSERT OR IGNORE INTO queue_calls VALUES (?,?,?,?,?,?,?)",
                (entry.target, entry.call, source, entry.queue, entry.enter, entry.wait,
                 entry.left),
            )
            if self._db.total_changes != before:
                fresh.append(entry)
                self._targets.add(entry.target)
        by_target: dict[str, dict[str, QueueCall]] = {}
        for entry in fresh:
            by_target.setdefault(entry.target, {})[entry.call] = entry
        for target, calls in by_target.items():
            stored = self._stored_calls(target, list(calls))
            enriched: list[tuple[int, tuple[Any, ...]]] = []
            for call, (day, contact, _leg) in stored.items():
                self._enrich(target, day, contact, calls[call], totals, enriched, moved)
            others.extend((target, day, c) for day, c in enriched)
        return len(fresh)

    def _enrich(
        self, source: str, day: int, contact: Contact, entry: QueueCall, totals: Totals,
        touched: list[tuple[int, tuple[Any, ...]]], moved: list[tuple[int, str, str, str, str]],
    ) -> None:
        new = enrich_contact(contact, entry)
        if new == contact:
            return
        _add(totals, day, contact, -1)
        _add(totals, day, new)
        if new.queue != contact.queue:
            moved.append((day, contact.channel, contact.direction, contact.queue,
                          contact.outcome))
        self._db.execute(
            "UPDATE contacts SET queue = ?, wait_seconds = ?, reason = ? "
            "WHERE source = ? AND id = ?",
            (new.queue, new.wait_seconds, new.reason, source, new.id),
        )
        touched.append((day, new))

    def _apply_queue_calls(
        self, source: str, touched: list[tuple[int, tuple[Any, ...]]], totals: Totals,
        moved: list[tuple[int, str, str, str, str]],
    ) -> None:
        """Enrich this commit's contacts of `source` that have a queue_log entry waiting."""
        ids = [c[0] for _, c in touched]
        entries: dict[str, QueueCall] = {}
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            for call, queue, enter, wait, left in self._db.execute(
                "SELECT call, queue, enter, wait, left FROM queue_calls "  # noqa: S608
                f"WHERE target = ? AND call IN ({marks})",
                (source, *part),
            ):
                entries[call] = QueueCall(call, source, queue, enter, wait, left)
        if not entries:
            return
        enriched: list[tuple[int, tuple[Any, ...]]] = []
        for i, (day, c) in enumerate(touched):
            entry = entries.get(c[0])
            if entry is None:
                continue
            contact = c if isinstance(c, Contact) else Contact._make(c[:14])
            before = len(enriched)
            self._enrich(source, day, contact, entry, totals, enriched, moved)
            if len(enriched) != before:
                touched[i] = enriched[-1]

    def _mark_repeats(
        self, touched: Sequence[tuple[str, int, tuple[Any, ...]]], totals: Totals,
        vacated: Sequence[tuple[str, float]] = (),
    ) -> None:
        """Mark repeats around this commit's contacts (source, day, Contact's fields).

        A repeat is a handled contact with a later contact of its customer within the
        window. When contact c (start s) arrives, the only contacts that can gain a
        follower are those of the customer's latest start before s, if within the window
        (any earlier one already has that latest contact as its follower); and c itself
        is a repeat when a contact of its customer starts in (s, s + window]. Both are
        index look-ups per contact, in SQL over a temporary table of the commit's
        contacts, so the cost does not grow with a customer's history. A contact that
        was recomputed (a call's next leg, a queue_log entry) has its own mark checked
        and moved to its current daily row; and where it left a (customer, start) behind
        (`vacated`), the customer's latest contact before that start is checked again.
        """
        window = self._kpi.fcr_window
        rows = [
            (c[10], c[4], source, c[0])
            for source, _, c in touched
            if c[10] is not None or isinstance(c, Contact)
        ]
        if not rows and not vacated:
            return
        db = self._db
        db.execute(_FCR_TEMP)
        db.execute("DELETE FROM fcr_touched")
        db.executemany("INSERT INTO fcr_touched VALUES (?,?,?,?)", rows)
        followed = {(src, cid) for src, cid in db.execute(_FCR_FOLLOWED, (window,))}
        marks = {(m[2], m[3]): m for m in db.execute(_FCR_MARKS)}
        add_marks: list[tuple[Any, ...]] = []
        drop_marks: list[tuple[Any, ...]] = []
        decided: set[tuple[str, str]] = set()
        for source, day, c in touched:
            key = (source, c[0])
            if key in decided:
                continue
            decided.add(key)
            old = marks.get(key)
            want = (c[10], c[4], source, c[0], day, c[1], c[2], c[3], c[9])
            repeat = bool(c[5]) and c[10] is not None and key in followed
            if old is not None and (not repeat or tuple(old) != want):
                drop_marks.append(old)
            if repeat and (old is None or tuple(old) != want):
                add_marks.append(want)
        before = {(customer, start) for customer, start in db.execute(_FCR_LATEST_BEFORE, (window,))
                  if start is not None}
        db.execute("CREATE TEMP TABLE IF NOT EXISTS fcr_before (customer TEXT, start REAL)")
        db.execute("DELETE FROM fcr_before")
        db.executemany("INSERT INTO fcr_before VALUES (?,?)", before)
        for row in db.execute(_FCR_PREDECESSORS):
            if (row[2], row[3]) not in decided:  # handled, unmarked, newly followed
                decided.add((row[2], row[3]))
                add_marks.append(row)
        for customer, start in dict.fromkeys(vacated):
            (latest,) = db.execute(_FCR_LATEST_BEFORE_ONE, (customer, start, window)).fetchone()
            if latest is None:
                continue
            for *mark, is_repeat in db.execute(_FCR_RECHECK, (customer, latest, window)).fetchall():
                key = (mark[2], mark[3])
                if key in decided:
                    continue
                decided.add(key)
                old = db.execute("SELECT * FROM repeats WHERE source = ? AND id = ?",
                                 key).fetchone()
                if old is not None and not is_repeat:
                    drop_marks.append(old)
                elif old is None and is_repeat:
                    add_marks.append(tuple(mark))
        for sign, group in ((-1, drop_marks), (1, add_marks)):
            for mark in group:
                day_key = (mark[4], mark[5], mark[6], mark[7], mark[8])
                acc = totals.get(day_key)
                if acc is None:
                    acc = totals[day_key] = [0, 0, 0.0, 0.0, 0.0, 0.0, mark[1], 0, 0.0, 0, 0, 0, 0]
                acc[12] += sign
        if drop_marks:
            db.executemany(
                "DELETE FROM repeats WHERE customer = ? AND start = ? AND source = ? "
                "AND id = ?",
                (mark[:4] for mark in drop_marks),
            )
        if add_marks:
            db.executemany("INSERT OR REPLACE INTO repeats VALUES (?,?,?,?,?,?,?,?,?)", add_marks)

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
        queue_calls: Sequence[QueueCall] = (),
    ) -> Committed:
        """Store new contacts and legs, roll them up and move the position, atomically.

        Customer digests are keyed with the store's secret first. `queue_calls` (a
        queue_log with cdr_source) enrich another source's contacts: kept, and applied now
        to those already stored and later to each that arrives. Repeats are marked around
        every stored contact that carries a customer key, in the same transaction.

        A contact or leg already stored for this source (same id; for a leg, same call and
        id) is a duplicate: re-reading an export or a redelivered webhook counts once. Each
        call that gains a leg gets its contact recomputed from all its legs; the rollups
        lose the call's old contribution and gain the new one in the same transaction.
        """
        with self._lock:
            legs_before = self._legs_written
            contacts, legs = self._key_records(contacts, legs)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                totals = Totals(self._kpi)
                inserted = self._insert(source, contacts)
                for day, contact in inserted:
                    _add(totals, day, contact)
                merged: list[tuple[int, tuple[Any, ...]]] = []
                vacated: list[tuple[str, float]] = []
                fresh_legs, moved = self._commit_legs(source, legs, totals, merged, vacated)
                touched: list[tuple[int, tuple[Any, ...]]] = [*inserted, *merged]
                if source in self._targets and touched:
                    self._apply_queue_calls(source, touched, totals, moved)
                others: list[tuple[str, int, tuple[Any, ...]]] = []
                fresh_entries = (
                    self._commit_queue_calls(source, queue_calls, totals, others, moved)
                    if queue_calls else 0
                )
                self._mark_repeats(
                    [(source, day, c) for day, c in touched] + others, totals, vacated
                )
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
                starts = [c.start for _, c in inserted] + [c[4] for _, c in merged]
                starts += [entry.enter for entry in queue_calls]  # kept: stored records
                known = self._newest[source]
                if starts and (known is None or max(starts) > known):
                    self._newest[source] = max(starts)
        records = len(inserted) + fresh_legs + fresh_entries
        return Committed(records, len(contacts) + len(legs) + len(queue_calls) - records)

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
        merged: list[tuple[int, tuple[Any, ...]]],
        vacated: list[tuple[str, float]],
    ) -> tuple[int, list[tuple[int, str, str, str, str]]]:
        """Store the new legs and recompute their calls' contacts into `merged`; the
        (customer, start) a recomputed call left goes to `vacated`.

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
                # The rows as they are (Contact's fields first): for newest_start, queue
                # enrichment and repeats, without a Contact per row.
                merged.extend([(row[15], row) for row in rows])
                return len(legs), []
            # Some calls are known already (a re-read, a call's next leg): the general path.
            self._db.execute("ROLLBACK TO calls")
            self._db.execute("RELEASE calls")
            merged.clear()
        return self._merge_calls(source, legs, totals, merged, vacated)

    def _merge_calls(
        self,
        source: str,
        legs: Sequence[Leg],
        totals: Totals,
        merged: list[tuple[int, tuple[Any, ...]]],
        vacated: list[tuple[str, float]],
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
                    if old_contact.customer is not None and (
                            old_contact.customer, old_contact.start) != (
                            contact.customer, contact.start):
                        vacated.append((old_contact.customer, old_contact.start))
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
                partial = {
                    tuple(r[:5]): list(r) for r in self._db.execute(
                        aggregate_sql(self._kpi, "day = ? AND start <= ?"), (today, now_epoch)
                    )
                }
                for *key, count in self._db.execute(_REPEATS_OF_DAY, (today, now_epoch)):
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
        with self._lock:
            rows = self._db.execute(
                "SELECT CAST(start / 900 AS INTEGER) * 900 AS bucket, channel, direction, "
                "queue, sum(handled) FROM contacts WHERE day >= ? AND day <= ? "
                "GROUP BY bucket, channel, direction, queue",
                (first_day.toordinal(), last_day.toordinal()),
            ).fetchall()
        return [Arrival(float(r[0]), r[1], r[2], r[3], int(r[4])) for r in rows]

    def newest_start(self, source: str) -> float | None:
        """Start of the newest record stored from `source`; None when it has none. A
        record is a contact, or a queue_log entry kept for another source's contacts
        (cdr_source: the log stores no contact of its own, but is not quiet).

        The writer scans the source's records once, then keeps the figure up to date on
        each commit (a scan per batch would grow with history).
        """
        with self._lock:
            if source in self._newest:
                return self._newest[source]
            row = self._db.execute(
                "SELECT max(newest) FROM (SELECT max(start) AS newest FROM contacts "
                "WHERE source = ?1 UNION ALL SELECT max(enter) FROM queue_calls "
                "WHERE source = ?1)", (source,)
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
