"""migrate: a SQLite store built by the real ingest, copied into a real PostgreSQL, checked.

The source store is made the way an exporter makes one: Asterisk CDRs of several legs per
call (tests/fixtures/asterisk/calls21.csv, written from the Asterisk 12+ CDR specification,
plus one 21-column CDR for a call the queue_log knows), the Asterisk 11 queue_log fixture
as a cdr_source enriching it, and a generic webhook source receiving signed events of one
customer (three contacts, two of them repeats) and one redelivery.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.generic_webhook import generic_signature
from collector.cli import main
from collector.config import Settings
from collector.pipeline import figures_at
from tests.conftest import parse_exposition
from tests.pg_helpers import PASSWORD, PostgresServer, postgres_db, postgres_server  # noqa: F401

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent
SECRET = "migrate-test-secret"
NOW = datetime(2026, 11, 6, 12, tzinfo=UTC)  # a Friday: every Nov 2-5 contact is this month's
# One CDR of 21 columns for call 1700001100.12 of the queue_log fixture: it rang 9 s
# unanswered (the queue_log says the caller abandoned the support queue after 4 s).
EXTRA_CDR = ('"","+4755501011","100","from-trunk","","SIP/trunk-1","","Queue","support",'
             '"2023-11-14 23:18:16","","2023-11-14 23:18:25",9,0,"NO ANSWER","DOCUMENTATION",'
             '"1700001100.12","","","1700001100.12","1"\n')
CONFIG = """
timezone = "Europe/Oslo"
store = "{store}"
[[sources]]
name = "pbx"
adapter = "asterisk_cdr"
path = "{dir}/Master.csv"
max_future = "36500d"
queues = {{ "ext-queues" = "support", "from-trunk" = "sales" }}
outcomes = {{ "SALE" = "sale" }}
[[sources]]
name = "queues"
adapter = "asterisk_queue_log"
path = "{dir}/queue_log"
cdr_source = "pbx"
queues = {{ support = "support", sales = "sales" }}
max_future = "36500d"
[[sources]]
name = "crm"
adapter = "generic_webhook"
webhook_secret = "{secret}"
queues = {{ "Support Team" = "support" }}
[[costs]]
name = "Salaries"
component = "salaries"
amount = 30000
per = "month"
[[costs]]
name = "Carrier"
component = "telephony"
per_contact = 0.05
channels = ["voice"]
"""
# The alice events: Nov 2 and Nov 3 are each followed by her next contact within the 7-day
# [fcr] window (1 and 2 days later), so both are repeats; Nov 5 has no follower.
EVENTS = [
    {"id": f"evt-{i}", "channel": "chat", "queue": "Support Team",
     "start": f"2026-11-0{day}T09:00:00Z", "handled": True, "handle_seconds": 300,
     "customer": "alice@example.com"}
    for i, day in ((1, 2), (2, 3), (3, 5))
]

# What the source store holds, worked out by hand:
# contacts: pbx 4 calls of calls21.csv (its 9 CDRs: 3 of the queue call, 1 IVR-only, 3 of
#   the attended transfer, 2 Local-channel halves) + the extra CDR's call = 5; crm 3.
CONTACTS = {"pbx": 5, "crm": 3}
# legs: a call of several CDRs keeps them all in the legs table (3 + 3 + 2 = 8); the two
#   calls of one CDR keep theirs inline in the contact row.
LEGS = 8
# repeats: alice's Nov 2 and Nov 3 contacts.
REPEATS = 2
# queue_calls: one per call in the queue_log (…000.10, …100.12, …200.13, …300.14,
#   …400.15, …500.17), kept for pbx whether or not its CDR has arrived.
QUEUE_CALLS = 6
# positions: the two file sources; a webhook source has no read position.
POSITIONS = {"pbx", "queues"}
# daily rollup rows, one per (day, channel, direction, queue, outcome): Nov 2 voice inbound
#   support/sale (the queue call), other/"" (IVR only), sales/"" (the transfer), support/""
#   (the Local channel); 2023-11-14 voice support/"" (the abandoned call, queue from the
#   queue_log); chat support/"" on Nov 2, 3 and 5 = 4 + 1 + 3 = 8.
DAILY = 8


def post(exporter: Any, event: dict[str, object]) -> bytes:
    body = json.dumps(event).encode()
    stamp = str(int(time.time()))
    headers = {"X-Contact-Cost-Timestamp": stamp,
               "X-Contact-Cost-Signature": generic_signature(SECRET, stamp, body)}
    status, _, answer = exporter.webhooks.handle(
        "POST", "/webhooks/generic/crm", headers, body, "http://127.0.0.1/webhooks/generic/crm")
    assert status == 200, answer
    return bytes(answer)


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The SQLite store, built through the real exporter's ingest and webhook receiver;
    returns the directory (state.db, Master.csv, queue_log, config.toml)."""
    from collector.runtime import Exporter, load_config

    cdr = (FIXTURES / "asterisk" / "calls21.csv").read_bytes() + EXTRA_CDR.encode()
    (tmp_path / "Master.csv").write_bytes(cdr)
    shutil.copy(FIXTURES / "queue_log" / "asterisk-11.queue_log", tmp_path / "queue_log")
    (tmp_path / "config.toml").write_text(
        CONFIG.format(store=tmp_path / "state.db", dir=tmp_path, secret=SECRET))
    exporter = Exporter(load_config(tmp_path / "config.toml"))
    try:
        assert exporter.ingest("queues") == QUEUE_CALLS  # kept entries count as stored
        # 10 CDRs, each a new leg: calls21's 9 and the extra one.
        assert exporter.ingest("pbx") == 10
        assert [post(exporter, e) for e in EVENTS] == [b"accepted\n"] * 3
        assert post(exporter, EVENTS[0]) == b"duplicate\n"
        assert exporter.store.counts() == CONTACTS
    finally:
        exporter.close()
    return tmp_path


