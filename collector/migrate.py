"""Moving a store: copy every table of one store into an empty other one, then prove the copy.

`contact-cost-exporter migrate --from state/contact-cost.db --to postgresql://...` (or the
other way round, or file to file): the source is opened read-only, its tables go into the
destination with `import_tables` (one destination transaction: all of it or nothing), and
before anything is called done the copy is checked against the source: the rows of every
table, the read positions, the meta the figures depend on (customer key, KPI definitions,
time zone, legs counter), the rollups over all days, the stored contacts per source, and the
rendered exposition at the same moments, byte for byte. A destination that already holds
anything is refused; a check that fails empties the destination again.

Pure orchestration over two Store objects; the command line is in collector.cli.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from collector.model import KpiDefinitions
from collector.store import Store
from collector.stores import is_url

if TYPE_CHECKING:
    from tqdm import tqdm

    from collector.config import Settings

Rows = list[tuple[Any, ...]]
Tables = Iterator[tuple[str, Iterator[Rows]]]

# The meta the figures and later commits depend on: the customer-hash key (a secret: its
# value is compared, never shown), the KPI definitions the rollups were made with, the
# zone of the local days, and the file order of the next leg.
CHECKED_META = ("customer_key", "kpi", "timezone", "legs")
# "Over all days": the rollups from the first day a store can file a contact under to a
# moment after the last.
ALL_DAYS_FROM = date(1, 1, 1)
ALL_DAYS_TO = datetime(9999, 12, 1, tzinfo=UTC)


class MigrateError(RuntimeError):
    """Migrate refused or failed; the message is one readable line without a password."""


class Mismatch(MigrateError):
    """The copy differs from the source; `differences` says where. The destination has
    been emptied again."""

    def __init__(self, differences: Sequence[str]) -> None:
        super().__init__("the copy differs from the source: " + "; ".join(differences))
        self.differences = list(differences)


class MigratableStore(Store, Protocol):
    """The Store protocol plus the two calls a migration needs (both stores have them)."""

    def export_tables(self) -> Tables: ...

    def import_tables(self, tables: Tables) -> dict[str, int]: ...


@dataclass
class Migrated:
    """What a migration copied and checked."""

    rows: dict[str, int]  # rows per table (meta included)
    positions: int
    contacts: int
    moments: list[datetime]  # where the exposition was compared
    checked: list[str] = field(default_factory=list)  # what was compared, in order


def store_password() -> str | None:
    """The PostgreSQL password from CONTACT_COST_STORE_PASSWORD; None leaves it to libpq
    (PGPASSWORD, ~/.pgpass)."""
    from collector.config import STORE_PASSWORD_ENV

    return os.environ.get(STORE_PASSWORD_ENV) or None


def _quiet(text: str, password: str | None) -> str:
    """A message with the password taken out, should a driver ever have echoed it."""
    return text.replace(password, "***") if password else text


def check_location(location: str) -> str:
    """A postgresql:// URL without a password, or a file path; MigrateError if neither."""
    from collector.leader import StoreUrlError, check_store_url

    if "://" in location and not is_url(location):
        raise MigrateError(f"{location.split('://', 1)[0]}:// is not a store: give a SQLite "
                           "file or a postgresql:// URL")
    if is_url(location):
        try:
            return check_store_url(location)
        except StoreUrlError as exc:
            raise MigrateError(str(exc)) from None
    return location


def open_location(
    location: str, tz: ZoneInfo, password: str | None, *, readonly: bool,
    kpi: KpiDefinitions | None = None,
) -> MigratableStore:
    """The store at `location` (a SQLite file or a postgresql:// URL). `kpi`: the
    definitions a writable store is opened with (the source's, so that nothing is rebuilt);
    its customer key is the one it holds (after import_tables, the source's)."""
    if is_url(location):
        from collector.store_pg import PostgresStore

        return PostgresStore(location, tz, password=password, readonly=readonly, kpi=kpi)
    from collector.store import SqliteStore

    if readonly and not Path(location).is_file():
        raise MigrateError(f"{location}: no such store file")
    return SqliteStore(location, tz, readonly=readonly, kpi=kpi)


