"""Two exporter replicas on one real PostgreSQL store (issue 14, deliverables 2 and 3): the
leader killed with kill -9 during a large ingest, its lock session ended with
pg_terminate_backend, webhooks to both replicas at once, and no two replicas pulling at once.

Everything is real and on loopback: the cluster from tests/pg_helpers.py, the CLI as
subprocesses (tests/conftest.py's ExporterProcess), each replica on its own port with the
same config, `store` the PostgreSQL URL and the password only in the environment
(CONTACT_COST_STORE_PASSWORD). The interval is 2 s, so "within two intervals" is 4 s.

The CDR file comes from scripts/generate_samples.py (the sample generator, loaded as
tests/test_generate_samples.py loads it), with every 8th answered queue call turned into
the three CDRs Asterisk 12+ writes for it (shape as tests/fixtures/asterisk/calls21.csv,
from the Asterisk CDR specification: one CDR per dial attempt of Party A, all with the
caller's uniqueid as linkedid and a sequence counting up; ringall: two agents ring
unanswered for the whole wait while the third answers). The reference for "nothing lost,
nothing twice" is a clean run of the same file, in process, into a fresh SQLite store.

contactcenter_leader is sampled on both replicas every 50 ms throughout the leader tests;
no sample may show two leaders. Every replica (and any orphan of a killed one) is stopped
at teardown, pass or fail.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import http.client
import io
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from collector.leader import lock_key, split_key
from tests.conftest import ExporterProcess, parse_exposition, wait_for
from tests.pg_helpers import PASSWORD, PostgresServer, postgres_db, postgres_server
from tests.test_generate_samples import gen as generate_samples

__all__ = ["postgres_db", "postgres_server"]  # fixtures used by name below

pytestmark = pytest.mark.e2e

INTERVAL = 2.0  # seconds: the recompute interval, the lock poll and the pbx source's interval
HANDOVER = 2 * INTERVAL  # issue 14: a lost leader is replaced within two intervals
OSLO = ZoneInfo("Europe/Oslo")
SECRET = "replica-webhook-secret"  # the generic webhook's shared secret (not the store's)
LEADER_APP = "contact-cost-exporter leader"  # application_name of the lock session

CONFIG = """
currency = "USD"
timezone = "Europe/Oslo"
interval = "{interval}s"
store = "{store}"

[[sources]]
name = "pbx"
adapter = "asterisk_cdr"
path = "{cdr}"
interval = "{interval}s"
queues = {{ "support-in" = "support", "sales-in" = "sales", "sales-out" = "telesales" }}
directions = {{ "sales-out" = "outbound" }}
outcomes = {{ "SALE" = "sale", "LEAD" = "lead" }}

[[sources]]
name = "crm"
adapter = "generic_webhook"
webhook_secret = "{secret}"
queues = {{ "Support Team" = "support" }}

# Only costs that follow the contacts: a monthly amount accrues with the clock, and the
# figures of two runs a minute apart would differ for that reason alone.
[[costs]]
name = "Outsourced handling"
component = "other"
per_contact = 2.0

