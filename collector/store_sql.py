"""The store's schema and statements, written once and rendered for SQLite or PostgreSQL.

Every statement is written here in one form, with `?` for its parameters (in order: a
parameter used twice is passed twice), and `Statements(dialect)` renders it for one
database. What differs between the two is only what `Dialect` says: the parameter mark,
INSERT OR IGNORE / OR REPLACE against ON CONFLICT, total() against coalesce(sum()), the
scalar max(), the integer cast of a quarter hour, IN lists against = ANY, and the column
types (PostgreSQL's REAL is 4 bytes: every REAL here is DOUBLE PRECISION there, every
INTEGER a BIGINT, as SQLite's are 8 bytes). Tables and columns, and their order, are the
same in both, so a store moves between them column for column (collector.migrate).
"""

# ruff: noqa: S608  (every statement here is built from the constants in this module)
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from collector.model import KpiDefinitions

# The tables and their columns in schema order: export_tables / import_tables and the
# insert statements below are built from this one list.
TABLES: dict[str, tuple[str, ...]] = {
    "meta": ("key", "value"),
    "contacts": (
        "source", "id", "channel", "direction", "queue", "start", "day", "handled",
        "handle_seconds", "talk_seconds", "billable_seconds", "outcome", "customer", "price",
        "reason", "wait_seconds", "leg", "finish", "billsec", "flags",
    ),
    "legs": (
        "source", "call", "id", "n", "channel", "start", "finish", "billsec", "answered",
        "person", "queue", "direction", "outcome", "customer", "price", "reason",
    ),
    "positions": ("source", "position", "updated"),
    "daily": (
        "day", "channel", "direction", "queue", "outcome", "contacts", "handled",
        "handle_seconds", "talk_seconds", "billable_seconds", "price", "max_start",
        "waited", "wait_seconds", "in_threshold", "short", "identified", "repeats",
    ),
    "repeats": (
        "customer", "start", "source", "id", "day", "channel", "direction", "queue", "outcome",
    ),
    "queue_calls": ("target", "call", "source", "queue", "enter", "wait", '"left"'),
}
KEYS: dict[str, tuple[str, ...]] = {
    "meta": ("key",),
    "contacts": ("source", "id"),
    "legs": ("source", "call", "id"),
    "positions": ("source",),
    "daily": ("day", "channel", "direction", "queue", "outcome"),
    "repeats": ("customer", "start", "source", "id"),
    "queue_calls": ("target", "call"),
}

SCHEMA = """
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
    "left" TEXT NOT NULL,
    PRIMARY KEY (target, call)
) WITHOUT ROWID;
"""
# After SQLite's in-place migration of an older store (collector.store).
CUSTOMER_INDEX = (
    "CREATE INDEX IF NOT EXISTS contacts_by_customer ON contacts (customer, start) "
    "WHERE customer IS NOT NULL"
)
# PostgreSQL only: several processes share the store there, so newest_start asks the
# database on every call instead of keeping a figure in process (SQLite's one writer
# keeps it, and an extra index would slow its inserts).
PG_INDEXES = """
CREATE INDEX IF NOT EXISTS contacts_by_source_start ON contacts (source, start);
CREATE INDEX IF NOT EXISTS queue_calls_by_source_enter ON queue_calls (source, enter);
"""

CONTACT_COLUMNS = (
    "id, channel, direction, queue, start, handled, handle_seconds, talk_seconds, "
    "billable_seconds, outcome, customer, price, reason, wait_seconds"
)  # Contact's field order
INLINE_COLUMNS = f"{CONTACT_COLUMNS}, source, day, leg, finish, billsec, flags"
LEG_COLUMNS = (
    "id, call, channel, start, finish, billsec, answered, person, queue, direction, "
    "outcome, customer, price, reason"
)  # Leg's field order
MARK_COLUMNS = "customer, start, source, id, day, channel, direction, queue, outcome"

_AGGREGATE = """
SELECT day, channel, direction, queue, outcome, count(*), {sum_handled},
    {total_handle}, {total_talk}, {total_billable}, {total_price}, max(start),
    count(wait_seconds), {total_wait}, {in_threshold}, {short}, {identified}, 0
FROM contacts WHERE {where}
GROUP BY day, channel, direction, queue, outcome
"""