def _open(location: str, tz: ZoneInfo, password: str | None, *, readonly: bool,
          kpi: KpiDefinitions | None = None) -> MigratableStore:
    """open_location with every storage failure turned into one MigrateError line."""
    from collector.logsafe import describe_error
    from collector.store import StoreVersionError
    from collector.stores import STORE_ERRORS

    failures: tuple[type[Exception], ...] = (*STORE_ERRORS, StoreVersionError, OSError)
    try:
        return open_location(location, tz, password, readonly=readonly, kpi=kpi)
    except MigrateError:
        raise
    except failures as exc:
        raise MigrateError(
            f"{location}: cannot open the store: {_quiet(describe_error(exc), password)}"
        ) from None


def stored_meta(store: MigratableStore) -> dict[str, str]:
    """The store's meta table (key -> value), read through export_tables."""
    with contextlib.closing(store.export_tables()) as tables:  # type: ignore[type-var]
        for name, batches in tables:
            if name == "meta":
                return {str(row[0]): str(row[1]) for rows in batches for row in rows}
    return {}


def check_schema(meta: dict[str, str], location: str) -> None:
    """The source must be of this exporter's schema: an older store is upgraded in place by
    opening it (a newer one is this exporter's to refuse); read-only, migrate cannot."""
    from collector.store_base import SCHEMA_VERSION

    stored = meta.get("schema")
    if stored == SCHEMA_VERSION:
        return
    if stored and stored.isdigit() and int(stored) > int(SCHEMA_VERSION):
        raise MigrateError(f"{location}: store schema {stored} is newer than this exporter's "
                           f"({SCHEMA_VERSION}); migrate with the version that wrote it")
    raise MigrateError(f"{location}: store schema {stored or 'unknown'} is older than this "
                       f"exporter's ({SCHEMA_VERSION}); start this version of the exporter on "
                       "it once (it upgrades the store in place), stop it, then migrate")


def stored_kpi(meta: dict[str, str]) -> KpiDefinitions | None:
    """The definitions the store's rollups were made with (meta `kpi`), if readable."""
    try:
        threshold, queues, short, window = json.loads(meta["kpi"])
        return KpiDefinitions(float(threshold), tuple((str(q), float(t)) for q, t in queues),
                              float(short), float(window))
    except (KeyError, ValueError, TypeError):
        return None


def stored_zone(meta: dict[str, str], location: str) -> ZoneInfo:
    name = meta.get("timezone")
    if not name:
        raise MigrateError(f"{location}: the store names no time zone; is it a store?")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MigrateError(f"{location}: the store's time zone {name!r} is unknown") from None


_HOW = ("migrate copies into an empty store only: point --to at a new database (createdb) "
        "or file, or empty this one, and run migrate again")


class _Progress:
    """Rows copied (then counted back) per table, a tqdm bar on stderr on a terminal only."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from collector.progress import on_terminal

        self.stream = stream or sys.stderr
        self.enabled = on_terminal(self.stream)
        self._bar: tqdm[Any] | None = None

    def start(self, what: str) -> None:
        from collector.progress import DELAY_SECONDS, screen

        self.finish()
        if self.enabled:
            from tqdm import tqdm

            cols, rows = screen(self.stream)
            self._bar = tqdm(total=None, desc=what, unit=" rows", unit_scale=True,
                             file=self.stream, delay=DELAY_SECONDS, leave=False, ncols=cols,
                             nrows=rows)

    def table(self, name: str, what: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(f"{what} {name}")

    def update(self, rows: int) -> None:
        if self._bar is not None:
            self._bar.update(rows)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@dataclass
class _Tally:
    """Rows per table as they pass, and the rows of the small tables kept for comparing."""

    rows: dict[str, int] = field(default_factory=dict)
    kept: dict[str, Rows] = field(default_factory=dict)


_KEPT = ("meta", "positions")


def _tallied(tables: Tables, tally: _Tally, progress: _Progress, what: str) -> Tables:
    """The same tables, lazily, counting each table's rows into `tally` as they are read."""

    def rows_of(name: str, batches: Iterator[Rows]) -> Iterator[Rows]:
        for rows in batches:
            tally.rows[name] += len(rows)
            if name in _KEPT:
                tally.kept[name].extend(rows)
            progress.update(len(rows))
            yield rows

    for name, batches in tables:
        tally.rows[name] = 0
        if name in _KEPT:
            tally.kept[name] = []
        progress.table(name, what)
        yield name, rows_of(name, batches)


def _count_back(store: MigratableStore, progress: _Progress) -> _Tally:
    tally = _Tally()
    for _name, batches in _tallied(store.export_tables(), tally, progress, "checking"):
        for _rows in batches:
            pass
    return tally