[[costs]]
name = "Carrier minutes"
component = "telephony"
per_minute = 0.6
channels = ["voice"]
"""

FIGURES = ("contactcenter_cost_per_contact", "contactcenter_contacts", "contactcenter_cost")


# -- the CDR file ----------------------------------------------------------------------------
@dataclass
class CdrFile:
    """What was written, counted while writing (the hand-worked expectations)."""

    path: Path
    calls: int = 0  # distinct calls = contacts the store must hold
    lines: int = 0  # CDRs = legs the source reads (calls + 2 per three-leg call)
    three_leg: int = 0  # calls written as three CDRs
    answered: int = 0  # calls with an ANSWERED CDR = handled contacts
    billsec: int = 0  # billable seconds of all CDRs (the unanswered legs have 0)
    sequence: int = 0  # the last CDR sequence number written
    days: int = 0  # calendar days covered


def _legs_of(row: list[str], cdr: CdrFile) -> list[list[str | int]]:
    """The 21-column CDRs of one generated answered queue call: two agents ring unanswered
    for the caller's whole wait (ringall), the generated CDR's agent answers. Written as
    cdr_csv writes them: every field quoted but duration and billsec."""
    start = datetime.strptime(row[9], "%Y-%m-%d %H:%M:%S")
    wait = int(row[12]) - int(row[13])
    end = (start + timedelta(seconds=wait)).strftime("%Y-%m-%d %H:%M:%S")
    uniqueid = row[16]
    legs: list[list[str | int]] = []
    for agent in ("SIP/291-0000aa01", "SIP/292-0000aa02"):
        cdr.sequence += 1
        legs.append([*row[:6], agent, row[7], row[8], row[9], "", end, wait, 0,
                     "NO ANSWER", row[15], uniqueid, "", "", uniqueid, str(cdr.sequence)])
    cdr.sequence += 1
    legs.append([*row[:12], int(row[12]), int(row[13]), *row[14:], "", uniqueid,
                 str(cdr.sequence)])
    return legs


def write_cdr(path: Path, calls: int, end: datetime, append: bool = False,
              skip_days: int = 0) -> CdrFile:
    """At least `calls` generated calls, whole days ending the day before `end` (minus
    `skip_days` more, so an appended part can cover days the first part did not)."""
    days: list[list[str]] = []
    day = end.date() - timedelta(days=1 + skip_days)
    while sum(map(len, days)) < calls:
        days.append(list(generate_samples.iter_cdr_rows(day)))
        day -= timedelta(days=1)
    cdr = CdrFile(path, days=len(days))
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    queue_answered = 0
    for lines in reversed(days):
        for line in lines:
            row = next(csv.reader([line]))
            cdr.calls += 1
            cdr.billsec += int(row[13])
            if row[14] != "ANSWERED":
                out.write(line)
                cdr.lines += 1
                continue
            cdr.answered += 1
            queue_answered += row[7] == "Queue"
            if row[7] == "Queue" and queue_answered % 8 == 0:
                writer.writerows(_legs_of(row, cdr))
                cdr.three_leg += 1
                cdr.lines += 3
            else:
                out.write(line)
                cdr.lines += 1
    with path.open("a" if append else "w", encoding="utf-8", newline="") as handle:
        handle.write(out.getvalue())
    return cdr


# -- replicas --------------------------------------------------------------------------------
def write_config(config: Path, store: str, cdr: Path) -> Path:
    config.write_text(CONFIG.format(interval=int(INTERVAL), store=store, cdr=cdr,
                                    secret=SECRET))
    assert PASSWORD not in config.read_text()  # the store password lives in the env only
    return config


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state, ppid, ...); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> list[tuple[int, str]]:
    """The processes under `pid` (the recompute worker and its helpers) as (pid, start
    time), from /proc: the start time tells a reused pid from the one we saw."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if (fields := _stat(child)) is not None:
                found.append((child, fields[19]))
                todo.append(child)
    return found


def alive(process: tuple[int, str]) -> bool:
    """Whether that very process (same pid, same start time) still runs (zombies do not)."""
    fields = _stat(process[0])
    return fields is not None and fields[19] == process[1] and fields[0] != "Z"