@dataclass(frozen=True)
class Dialect:
    """What SQLite and PostgreSQL spell differently."""

    name: str  # "sqlite" or "postgresql"

    @property
    def pg(self) -> bool:
        return self.name == "postgresql"

    def params(self, sql: str) -> str:
        """`?` marks as the driver wants them (psycopg: %s; a literal % doubled)."""
        return sql.replace("%", "%%").replace("?", "%s") if self.pg else sql

    def ddl(self, sql: str) -> str:
        """Column types: PostgreSQL's REAL is float4 and INTEGER int4; SQLite's are 8 bytes."""
        if not self.pg:
            return sql
        sql = re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql)
        sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
        return sql.replace(") WITHOUT ROWID;", ");")

    def insert(self, table: str, columns: Sequence[str], conflict: str = "error") -> str:
        """INSERT of one row; on a duplicate key: "error", "ignore" or "replace" (a whole
        new row: columns not named become NULL, as SQLite's OR REPLACE deletes first)."""
        marks = ",".join("?" * len(columns))
        names = ", ".join(columns)
        if not self.pg:
            verb = {"error": "INSERT", "ignore": "INSERT OR IGNORE",
                    "replace": "INSERT OR REPLACE"}[conflict]
            return f"{verb} INTO {table} ({names}) VALUES ({marks})"
        sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"
        if conflict == "ignore":
            sql += " ON CONFLICT DO NOTHING"
        elif conflict == "replace":
            key = KEYS[table]
            sets = [f"{c} = excluded.{c}" if c in columns else f"{c} = NULL"
                    for c in TABLES[table] if c not in key]
            sql += f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(sets)}"
        return self.params(sql)

    def total(self, expr: str) -> str:
        """Sum as a float, 0.0 over no rows (SQLite's total())."""
        return f"coalesce(sum({expr}), 0)::float8" if self.pg else f"total({expr})"

    def isum(self, expr: str) -> str:
        """Sum of integers as an integer (PostgreSQL's sum(bigint) is numeric)."""
        return f"sum({expr})::bigint" if self.pg else f"sum({expr})"

    def greatest(self, a: str, b: str) -> str:
        return f"greatest({a}, {b})" if self.pg else f"max({a}, {b})"

    def truncate(self, expr: str) -> str:
        """A number cut to an integer toward zero (SQLite's CAST(x AS INTEGER))."""
        return f"trunc({expr})::bigint" if self.pg else f"CAST({expr} AS INTEGER)"

    def any_of(self, column: str, count: int) -> str:
        """`column` is one of `count` values, given by list_param."""
        return f"{column} = ANY(%s)" if self.pg else f"{column} IN ({','.join('?' * count)})"

    def list_param(self, values: Sequence[str]) -> tuple[object, ...]:
        return (list(values),) if self.pg else tuple(values)

    def quote(self, text: str) -> str:
        """A string literal inside a statement (driver's % escaped)."""
        literal = "'{}'".format(text.replace("'", "''"))
        return literal.replace("%", "%%") if self.pg else literal