def exposition(store: Any, settings: Settings, now: datetime = NOW) -> bytes:
    """The rendered exposition at `now`, with the recompute's own time stamp and duration
    fixed (they say when and how fast, not what)."""
    figures = figures_at(store, settings, now, lambda: 0.0)
    return dataclasses.replace(figures, duration=0.0).snapshot.body


def settings_of(directory: Path) -> Settings:
    from collector.runtime import load_config

    return load_config(directory / "config.toml").settings


def open_pg(url: str, settings: Settings) -> Any:
    from collector.store_pg import PostgresStore

    return PostgresStore(url, settings.tz, kpi=settings.kpi_definitions,
                         customer_key=settings.customer_key)


def open_sqlite(path: Path, settings: Settings) -> Any:
    from collector.store import SqliteStore

    return SqliteStore(path, settings.tz, kpi=settings.kpi_definitions,
                       customer_key=settings.customer_key)


def table_rows(store: Any) -> dict[str, int]:
    return {name: sum(len(rows) for rows in batches) for name, batches in store.export_tables()}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """main(argv) in process: (exit status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def migrated(source: Path, postgres_db: str,  # noqa: F811
             capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Path, str]]:
    status, out, err = run(capsys, "migrate", "--config.file", str(source / "config.toml"),
                           "--from", str(source / "state.db"), "--to", postgres_db)
    assert status == 0, err
    assert "done: 8 contacts and 2 read positions" in out
    assert err == ""  # stderr is no terminal here: no progress bar, nothing else
    yield source, postgres_db


# -- what is copied ------------------------------------------------------------------------
def test_every_table_and_figure_arrives(migrated: tuple[Path, str]) -> None:
    directory, url = migrated
    settings = settings_of(directory)
    sqlite, pg = open_sqlite(directory / "state.db", settings), open_pg(url, settings)
    try:
        rows = table_rows(pg)
        assert rows == table_rows(sqlite)
        assert (rows["contacts"], rows["legs"], rows["repeats"], rows["queue_calls"]) == (
            sum(CONTACTS.values()), LEGS, REPEATS, QUEUE_CALLS)
        assert (rows["positions"], rows["daily"]) == (len(POSITIONS), DAILY)
        assert pg.counts() == CONTACTS
        for name in POSITIONS:
            assert pg.position(name) is not None
            assert pg.position(name) == sqlite.position(name)
        assert pg.position("crm") is None
        # the same figures at the same moment, byte for byte
        body = exposition(pg, settings)
        assert body == exposition(sqlite, settings)
        figures = parse_exposition(body.decode())
        month = {"period": "month", "window": "current", "direction": "inbound"}
        # chat/support: alice's 3 handled contacts; 2 of them repeats.
        chat = frozenset({**month, "channel": "chat", "queue": "support"}.items())
        assert figures[("contactcenter_contacts", chat)] == 3
        assert figures[("contactcenter_contacts_repeat", chat)] == 2
        # voice: calls21's 3 handled calls of Nov 2 (support 2: the queue call and the
        # Local-channel call; sales 1: the transfer); the IVR-only call is not handled.
        voice = {**month, "channel": "voice"}
        assert figures[("contactcenter_contacts",
                        frozenset({**voice, "queue": "support"}.items()))] == 2
        assert figures[("contactcenter_contacts",
                        frozenset({**voice, "queue": "sales"}.items()))] == 1
        # rollups over all days: the 2023 abandoned call too, enriched by the queue_log
        # into support with its 4 s wait.
        all_days = (datetime(1, 1, 1).date(), datetime(9999, 1, 1, tzinfo=UTC))
        assert sorted(pg.rollups_as_of(*all_days)) == sorted(sqlite.rollups_as_of(*all_days))
        old = [r for r in pg.rollups_as_of(*all_days) if r.day.year == 2023]
        assert [(r.queue, r.contacts, r.handled) for r in old] == [("support", 1, 0)]
    finally:
        sqlite.close()
        pg.close()


def test_the_meta_keeps_the_customer_key_and_legs_counter(migrated: tuple[Path, str]) -> None:
    directory, url = migrated
    settings = settings_of(directory)
    sqlite, pg = open_sqlite(directory / "state.db", settings), open_pg(url, settings)
    try:
        def meta(store: Any) -> dict[str, str]:
            return {k: v for name, batches in store.export_tables() if name == "meta"
                    for rows in batches for k, v in rows}
        a, b = meta(sqlite), meta(pg)
        for key in ("customer_key", "kpi", "timezone"):
            assert a[key] == b[key], key
        assert a["timezone"] == b["timezone"] == "Europe/Oslo"
        assert a.get("legs") == b.get("legs") == str(LEGS)
    finally:
        sqlite.close()
        pg.close()


def test_an_exporter_on_the_copy_resumes_where_the_source_stopped(
        migrated: tuple[Path, str]) -> None:
    from collector.runtime import Exporter, load_config

    directory, url = migrated
    # The same configuration with the store pointed at the copy, as the README says to do.
    (directory / "config-pg.toml").write_text(
        CONFIG.format(store=url, dir=directory, secret=SECRET))

    def restart(config: Path) -> tuple[list[int], dict[str, int], bytes]:
        exporter = Exporter(load_config(config))
        try:
            assert exporter.is_leader  # alone on its store: it pulls
            stored = [exporter.ingest("queues"), exporter.ingest("pbx")]
            again = post(exporter, EVENTS[2])  # a redelivery: known on the copy too
            duplicates = {n: s.duplicates for n, s in exporter.health.sources().items()}
            return stored, duplicates, again
        finally:
            exporter.close()

    # A restart on SQLite and the first start on PostgreSQL see the same thing: both files
    # read from their copied positions (nothing new, nothing counted again), the webhook
    # event already stored.
    on_sqlite = restart(directory / "config.toml")
    on_pg = restart(directory / "config-pg.toml")
    assert on_pg == on_sqlite == ([0, 0], {"pbx": 0, "queues": 0, "crm": 1}, b"duplicate\n")
    # A new CDR appended is the only thing the next read on PostgreSQL stores.
    with (directory / "Master.csv").open("a") as out:
        out.write(EXTRA_CDR.replace("1700001100.12", "1700009999.99")
                  .replace("2023-11-14 23:18", "2026-11-05 10:00"))
    exporter = Exporter(load_config(directory / "config-pg.toml"))
    try:
        assert exporter.ingest("pbx") == 1
        assert exporter.health.sources()["pbx"].duplicates == 0
        assert exporter.store.counts() == {"pbx": 6, "crm": 3}
    finally:
        exporter.close()


def test_back_from_postgresql_to_a_new_sqlite_file(
        migrated: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    directory, url = migrated
    status, out, err = run(capsys, "migrate", "--config.file", str(directory / "config.toml"),
                           "--from", url, "--to", str(directory / "back.db"))
    assert status == 0, err
    assert f"done: 8 contacts and 2 read positions are in {directory / 'back.db'}" in out
    settings = settings_of(directory)
    first, back = open_sqlite(directory / "state.db", settings), open_sqlite(
        directory / "back.db", settings)
    try:
        assert table_rows(back) == table_rows(first)
        assert exposition(back, settings) == exposition(first, settings)
    finally:
        first.close()
        back.close()


def test_file_to_file_and_no_secret_in_the_output(
        source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite to SQLite needs no PostgreSQL: the same copy and checks."""
    status, out, err = run(capsys, "migrate", "--config.file", str(source / "config.toml"),
                           "--from", str(source / "state.db"), "--to", str(source / "copy.db"))
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == (f"copied {source / 'state.db'} to {source / 'copy.db'}: contacts 8, "
                        f"legs {LEGS}, positions 2, daily {DAILY}, repeats {REPEATS}, "
                        f"queue_calls {QUEUE_CALLS}")
    # compared at now and at the newest contact (evt-3, 2026-11-05 09:00 UTC)
    assert "exposition at 2026-11-05T09:00:00+00:00" in lines[1]
    settings = settings_of(source)
    first, copy = open_sqlite(source / "state.db", settings), open_sqlite(
        source / "copy.db", settings)
    try:
        assert table_rows(copy) == table_rows(first)
        assert exposition(copy, settings) == exposition(first, settings)
        key = next(v for name, batches in first.export_tables() if name == "meta"
                   for rows in batches for k, v in rows if k == "customer_key")
    finally:
        first.close()
        copy.close()
    assert len(key) == 64 and key not in out + err  # compared, never shown