class Replica(ExporterProcess):
    """One exporter process; remembers its children so none outlives the test."""

    name = ""
    children: list[tuple[int, str]]

    def scrape(self, timeout: float = 2.0) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """/metrics parsed; {} when the process cannot answer (starting, stopped, killed)."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                conn.request("GET", "/metrics")
                response = conn.getresponse()
                body = response.read()
            finally:
                conn.close()
        except OSError:
            return {}
        return parse_exposition(body.decode()) if response.status == 200 else {}

    def value(self, name: str, **labels: str) -> float | None:
        return self.scrape().get((name, frozenset(labels.items())))

    def leader(self) -> float | None:
        return self.value("contactcenter_leader")

    def leads(self) -> bool:
        self.running()
        return self.leader() == 1

    def records(self, source: str = "pbx") -> float:
        return self.value("contactcenter_source_records_total", source=source) or 0.0

    def remember_children(self) -> None:
        self.children = sorted(set(getattr(self, "children", [])) | set(
            descendants(self.proc.pid)))

    def running(self) -> None:
        """Fail the test at once (pytest.fail passes through wait_for) if the process ended."""
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            pytest.fail(f"replica {self.name} exited with {self.proc.returncode}:\n{tail}")

    def kill9(self) -> float:
        """SIGKILL; the monotonic moment it was sent."""
        self.remember_children()
        self.proc.send_signal(signal.SIGKILL)
        moment = time.monotonic()
        self.proc.wait(timeout=10)
        return moment


@dataclass
class Replicas:
    """The replicas of one test, all stopped (and their orphans killed) at teardown."""

    folder: Path
    started: list[Replica] = field(default_factory=list)

    def start(self, name: str, config: Path) -> Replica:
        cwd = self.folder / name
        cwd.mkdir(exist_ok=True)
        replica = Replica(config, cwd, env={"CONTACT_COST_STORE_PASSWORD": PASSWORD})
        replica.name = name
        replica.children = []
        self.started.append(replica)
        return replica

    def stop_all(self) -> None:
        for replica in self.started:
            with contextlib.suppress(Exception):
                if replica.proc.poll() is None:
                    replica.remember_children()
                    os.kill(replica.proc.pid, signal.SIGCONT)  # a frozen one must hear TERM
            replica.stop()
        for replica in self.started:
            for process in replica.children:
                if alive(process):  # an orphan of a killed replica (never seen so far)
                    with contextlib.suppress(OSError):
                        os.kill(process[0], signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(f"--- {r.name} ({r.url})\n{r.log.read_text(errors='replace')[-3000:]}"
                         for r in self.started if r.log.exists())


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    group = Replicas(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
        print(group.logs())  # captured: pytest shows it when the test failed


class LeaderWatch(threading.Thread):
    """Samples contactcenter_leader on every replica, over and over, until stopped: the
    sum must never exceed 1 (a replica that cannot answer counts 0: it cannot pull
    either, see test_no_two_replicas_pull_at_once)."""

    def __init__(self, replicas: list[Replica]) -> None:
        super().__init__(daemon=True)
        self.replicas = replicas
        self.samples: list[tuple[float, dict[str, float | None]]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            sample = {r.name: r.scrape(timeout=0.5).get(("contactcenter_leader", frozenset()))
                      for r in self.replicas}
            self.samples.append((time.monotonic(), sample))
            self._stop_event.wait(0.05)

    def __enter__(self) -> LeaderWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def two_at_once(self) -> list[tuple[float, dict[str, float | None]]]:
        return [s for s in self.samples if sum(v or 0 for v in s[1].values()) > 1]

    def check(self) -> None:
        """No sample with more than one replica saying contactcenter_leader 1."""
        both = self.two_at_once()
        assert not both, (
            f"{len(both)} of {len(self.samples)} samples show two leaders, for "
            f"{both[-1][0] - both[0][0]:.2f} s from {both[0][0]:.2f} (monotonic): {both[:3]}")


def wait_leader(group: list[Replica], timeout: float = 30.0) -> tuple[Replica, Replica]:
    """(leader, follower) once exactly one replica says contactcenter_leader 1, the other 0."""
    def settled() -> tuple[Replica, Replica] | None:
        for replica in group:
            replica.running()
        states = [r.leader() for r in group]
        if sorted(states, key=lambda v: -1 if v is None else v) == [0.0, 1.0]:
            return (group[0], group[1]) if states[0] == 1 else (group[1], group[0])
        return None

    return wait_for(settled, timeout, 0.05, "one leader, one follower")  # type: ignore[no-any-return]


def query(server: PostgresServer, db: str, sql: str,
          params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """One statement on database `db` as the superuser, autocommit; its rows."""
    with psycopg.connect(server.url_for(db), password=PASSWORD, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def lock_sessions(server: PostgresServer, db: str) -> list[int]:
    """Backend pids of the replicas' lock sessions (by application_name) on `db`."""
    rows = query(server, db, "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                 "AND datname = %s ORDER BY pid", (LEADER_APP, db))
    return [int(str(row[0])) for row in rows]


def last_query(server: PostgresServer, db: str, pid: int) -> object:
    """When backend `pid` last started a statement (pg_stat_activity.query_start)."""
    rows = query(server, db, "SELECT query_start FROM pg_stat_activity WHERE pid = %s", (pid,))
    return rows[0][0] if rows else None


def lock_holder(server: PostgresServer, db: str) -> list[int]:
    """Backend pids of lock sessions holding the leader's advisory lock (pg_locks)."""
    classid, objid = split_key(lock_key())
    rows = query(
        server, db,
        "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
        "WHERE a.application_name = %s AND l.locktype = 'advisory' AND l.granted "
        "AND l.classid = %s AND l.objid = %s AND l.objsubid = 1 AND a.datname = %s",
        (LEADER_APP, classid, objid, db),
    )
    return [int(str(row[0])) for row in rows]


def store_counts(server: PostgresServer, db: str) -> dict[str, float]:
    """count_tables over PostgreSQL database `db`."""
    return count_tables(lambda sql: query(server, db, sql))


def count_tables(run: Callable[[str], list[tuple[object, ...]]]) -> dict[str, float]:
    """What the tables hold: contacts per source, legs (kept apart for calls of several
    CDRs), contacts holding their one leg inline, and the daily rollups' sums. The same
    statements on either store: the tables and columns are named alike."""
    counts: dict[str, float] = {f"contacts:{source}": int(str(n)) for source, n in run(
        "SELECT source, count(*) FROM contacts GROUP BY source")}
    counts["legs"] = int(str(run("SELECT count(*) FROM legs")[0][0]))
    counts["inline_legs"] = int(str(run(
        "SELECT count(*) FROM contacts WHERE leg IS NOT NULL")[0][0]))
    row = run("SELECT coalesce(sum(contacts), 0), coalesce(sum(handled), 0), "
              "coalesce(sum(handle_seconds), 0), coalesce(sum(billable_seconds), 0) "
              "FROM daily")[0]
    for name, value in zip(("daily_contacts", "daily_handled", "daily_handle_seconds",
                            "daily_billable_seconds"), row, strict=True):
        counts[name] = float(str(value))
    return counts


def position(server: PostgresServer, dbname: str, source: str = "pbx") -> str | None:
    rows = query(server, dbname, "SELECT position FROM positions WHERE source = %s", (source,))
    return str(rows[0][0]) if rows else None


def figures(values: dict[tuple[str, frozenset[tuple[str, str]]], float]
            ) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {key: value for key, value in values.items() if key[0] in FIGURES}


def total(values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    """The sum of `name` over every series carrying `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and want <= ls)


def settled_figures(replica: Replica, server: PostgresServer, dbname: str, calls: int,
                    timeout: float) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """`replica`'s figures from a recompute that ran after the store held all `calls` pbx
    contacts and the replica's pbx read had reached the end of the file."""
    def done() -> bool:
        replica.running()
        return (store_counts(server, dbname).get("contacts:pbx") == calls
                and replica.value("contactcenter_source_up", source="pbx") == 1)

    wait_for(done, timeout, 0.1, f"{calls} pbx contacts stored")
    return recomputed_after(replica, time.time())


def recomputed_after(replica: Replica, moment: float
                     ) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """`replica`'s /metrics once its figures come from a recompute that ran after `moment`."""
    def fresh() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        values = replica.scrape()
        stamp = values.get(("contactcenter_last_recompute_timestamp_seconds", frozenset()))
        return values if stamp is not None and stamp > moment else None

    return wait_for(fresh, 3 * INTERVAL + 10, 0.1,  # type: ignore[no-any-return]
                    f"a recompute on {replica.name}")


def dbname(url: str) -> str:
    return url.rsplit("/", 1)[1]


def assert_no_password(group: Replicas) -> None:
    """The store password is in no replica's log nor on its /metrics."""
    for replica in group.started:
        assert PASSWORD not in replica.log.read_text(errors="replace"), replica.name
        if replica.proc.poll() is None:
            assert PASSWORD not in repr(replica.scrape()), replica.name


def clean_run(folder: Path, cdr: CdrFile
              ) -> tuple[dict[tuple[str, frozenset[tuple[str, str]]], float], dict[str, float]]:
    """The reference: one exporter, in process, reading the whole file into a fresh SQLite
    store, then one recompute; its /metrics values and its tables' counts."""
    from collector.runtime import Exporter, load_config

    store = folder / "clean.db"
    exporter = Exporter(load_config(write_config(folder / "clean.toml", str(store), cdr.path)))
    try:
        assert exporter.ingest("pbx") == cdr.lines  # every CDR a new leg
        exporter.recompute(datetime.now(UTC))
        values = parse_exposition(exporter.metrics_body().decode())
    finally:
        exporter.close()
    with contextlib.closing(sqlite3.connect(store)) as db:
        counts = count_tables(lambda sql: db.execute(sql).fetchall())
    return values, counts


# PostgreSQL stores about 2 000 CDRs a second from one exporter on a shared 2-core machine
# (2026-12-01; SQLite 40 000 in process); the floor, half that, bounds the waits that grow
# with the file.
INGEST_FLOOR_ROWS_PER_S = 1_000


# -- 1. kill -9 of the leader during a large ingest ------------------------------------------
def test_leader_killed_during_a_large_ingest_is_replaced_and_nothing_is_lost_or_doubled(
    tmp_path: Path, postgres_server: PostgresServer, postgres_db: str, replicas: Replicas,
) -> None:
    cdr = write_cdr(tmp_path / "Master.csv", 85_000, datetime.now(OSLO))
    # Hand-worked shape (the counts move a little with the run's date, the relations do
    # not). Run on 2026-12-01: 85 110 calls on the 61 days before it, 67 836 answered;
    # every 8th answered queue call (7 721) is three CDRs, so the file has
    # 85 110 + 2 x 7 721 = 100 552 lines; the store must hold one contact per call
    # (85 110), those calls' 3 x 7 721 = 23 163 legs in `legs` and every other call's one
    # leg inline (85 110 - 7 721 = 77 389). Figures (the year's windows): 67 836 handled,
    # 85 110 - 67 836 = 17 274 abandoned, cost "other" 2.0 x 67 836 = 135 672.00 and
    # "telephony" 0.6 x 24 426 352 billsec / 60 = 244 263.52.
    assert cdr.lines == cdr.calls + 2 * cdr.three_leg
    assert cdr.three_leg > 5000 and cdr.lines > 100_000
    settle = max(60.0, cdr.lines / INGEST_FLOOR_ROWS_PER_S)

    # The clean run: one exporter, the same file, a fresh store (SQLite: the same figures
    # from the same rows is the stores' contract, and it reads the file in seconds).
    clean_values, clean_counts = clean_run(tmp_path, cdr)
    expected = figures(clean_values)
    # Handled = answered calls (a three-CDR call counts once); per_contact 2.0 on each;
    # carrier minutes 0.6 x billsec / 60 = 0.01 x billsec; abandoned = the rest of the calls.
    assert total(expected, "contactcenter_contacts", period="year") == cdr.answered
    assert total(clean_values, "contactcenter_contacts_abandoned",
                 period="year") == cdr.calls - cdr.answered
    assert total(expected, "contactcenter_cost", period="year",
                 component="other") == pytest.approx(2.0 * cdr.answered)
    assert total(expected, "contactcenter_cost", period="year",
                 component="telephony") == pytest.approx(0.01 * cdr.billsec)
    assert clean_counts["contacts:pbx"] == cdr.calls
    assert clean_counts["legs"] == 3 * cdr.three_leg
    assert clean_counts["inline_legs"] == cdr.calls - cdr.three_leg
    assert clean_counts["daily_contacts"] == cdr.calls
    assert clean_counts["daily_billable_seconds"] == cdr.billsec

    # Two replicas on one store; the leader is killed while it reads the file.
    config = write_config(tmp_path / "replicas.toml", postgres_db, cdr.path)
    a, b = replicas.start("a", config), replicas.start("b", config)
    with LeaderWatch([a, b]) as watch:
        leader, follower = wait_leader([a, b], timeout=60)
        # A fifth of the file in: well under way, most of it still to read.
        wait_for(lambda: leader.records() >= cdr.lines // 5, settle, 0.01,
                 "the leader's ingest under way")
        assert follower.records() == 0  # the follower does not read the file
        killed_at = leader.kill9()
        stored_at_kill = store_counts(postgres_server, dbname(postgres_db))["contacts:pbx"]
        assert 0 < stored_at_kill < cdr.calls, "the kill must land while the file is part read"
        wait_for(lambda: follower.leader() == 1, HANDOVER + 10, 0.02, "the follower leads")
        handover = time.monotonic() - killed_at
        print(f"\nkill -9 handover: {handover:.2f} s (limit {HANDOVER:.0f} s); "
              f"{stored_at_kill} of {cdr.calls} calls stored at the kill")
        assert handover <= HANDOVER, f"new leader after {handover:.2f} s"
        took_over = time.monotonic()
        after = settled_figures(follower, postgres_server, dbname(postgres_db), cdr.calls,
                                settle)
        rest = time.monotonic() - took_over
        print(f"the new leader read the other {follower.records():.0f} CDRs in {rest:.1f} s "
              f"({follower.records() / rest:.0f}/s, recompute included)")
    watch.check()
    # The killed leader's recompute worker (if it had started one) went with it: it holds
    # a store connection of its own.
    wait_for(lambda: not any(alive(child) for child in leader.children), 15, 0.1,
             "the killed leader's children to exit")

    # Nothing lost, nothing twice: the survivor read on from the committed position (no
    # leg it read was already stored) and holds what the clean run holds, figure for figure.
    assert follower.value("contactcenter_source_duplicate_records_total", source="pbx") == 0
    assert 0 < follower.records() < cdr.lines
    assert store_counts(postgres_server, dbname(postgres_db)) == clean_counts
    assert figures(after) == expected
    assert_no_password(replicas)


# -- 2. pg_terminate_backend on the leader's lock session ------------------------------------
def test_terminated_lock_session_moves_leadership_and_never_two_leaders(
    tmp_path: Path, postgres_server: PostgresServer, postgres_db: str, replicas: Replicas,
) -> None:
    db = dbname(postgres_db)
    now = datetime.now(OSLO)
    # Whole days up to 3 000 calls: on 2026-12-01, 26-30 November (Sunday closed), 4 335
    # calls in 4 335 + 2 x 403 three-CDR calls = 5 141 lines.
    cdr = write_cdr(tmp_path / "Master.csv", 3_000, now)
    config = write_config(tmp_path / "replicas.toml", postgres_db, cdr.path)
    # The second replica starts once the first leads, so their polls are out of step as
    # they are in production (started together, both poll at the same instant).
    old = replicas.start("a", config)
    wait_for(old.leads, 30, 0.05, "the first replica leads")
    new = replicas.start("b", config)
    with LeaderWatch([old, new]) as watch:
        assert wait_leader([old, new]) == (old, new)
        wait_for(lambda: old.records() == cdr.lines, 60, 0.1, "the leader read the file")
        # One lock session per replica (application_name), one of them holding the lock.
        sessions = lock_sessions(postgres_server, db)
        assert len(sessions) == 2, sessions
        holders = lock_holder(postgres_server, db)
        assert len(holders) == 1, holders
        # The least convenient moment: just after the leader last asked the server whether
        # it holds the lock, so it learns of the loss as late as it can.
        asked = last_query(postgres_server, db, holders[0])
        wait_for(lambda: last_query(postgres_server, db, holders[0]) != asked,
                 3 * INTERVAL + 5, 0.01, "the leader's next lock check")
        started = time.monotonic()
        assert query(postgres_server, db, "SELECT pg_terminate_backend(%s)",
                     (holders[0],)) == [(True,)]
        wait_for(lambda: new.leader() == 1, HANDOVER + 10, 0.02, "the other replica leads")
        moved = time.monotonic() - started
        wait_for(lambda: old.leader() == 0, HANDOVER + 10, 0.02, "the old leader steps down")
        stepped_down = time.monotonic() - started
        print(f"\npg_terminate_backend: new leader after {moved:.2f} s, old leader 0 after "
              f"{stepped_down:.2f} s (limit {HANDOVER:.0f} s)")
        assert moved <= HANDOVER, f"new leader after {moved:.2f} s"
        now_holding = lock_holder(postgres_server, db)
        assert len(now_holding) == 1 and now_holding != holders

        # Only the lock's session was ended: the old leader's store connection still works.
        assert old.value("contactcenter_store_up") == 1

        # From now on only the new leader reads: the calls of the day before the file's
        # first day (on 2026-12-01: Wednesday 25 November, 1 783 calls in 1 783 + 2 x 158 =
        # 2 099 lines), appended, are stored once and all counted by the new leader.
        extra = write_cdr(cdr.path, 1, now, append=True, skip_days=cdr.days)
        wait_for(lambda: store_counts(postgres_server, db).get("contacts:pbx")
                 == cdr.calls + extra.calls, 60, 0.1, "the appended calls stored")
        wait_for(lambda: new.records() == extra.lines, 10, 0.1, "the new leader's count")
        assert old.records() == cdr.lines  # what it read while it led, nothing since
        assert old.leader() == 0 and new.leader() == 1
        for replica in (old, new):
            assert replica.value("contactcenter_source_duplicate_records_total",
                                 source="pbx") == 0

        # The old leader is a follower again (its lock session back, with backoff) and
        # takes over once the other lets go: a clean stop releases the lock at once.
        wait_for(lambda: len(lock_sessions(postgres_server, db)) == 2, 30, 0.1,
                 "the old leader's lock session back")
        assert new.stop() == 0
        released = time.monotonic()
        wait_for(old.leads, HANDOVER + 10, 0.02, "the old leader leads again")
        back = time.monotonic() - released
        print(f"clean stop: the old leader leads again after {back:.2f} s")
        assert back <= HANDOVER
    watch.check()
    assert len(watch.samples) > 20
    assert_no_password(replicas)


# -- 3. webhooks to both replicas at once ----------------------------------------------------
def signed_post(replica: Replica, body: bytes) -> tuple[int, bytes]:
    """POST one generic webhook event, signed as adapters/generic_webhook.py checks it:
    HMAC-SHA256(secret, "<timestamp>.<raw body>") in hex after "sha256=" (README, Webhooks)."""
    stamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=30)
    try:
        conn.request("POST", "/webhooks/generic/crm", body=body, headers={
            "Content-Type": "application/json", "X-Contact-Cost-Timestamp": stamp,
            "X-Contact-Cost-Signature": f"sha256={digest}"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_webhooks_to_both_replicas_at_once_count_each_contact_once(
    tmp_path: Path, postgres_server: PostgresServer, postgres_db: str, replicas: Replicas,
) -> None:
    db = dbname(postgres_db)
    (tmp_path / "Master.csv").write_text("")  # the pull source has nothing to read
    config = write_config(tmp_path / "replicas.toml", postgres_db, tmp_path / "Master.csv")
    a, b = replicas.start("a", config), replicas.start("b", config)
    wait_leader([a, b])  # both up and serving
    n = 200
    start = int(time.time()) - 600
    events = [json.dumps({"id": f"evt-{i:04d}", "channel": "chat", "direction": "inbound",
                          "queue": "Support Team", "start": start + i, "handled": True,
                          "handle_seconds": 300, "talk_seconds": 240,
                          "customer": f"customer-{i}@example.com"}).encode()
              for i in range(n)]
    barriers = [threading.Barrier(2, timeout=30) for _ in range(n)]

    def post(i: int, replica: Replica) -> tuple[int, bytes]:
        barriers[i].wait()  # the two copies of event i leave together
        return signed_post(replica, events[i])

    # Submitted in pairs, taken in order: a pair's second half is always next in line.
    # Six at a time: three to each replica, under the server's 8 connections per client.
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [(i, pool.submit(post, i, replica)) for i in range(n) for replica in (a, b)]
        answers: dict[int, list[tuple[int, bytes]]] = {}
        for i, future in futures:
            answers.setdefault(i, []).append(future.result(timeout=120))
    # Each event: one replica stored it, the other found it stored (a redelivery).
    wrong = {i: got for i, got in answers.items()
             if sorted(got) != [(200, b"accepted\n"), (200, b"duplicate\n")]}
    assert not wrong, dict(list(wrong.items())[:5])

    assert store_counts(postgres_server, db)["contacts:crm"] == n
    after = time.time()
    values = [recomputed_after(r, after) for r in (a, b)]
    for name in ("accepted", "duplicate"):  # 200 of each across the two replicas
        assert sum(total(v, "contactcenter_webhook_requests_total", source="crm",
                         status=name) for v in values) == n
    assert sum(total(v, "contactcenter_source_duplicate_records_total", source="crm")
               for v in values) == n
    assert sum(total(v, "contactcenter_source_records_total", source="crm")
               for v in values) == n
    for v in values:  # both replicas serve the same figures from the shared store
        # 200 handled chats (the year's windows, in case the test straddles New Year);
        # per_contact 2.0 each = 400.0; no carrier minutes on chat.
        assert total(v, "contactcenter_contacts", period="year", channel="chat") == n
        assert total(v, "contactcenter_cost", period="year", channel="chat",
                     component="other") == pytest.approx(2.0 * n)
        assert total(v, "contactcenter_cost", period="year", channel="chat",
                     component="telephony") == 0
    assert figures(values[0]) == figures(values[1])


# -- 4. no two replicas pull at once ---------------------------------------------------------
def test_no_two_replicas_pull_at_once(
    tmp_path: Path, postgres_server: PostgresServer, postgres_db: str, replicas: Replicas,
) -> None:
    db = dbname(postgres_db)
    now = datetime.now(OSLO)
    cdr = write_cdr(tmp_path / "Master.csv", 3_000, now)  # as in the test above: 5 141 lines
    config = write_config(tmp_path / "replicas.toml", postgres_db, cdr.path)
    a, b = replicas.start("a", config), replicas.start("b", config)
    with LeaderWatch([a, b]) as watch:
        leader, follower = wait_leader([a, b])
        wait_for(lambda: leader.records() == cdr.lines, 60, 0.1, "the leader read the file")
        before = position(postgres_server, db)
        assert before is not None
        # Freeze the leader: its lock session lives on (the kernel still answers for its
        # socket), so it stays the leader that cannot pull. New calls arrive meanwhile; for
        # three intervals the follower must neither take over nor read them.
        os.kill(leader.proc.pid, signal.SIGSTOP)
        try:
            extra = write_cdr(cdr.path, 1, now, append=True, skip_days=cdr.days)
            window = time.monotonic() + 3 * INTERVAL
            looks = 0
            while time.monotonic() < window:  # observing a quiet window, not awaiting a job
                assert follower.leader() != 1
                assert follower.records() == 0
                assert position(postgres_server, db) == before
                assert store_counts(postgres_server, db)["contacts:pbx"] == cdr.calls
                looks += 1
                time.sleep(0.2)
            assert looks >= 5
        finally:
            os.kill(leader.proc.pid, signal.SIGCONT)
        # Thawed, the leader reads the new calls; the position moves under it alone.
        wait_for(lambda: store_counts(postgres_server, db).get("contacts:pbx")
                 == cdr.calls + extra.calls, 60, 0.1, "the appended calls stored")
        wait_for(lambda: leader.records() == cdr.lines + extra.lines, 10, 0.1, "its count")
        assert position(postgres_server, db) != before
        assert follower.records() == 0 and follower.leader() == 0
        # The follower's ingest jobs return before pulling: not one read has succeeded.
        assert not follower.value("contactcenter_source_last_success_timestamp_seconds",
                                  source="pbx")
    watch.check()
    for replica in (leader, follower):
        assert replica.value("contactcenter_source_duplicate_records_total", source="pbx") in (
            0, None)
    # Every replica recomputes from the shared store and serves the same figures.
    after = time.time()
    values = [recomputed_after(r, after) for r in (leader, follower)]
    # Handled: the answered calls of both parts (on 2026-12-01: 3 488 + 1 400 = 4 888).
    assert total(values[0], "contactcenter_contacts", period="year") == (
        cdr.answered + extra.answered)
    assert figures(values[0]) == figures(values[1])