class Statements:
    """Every statement the store runs, rendered for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        d = self.dialect = dialect
        p = d.params
        self.schema = d.ddl(SCHEMA) + (PG_INDEXES if d.pg else "")
        self.customer_index = CUSTOMER_INDEX
        contact_inline = [c.strip() for c in INLINE_COLUMNS.split(",")]
        contact_plain = contact_inline[:16]
        leg_columns = [c.strip() for c in LEG_COLUMNS.split(",")] + ["source", "n"]
        self.insert_contact = d.insert("contacts", contact_plain, "ignore")
        # After the fast path's OR IGNORE skipped something, the rows known to be new go
        # in with a plain INSERT, so that a constraint other than the key (NOT NULL)
        # fails loudly.
        self.insert_contact_new = d.insert("contacts", contact_plain)
        self.replace_contact = d.insert("contacts", contact_plain, "replace")
        self.insert_inline = d.insert("contacts", contact_inline, "ignore")
        self.insert_inline_new = d.insert("contacts", contact_inline)
        self.insert_leg_new = d.insert("legs", leg_columns)
        self.legs_of_call = p(
            f"SELECT {LEG_COLUMNS} FROM legs WHERE source = ? AND call = ? ORDER BY start, n"
        )
        self.delete_empty_daily = p(
            "DELETE FROM daily WHERE day = ? AND channel = ? AND direction = ? AND queue = ? "
            "AND outcome = ? AND contacts <= 0"
        )
        sums = ", ".join(
            f"{c} = daily.{c} + excluded.{c}" for c in TABLES["daily"][5:] if c != "max_start"
        )
        self.upsert_daily = (
            d.insert("daily", TABLES["daily"])
            + p(" ON CONFLICT (day, channel, direction, queue, outcome) DO UPDATE SET ")
            + sums + ", max_start = " + d.greatest("daily.max_start", "excluded.max_start")
        )
        self.repeats_of_day = p(
            "SELECT day, channel, direction, queue, outcome, count(*) FROM repeats "
            "WHERE day = ? AND start <= ? GROUP BY day, channel, direction, queue, outcome"
        )
        self.daily_range = p(
            f"SELECT {', '.join(TABLES['daily'])} FROM daily WHERE day >= ? AND day <= ?"
        )
        self.arrivals = p(
            f"SELECT {d.truncate('start / 900')} * 900 AS bucket, channel, direction, "
            f"queue, {d.isum('handled')} FROM contacts WHERE day >= ? AND day <= ? "
            "GROUP BY bucket, channel, direction, queue"
        )
        self.newest = p(
            "SELECT max(newest) FROM (SELECT max(start) AS newest FROM contacts "
            "WHERE source = ? UNION ALL SELECT max(enter) FROM queue_calls "
            "WHERE source = ?) AS t"
        )
        self.counts = "SELECT source, count(*) FROM contacts GROUP BY source"
        self.position = p("SELECT position FROM positions WHERE source = ?")
        self.put_position = d.insert("positions", TABLES["positions"], "replace")
        self.meta = "SELECT key, value FROM meta"
        self.meta_value = p("SELECT value FROM meta WHERE key = ?")
        self.put_meta = d.insert("meta", TABLES["meta"], "replace")
        self.add_meta = d.insert("meta", TABLES["meta"])
        self.targets = "SELECT DISTINCT target FROM queue_calls"
        self.has_target = p("SELECT EXISTS (SELECT 1 FROM queue_calls WHERE target = ?)")
        self.insert_queue_call = d.insert("queue_calls", TABLES["queue_calls"], "ignore")
        self.enrich = p(
            'UPDATE contacts SET queue = ?, wait_seconds = ?, reason = ? '
            'WHERE source = ? AND id = ?'
        )
        self.update_day = p("UPDATE contacts SET day = ? WHERE source = ? AND id = ?")
        self.all_starts = "SELECT source, id, start FROM contacts"
        # repeat marking (SqlStore._mark_repeats): the commit's contacts in a temp table
        self.fcr_temp = d.ddl(
            "CREATE TEMP TABLE IF NOT EXISTS fcr_touched "
            "(customer TEXT, start REAL NOT NULL, source TEXT NOT NULL, id TEXT NOT NULL)"
        )
        self.fcr_touched_put = p("INSERT INTO fcr_touched VALUES (?,?,?,?)")
        self.fcr_before_temp = d.ddl(
            "CREATE TEMP TABLE IF NOT EXISTS fcr_before (customer TEXT, start REAL)"
        )
        self.fcr_before_put = p("INSERT INTO fcr_before VALUES (?,?)")
        # The inserts of many rows, by statement: (table, columns, whether a duplicate key
        # is skipped). PostgreSQL copies such rows in (COPY) rather than one by one.
        self.bulk: dict[str, tuple[str, tuple[str, ...], bool]] = {
            self.insert_contact: ("contacts", tuple(contact_plain), True),
            self.insert_contact_new: ("contacts", tuple(contact_plain), False),
            self.insert_inline: ("contacts", tuple(contact_inline), True),
            self.insert_inline_new: ("contacts", tuple(contact_inline), False),
            self.insert_leg_new: ("legs", tuple(leg_columns), False),
            self.fcr_touched_put: ("fcr_touched", ("customer", "start", "source", "id"), False),
            self.fcr_before_put: ("fcr_before", ("customer", "start"), False),
        }
        # Each touched contact with a customer: whether a later contact of its customer
        # starts within the window (it is followed), and that customer's latest start
        # before it within the window. Both look-ups in one pass, in the customer index's
        # order, so that the second finds the first's index page still cached.
        # Parameters: window, window.
        self.fcr_neighbours = p("""
SELECT t.source, t.id, t.customer, EXISTS (
    SELECT 1 FROM contacts c WHERE c.customer IS NOT NULL AND c.customer = t.customer
    AND c.start > t.start AND c.start <= t.start + ?), (
    SELECT max(d.start) FROM contacts d WHERE d.customer IS NOT NULL
    AND d.customer = t.customer AND d.start < t.start AND d.start >= t.start - ?)
FROM fcr_touched t WHERE t.customer IS NOT NULL ORDER BY t.customer, t.start
""")
        # The current marks of the touched contacts (by contact, whatever customer or start).
        self.fcr_marks = """