def test_on_a_terminal_a_progress_bar_names_each_table(
        source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import collector.progress
    from collector.migrate import migrate_store

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(collector.progress, "DELAY_SECONDS", 0)  # show at once
    screen = Terminal()
    migrate_store(str(source / "state.db"), str(source / "copy.db"), None, NOW,
                  progress_stream=screen)
    shown = screen.getvalue()
    # copying, then counting back, table by table (tqdm redraws at most every 0.1 s, so
    # which counts it showed depends on speed; the names come in order)
    tables = ["meta", "contacts", "legs", "positions", "daily", "repeats", "queue_calls"]
    for phase in ("copying", "checking"):
        at = [shown.find(f"{phase} {t}: ") for t in tables]
        assert -1 not in at and at == sorted(at), (phase, at)
    assert shown.index("checking meta") > shown.index("copying queue_calls")


def test_a_destination_with_rows_but_no_contacts_is_refused(
        source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_of(source)
    other = open_sqlite(source / "other.db", settings)
    other.commit("pbx", [], '{"offset": 10}')  # a read position, no contact
    other.close()
    status, out, err = run(capsys, "migrate", "--from", str(source / "state.db"),
                           "--to", str(source / "other.db"))
    assert (status, out) == (1, "")
    assert err == (f"contact-cost-exporter: migrate refused: {source / 'other.db'}: the target "
                   "store is not empty (positions has rows); migrate copies into an empty "
                   "store only: point --to at a new database (createdb) or file, or empty this "
                   "one, and run migrate again\n")
    other = open_sqlite(source / "other.db", settings)
    try:
        assert other.position("pbx") == '{"offset": 10}' and other.counts() == {}
    finally:
        other.close()


# -- refusals and failures -----------------------------------------------------------------
def test_a_destination_with_contacts_is_refused_and_left_alone(
        migrated: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    directory, url = migrated
    status, out, err = run(capsys, "migrate", "--from", str(directory / "state.db"),
                           "--to", url)
    assert status == 1
    assert out == ""
    assert err == (f"contact-cost-exporter: migrate refused: {url} already holds 8 contacts; "
                   "migrate copies into an empty store only: point --to at a new database "
                   "(createdb) or file, or empty this one, and run migrate again\n")
    pg = open_pg(url, settings_of(directory))
    try:
        assert pg.counts() == CONTACTS
    finally:
        pg.close()


def test_a_password_in_the_url_is_refused_and_never_printed(
        source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "Hunter2-in-the-url"
    status, out, err = run(capsys, "migrate", "--from", str(source / "state.db"),
                           "--to", f"postgresql://cce:{secret}@127.0.0.1:5432/contacts")
    assert status == 1
    assert secret not in out + err
    assert "the password does not belong in the file" in err
    assert "postgresql://cce:***@127.0.0.1:5432/contacts" in err


def test_a_wrong_password_is_one_line_without_it(
        source: Path, postgres_db: str, capsys: pytest.CaptureFixture[str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "Not-the-Password-42"
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGPASSFILE", str(source / "no-pgpass"))
    monkeypatch.setenv("CONTACT_COST_STORE_PASSWORD", wrong)
    status, out, err = run(capsys, "migrate", "--from", str(source / "state.db"),
                           "--to", postgres_db)
    assert status == 1
    assert wrong not in out + err and PASSWORD not in out + err
    assert err.startswith("contact-cost-exporter: migrate refused: ")
    assert len(err.strip().splitlines()) == 1


def test_argument_and_source_errors(source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "migrate", "--from", str(source / "state.db"))
    assert status == 2 and "--to" in err  # argparse: a usage error
    status, _, err = run(capsys, "migrate", "--from", str(source / "missing.db"),
                         "--to", str(source / "copy.db"))
    assert status == 1
    assert err == f"contact-cost-exporter: migrate refused: {source / 'missing.db'}: no such " \
                  "store file\n"
    assert not (source / "copy.db").exists()
    status, _, err = run(capsys, "migrate", "--from", str(source / "state.db"),
                         "--to", str(source / "state.db"))
    assert (status, err) == (1, "contact-cost-exporter: migrate refused: --from and --to "
                                "are the same store\n")


def test_a_store_of_another_schema_is_refused(
        source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    db = sqlite3.connect(source / "state.db")
    with db:
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")  # as a 2026-11 store
    db.close()
    status, out, err = run(capsys, "migrate", "--from", str(source / "state.db"),
                           "--to", str(source / "copy.db"))
    assert (status, out) == (1, "")
    assert err == (f"contact-cost-exporter: migrate refused: {source / 'state.db'}: store "
                   "schema 2 is older than this exporter's (3); start this version of the "
                   "exporter on it once (it upgrades the store in place), stop it, then "
                   "migrate\n")
    assert not (source / "copy.db").exists()


def test_a_copy_that_differs_is_taken_back(
        source: Path, postgres_db: str, capsys: pytest.CaptureFixture[str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.store_pg import PostgresStore

    real = PostgresStore.import_tables

    def lossy(self: Any, tables: Any) -> None:
        """An importer that drops the last contact of each batch: the bug the checks
        exist for."""
        def filtered() -> Iterator[tuple[str, Iterator[list[tuple[Any, ...]]]]]:
            for name, batches in tables:
                if name == "contacts":
                    yield name, (rows[:-1] for rows in batches)
                else:
                    yield name, batches
        real(self, filtered())

    monkeypatch.setattr(PostgresStore, "import_tables", lossy)
    status, out, err = run(capsys, "migrate", "--from", str(source / "state.db"),
                           "--to", postgres_db)
    assert status == 1 and out == ""
    assert err.startswith("contact-cost-exporter: migrate failed: the copy differs from the "
                          "source: table contacts: 8 rows in the source, 7 in the copy;")
    assert f"the copy was taken back, {postgres_db} is empty again" in err
    monkeypatch.setattr(PostgresStore, "import_tables", real)
    pg = open_pg(postgres_db, settings_of(source))
    try:
        assert pg.counts() == {}
        assert {n: r for n, r in table_rows(pg).items() if n != "meta" and r} == {}
    finally:
        pg.close()
    # and it can be migrated properly afterwards
    status, out, err = run(capsys, "migrate", "--from", str(source / "state.db"),
                           "--to", postgres_db)
    assert status == 0, err


def test_ctrl_c_while_copying_leaves_the_destination_empty(
        source: Path, postgres_db: str, capsys: pytest.CaptureFixture[str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.store import SqliteStore

    real = SqliteStore.export_tables

    def interrupted(self: Any) -> Any:
        for name, batches in real(self):
            if name == "legs":  # contacts went into the transaction already
                raise KeyboardInterrupt
            yield name, batches

    monkeypatch.setattr(SqliteStore, "export_tables", interrupted)
    status, out, err = run(capsys, "migrate", "--from", str(source / "state.db"),
                           "--to", postgres_db)
    assert (status, out, err) == (130, "", "contact-cost-exporter: interrupted\n")
    monkeypatch.setattr(SqliteStore, "export_tables", real)
    pg = open_pg(postgres_db, settings_of(source))
    try:
        assert pg.counts() == {}
    finally:
        pg.close()


def test_ctrl_c_while_checking_takes_the_copy_back(
        source: Path, postgres_db: str, capsys: pytest.CaptureFixture[str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    import collector.migrate

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(collector.migrate, "compare", interrupted)
    status, out, err = run(capsys, "migrate", "--from", str(source / "state.db"),
                           "--to", postgres_db)
    assert (status, out, err) == (130, "", "contact-cost-exporter: interrupted\n")
    pg = open_pg(postgres_db, settings_of(source))
    try:
        assert pg.counts() == {}
    finally:
        pg.close()


def test_the_installed_command(source: Path, postgres_db: str) -> None:  # noqa: F811
    """The real command line in a child process: exit 0, the summary on stdout, no password
    anywhere (PGPASSWORD carries it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACT_COST_")}
    result = subprocess.run(
        [sys.executable, "-m", "collector", "migrate", "--from", str(source / "state.db"),
         "--to", postgres_db], capture_output=True, text=True, cwd=source, env=env,
        timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"copied {source / 'state.db'} to {postgres_db}: contacts 8, legs {LEGS}, positions 2, "
        f"daily {DAILY}, repeats {REPEATS}, "
        f"queue_calls {QUEUE_CALLS}")
    assert PASSWORD not in result.stdout + result.stderr