def _key(row: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(v) for v in row)


def compare(
    source: MigratableStore, copy: MigratableStore, sent: _Tally, got: _Tally,
    settings: Settings, moments: Sequence[datetime],
) -> tuple[list[str], list[str]]:
    """(what was compared, what differs) between the source and its copy."""
    from collector.pipeline import figures_at

    checked: list[str] = []
    differs: list[str] = []
    # 1. rows per table (meta apart: a store may keep keys of its own there)
    tables = sorted((set(sent.rows) | set(got.rows)) - {"meta"})
    for name in tables:
        a, b = sent.rows.get(name), got.rows.get(name)
        if a != b:
            differs.append(f"table {name}: {a} rows in the source, {b} in the copy")
    checked.append("rows of " + ", ".join(tables))
    # 2. meta the figures depend on; values compared, never shown (the customer key)
    meta_a = {str(r[0]): str(r[1]) for r in sent.kept.get("meta", [])}
    meta_b = {str(r[0]): str(r[1]) for r in got.kept.get("meta", [])}
    for key in CHECKED_META:
        if meta_a.get(key) != meta_b.get(key):
            differs.append(f"meta {key} differs")
    checked.append("meta " + ", ".join(CHECKED_META))
    # 3. read positions: the rows, and what position() answers for each source
    pos_a = sorted(_key(r) for r in sent.kept.get("positions", []))
    pos_b = sorted(_key(r) for r in got.kept.get("positions", []))
    if pos_a != pos_b:
        differs.append("the positions tables differ")
    for source_name in sorted({str(r[0]) for r in sent.kept.get("positions", [])}):
        if source.position(source_name) != copy.position(source_name):
            differs.append(f"read position of source {source_name} differs")
    checked.append(_plural(len(pos_a), "read position"))
    # 4. stored contacts per source
    counts_a, counts_b = source.counts(), copy.counts()
    if counts_a != counts_b:
        differs.append(f"contacts per source: {counts_a} in the source, {counts_b} in the copy")
    checked.append("contacts per source")
    # 5. the rollups over all days, exactly
    rollups_a = sorted(source.rollups_as_of(ALL_DAYS_FROM, ALL_DAYS_TO))
    rollups_b = sorted(copy.rollups_as_of(ALL_DAYS_FROM, ALL_DAYS_TO))
    if rollups_a != rollups_b:
        keys_a = {tuple(r[:5]): r for r in rollups_a}
        keys_b = {tuple(r[:5]): r for r in rollups_b}
        wrong = sorted(k for k in keys_a.keys() | keys_b.keys() if keys_a.get(k) != keys_b.get(k))
        first = wrong[0]
        differs.append(f"rollups differ in {len(wrong)} of {len(keys_a)} rows, first "
                       f"{first[0]} {'/'.join(str(p) for p in first[1:])}")
    checked.append(f"{len(rollups_a)} daily rollups over all days")
    # 6. the exposition at each moment, byte for byte (the recompute's own duration and
    #    time stamp set to 0: they say when and how fast, not what)
    for moment in moments:
        bodies = [
            dataclasses.replace(figures_at(s, settings, moment, lambda: 0.0),
                                duration=0.0).snapshot.body
            for s in (source, copy)
        ]
        if bodies[0] != bodies[1]:
            lines_a, lines_b = bodies[0].splitlines(), bodies[1].splitlines()
            other = next((a for a, b in zip(lines_a, lines_b, strict=False) if a != b), b"")
            differs.append(f"exposition at {moment.isoformat()} differs, first at "
                           f"{other.decode(errors='replace')[:120]!r}")
        checked.append(f"exposition at {moment.isoformat()} ({len(bodies[0]):,} bytes)")
    return checked, differs


def figure_moments(store: MigratableStore, now: datetime) -> list[datetime]:
    """`now`, and the start of the newest stored contact when it lies before `now` (an old
    store: its data are in windows that `now`'s no longer show)."""
    newest = [store.newest_start(s) for s in store.counts()]
    found = [n for n in newest if n is not None]
    moments = [now]
    if found and max(found) < now.timestamp():
        moments.append(datetime.fromtimestamp(max(found), UTC))
    return moments