SELECT r.customer, r.start, r.source, r.id, r.day, r.channel, r.direction, r.queue,
    r.outcome FROM fcr_touched t JOIN repeats r ON r.source = t.source AND r.id = t.id
"""
        # Handled, unmarked contacts at those starts: the touched contact is their new
        # follower.
        self.fcr_predecessors = """
SELECT c.customer, c.start, c.source, c.id, c.day, c.channel, c.direction, c.queue,
    c.outcome
FROM fcr_before p JOIN contacts c ON c.customer IS NOT NULL AND c.customer = p.customer
    AND c.start = p.start
WHERE c.handled <> 0 AND NOT EXISTS (
    SELECT 1 FROM repeats r WHERE r.source = c.source AND r.id = c.id)
"""
        # A recomputed call that left (customer, start): the customer's latest contact
        # before that start, within the window, may have had the call as its only
        # follower (issue 11's known limits: a start that moved earlier past it, a changed
        # customer). Any earlier contact has that latest one as its follower, so only
        # those at the latest start are checked again. Parameters: customer, start,
        # start, window.
        self.fcr_latest_before_one = p(
            "SELECT max(start) FROM contacts WHERE customer = ? AND start < ? "
            "AND start >= ? - ?"
        )
        # Parameters: window, customer, start.
        self.fcr_recheck = p("""
SELECT c.customer, c.start, c.source, c.id, c.day, c.channel, c.direction, c.queue,
    c.outcome, c.handled <> 0 AND EXISTS (SELECT 1 FROM contacts f
        WHERE f.customer = c.customer AND f.start > c.start AND f.start <= c.start + ?)
FROM contacts c WHERE c.customer = ? AND c.start = ?
""")
        self.mark_of_contact = p(f"SELECT {MARK_COLUMNS} FROM repeats WHERE source = ? AND id = ?")
        self.delete_mark = p(
            "DELETE FROM repeats WHERE customer = ? AND start = ? AND source = ? AND id = ?"
        )
        self.replace_mark = d.insert("repeats", TABLES["repeats"], "replace")
        # rebuilding the rollups and marks from the contacts (definitions or zone changed)
        self.rebuild_marks = p(f"""
INSERT INTO repeats ({MARK_COLUMNS}) SELECT c.customer, c.start, c.source, c.id, c.day,
    c.channel, c.direction, c.queue, c.outcome
FROM contacts c WHERE c.handled <> 0 AND c.customer IS NOT NULL AND EXISTS (
    SELECT 1 FROM contacts d WHERE d.customer IS NOT NULL
    AND d.customer = c.customer AND d.start > c.start AND d.start <= c.start + ?)
""")
        self.count_daily_repeats = """UPDATE daily SET repeats = (SELECT count(*) FROM repeats r
    WHERE r.day = daily.day AND r.channel = daily.channel AND r.direction = daily.direction
    AND r.queue = daily.queue AND r.outcome = daily.outcome)"""

    def aggregate(self, defs: KpiDefinitions, where: str) -> str:
        """Daily rows from the contacts matching `where` (written with ? marks), for the
        definitions: the threshold per queue as one CASE expression."""
        d = self.dialect
        threshold = repr(float(defs.threshold))
        if defs.queue_thresholds:
            cases = " ".join(
                f"WHEN {d.quote(q)} THEN {float(t)!r}" for q, t in defs.queue_thresholds
            )
            threshold = f"(CASE queue {cases} ELSE {threshold} END)"
        return _AGGREGATE.format(
            sum_handled=d.isum("handled"),
            total_handle=d.total("CASE WHEN handled <> 0 THEN handle_seconds END"),
            total_talk=d.total("CASE WHEN handled <> 0 THEN talk_seconds END"),
            total_billable=d.total("billable_seconds"),
            total_price=d.total("price"),
            total_wait=d.total("CASE WHEN handled <> 0 THEN wait_seconds END"),
            in_threshold=d.total(f"CASE WHEN handled <> 0 AND wait_seconds <= {threshold} "
                                 "THEN 1 END"),
            short=d.total("CASE WHEN handled = 0 AND wait_seconds <= "
                          f"{float(defs.short_abandon)!r} THEN 1 END"),
            identified=d.total("CASE WHEN handled <> 0 AND customer IS NOT NULL THEN 1 END"),
            where=d.params(where),
        )

    def select_in(self, head: str, column: str, count: int) -> str:
        """`head` (ending in WHERE ... AND, ? marks) then `column` among `count` values."""
        return self.dialect.params(head) + " " + self.dialect.any_of(column, count)


SQLITE = Statements(Dialect("sqlite"))
POSTGRES = Statements(Dialect("postgresql"))