def _empty_again(location: str, password: str | None, tables: Sequence[str],
                 created: bool) -> None:
    """Take back a committed copy that failed its checks: the destination was empty."""
    if is_url(location):
        import psycopg
        from psycopg import sql

        kwargs: dict[str, Any] = {"password": password} if password else {}
        with psycopg.connect(location, **kwargs) as conn:
            data = [t for t in tables if t != "meta"]
            if data:
                conn.execute(sql.SQL("TRUNCATE {}").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in data)))
            if "meta" in tables:
                conn.execute("DELETE FROM meta")
        return
    if created:
        for suffix in ("", "-wal", "-shm"):
            Path(location + suffix).unlink(missing_ok=True)
        return
    db = sqlite3.connect(location, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        for name in tables:
            db.execute(f'DELETE FROM "{name}"')  # noqa: S608 - the store's own table names
        db.execute("COMMIT")
    finally:
        db.close()


def migrate_store(
    source_location: str,
    dest_location: str,
    settings: Settings | None,
    now: datetime,
    *,
    password: str | None = None,
    progress_stream: TextIO | None = None,
    opener: Callable[..., MigratableStore] = _open,
) -> Migrated:
    """Copy the store at `source_location` into the empty store at `dest_location` and
    check the copy. MigrateError (one line) when refused or failed; Mismatch when a check
    fails (the destination emptied again). `settings`: the costs and periods the
    exposition is compared with (None: the defaults); its time zone is the source's.
    """
    from collector.config import Settings
    from collector.logsafe import describe_error
    from collector.stores import STORE_ERRORS

    source_location = check_location(source_location)
    dest_location = check_location(dest_location)
    if not is_url(source_location) and not is_url(dest_location) and (
            Path(source_location).resolve() == Path(dest_location).resolve()):
        raise MigrateError("--from and --to are the same store")
    if source_location == dest_location:
        raise MigrateError("--from and --to are the same store")
    progress = _Progress(progress_stream)
    probe = opener(source_location, ZoneInfo("UTC"), password, readonly=True)
    try:
        meta = stored_meta(probe)
    finally:
        probe.close()
    tz = stored_zone(meta, source_location)
    check_schema(meta, source_location)
    created = not is_url(dest_location) and not Path(dest_location).exists()
    source = opener(source_location, tz, password, readonly=True)
    dest: MigratableStore | None = None
    committed = done = False
    tables: list[str] = []
    try:
        dest = opener(dest_location, tz, password, readonly=False, kpi=stored_kpi(meta))
        held = sum(dest.counts().values())
        if held:
            raise MigrateError(f"{dest_location} already holds {held:,} contacts; {_HOW}")
        sent = _Tally()
        progress.start("copying")
        failures: tuple[type[Exception], ...] = (*STORE_ERRORS, OSError)
        try:
            dest.import_tables(_tallied(source.export_tables(), sent, progress, "copying"))
        except ValueError as exc:  # import_tables: the store has rows (no contacts, though)
            raise MigrateError(f"{dest_location}: {exc}; {_HOW}") from None
        except failures as exc:
            raise MigrateError(f"copying into {dest_location} failed and was rolled back: "
                               f"{_quiet(describe_error(exc), password)}") from None
        committed = True
        tables = list(sent.rows)
        progress.start("checking")
        got = _count_back(dest, progress)
        progress.finish()
        base = settings or Settings()
        figure_settings = base.model_copy(update={"timezone": tz.key})
        moments = figure_moments(source, now)
        checked, differs = compare(source, dest, sent, got, figure_settings, moments)
        if differs:
            raise Mismatch(differs)
        done = True  # checked: the copy stays
        return Migrated(dict(sent.rows), len(sent.kept.get("positions", [])),
                        sum(source.counts().values()), moments, checked)
    finally:
        progress.finish()
        source.close()
        if dest is not None:
            dest.close()
        if not done and (committed or created):
            # refused, failed, a check failed or interrupted: the destination is left as it
            # was (a file migrate created is removed; a committed copy is taken back)
            with contextlib.suppress(*STORE_ERRORS, OSError):
                _empty_again(dest_location, password, tables, created)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def summary(result: Migrated, source: str, dest: str) -> str:
    """The lines `migrate` prints when done."""
    rows = result.rows
    parts = ", ".join(f"{name} {count:,}" for name, count in rows.items() if name != "meta")
    lines = [
        f"copied {source} to {dest}: {parts}",
        "verified: " + "; ".join(result.checked),
        f"done: {_plural(result.contacts, 'contact')} and "
        f"{_plural(result.positions, 'read position')} are in {dest}; point the exporter's "
        "store at it",
    ]
    return "\n".join(lines) + "\n"
