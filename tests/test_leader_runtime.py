"""Replicas with a leader, in the running exporter (issue 14 deliverable 2), and the store's
configuration (deliverable 1): only the leader pulls; a follower serves webhooks and figures
and is ready without pulling; a terminated lock session moves leadership at the next poll;
a stale leader's fenced commit is refused; contactcenter_store_up follows storage failures
while /metrics keeps the last figures; the password is never in an error, a log or
--config.check.

The leader lock is always the real collector.leader.LeaderLock on a real PostgreSQL
(tests/pg_helpers.py). Failover of exporter subprocesses (kill -9, a large ingest) is in
tests/test_replicas.py, not here.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from adapters.base import Adapter, AdapterContext
from adapters.generic_webhook import (
    GenericWebhookAdapter,
    GenericWebhookSettings,
    generic_signature,
)
from collector.config import ConfigError, Settings, SourceSettings, load_settings
from collector.configcheck import check_config, summary
from collector.model import Batch, Contact
from collector.runtime import Exporter, LoadedConfig, reload_check
from collector.scheduler import LEADER_JOB, build_scheduler
from collector.store import SqliteStore, Store
from collector.stores import STORE_ERRORS, NotLeader
from tests.conftest import REPO, free_port, parse_exposition, wait_for
from tests.pg_helpers import PostgresServer, postgres_db, postgres_server

__all__ = ["postgres_db", "postgres_server"]  # fixtures used by name below

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
# A recognisable password: whatever output a test checks must not contain it.
SECRET = "Sekrit-R-4711-pw"
UTC_ZONE = ZoneInfo("UTC")


@pytest.fixture(autouse=True)
def _no_watcher_left() -> Iterator[None]:
    """Every exporter closed in a test stops its leader lock's watcher thread."""
    import threading

    yield
    left = [t for t in threading.enumerate() if t.name == "leader-lock-watcher"]
    assert left == [], "a leader lock's watcher still runs after the test"


class CountingAdapter(Adapter):
    """A source we control: yields the batches it is given and records every pull."""

    settings_model: ClassVar[type[SourceSettings]] = SourceSettings

    def __init__(self, settings: SourceSettings, context: AdapterContext) -> None:
        super().__init__(settings, context)
        self.batches: list[Batch] = []
        self.pulls: list[str | None] = []

    def pull(self, position: str | None) -> Iterator[Batch]:
        self.pulls.append(position)
        yield from self.batches


def contact(cid: str, hours_ago: float = 1.0) -> Contact:
    return Contact(cid, "voice", "inbound", "support", NOW.timestamp() - hours_ago * 3600,
                   True, 200.0, 200.0, 200.0)


def replica(store_setting: str | Path, store: Store | None = None,
            **settings: Any) -> tuple[Exporter, CountingAdapter]:
    """One exporter with one source `pbx` (3.00 per handled contact) on `store_setting`."""
    config = Settings(
        store=store_setting,
        sources=[SourceSettings(name="pbx", adapter="counting")],
        costs=[{"name": "Fee", "component": "other", "per_contact": 3.0}],
        **{"interval": "60s", **settings},
    )
    adapter = CountingAdapter(config.sources[0], AdapterContext(config.tz, "USD"))
    exporter = Exporter(LoadedConfig(config, (adapter,), "test"), store=store,
                        clock=lambda: NOW.timestamp())
    return exporter, adapter


def gauge(exporter: Exporter, name: str) -> float | None:
    return parse_exposition(exporter.metrics_body().decode()).get((name, frozenset()))


DAY = frozenset({"period": "day", "window": "current", "channel": "voice",
                 "direction": "inbound", "queue": "support"}.items())


def contacts_today(exporter: Exporter) -> float | None:
    return parse_exposition(exporter.metrics_body().decode()).get(("contactcenter_contacts", DAY))


# -- configuration ---------------------------------------------------------------------------
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def load_error(config: Path) -> ConfigError:
    """The ConfigError loading the file raises."""
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    return caught.value


def test_a_url_stays_a_url_and_a_path_stays_a_relative_path(tmp_path: Path) -> None:
    url = load_settings(write(tmp_path, 'store = "postgresql://cce@db.example:5432/cc"\n'))
    # Kept as written: Path() would fold the '//' into one slash.
    assert url.store == "postgresql://cce@db.example:5432/cc" and url.store_is_url
    path = load_settings(write(tmp_path, 'store = "state/x.db"\n'))
    assert path.store == Path("state/x.db") and not path.store_is_url  # relative, as before


def test_a_password_in_the_url_is_one_line_naming_store_without_the_password(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, f'store = "postgresql://cce:{SECRET}@db.example:5432/cc"\n')
    error = load_error(config)
    assert error.problems == [
        f"{config}: store: postgresql://cce:***@db.example:5432/cc: the password does not "
        "belong in the file; set CONTACT_COST_STORE_PASSWORD, or use PGPASSWORD or ~/.pgpass"
    ]
    assert SECRET not in str(error)


def test_store_password_in_the_file_is_an_error_and_the_rest_is_still_checked(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, f'store_password = "{SECRET}"\ncurrency = "dollars"\n')
    error = load_error(config)
    assert error.problems[0] == (
        f"{config}: store_password does not belong in the file; set CONTACT_COST_STORE_PASSWORD"
    )
    assert error.problems[1].startswith(f"{config}: currency: ")  # still checked
    assert SECRET not in str(error)


def test_store_password_comes_from_the_environment_and_is_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTACT_COST_STORE_PASSWORD", SECRET)
    s = load_settings(write(tmp_path, 'store = "postgresql://cce@db.example/cc"\n'))
    assert s.store_password_value == SECRET
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())


def test_config_check_names_where_the_password_comes_from_never_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path, 'store = "postgresql://cce@db.example:5432/cc"\n')
    monkeypatch.setenv("CONTACT_COST_STORE_PASSWORD", SECRET)
    result = check_config(config)
    assert result.problems == [] and result.config is not None
    text = summary(result.config)
    assert ("store postgresql://cce@db.example:5432/cc (PostgreSQL, password: from "
            "CONTACT_COST_STORE_PASSWORD;") in text
    assert SECRET not in text
    monkeypatch.delenv("CONTACT_COST_STORE_PASSWORD")
    result = check_config(config)
    assert result.config is not None
    assert "password: from libpq environment (PGPASSWORD or ~/.pgpass)" in summary(result.config)


def test_config_check_command_output_never_holds_the_password(tmp_path: Path) -> None:
    # The real CLI, as an operator runs it: both streams, valid and invalid configurations.
    good = tmp_path / "good.toml"
    good.write_text('store = "postgresql://cce@127.0.0.1:5432/cc"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text(f'store = "postgresql://cce:{SECRET}@127.0.0.1/cc"\n'
                   f'store_password = "{SECRET}"\n')
    env = {"PATH": "/usr/bin:/bin", "CONTACT_COST_STORE_PASSWORD": SECRET}
    outputs = []
    for config, status in ((good, 0), (bad, 1)):
        run = subprocess.run(
            [sys.executable, "-m", "collector", "--config.check", "--config.file", str(config)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
        )
        assert run.returncode == status, run.stderr
        outputs.append(run.stdout + run.stderr)
    assert "password: from CONTACT_COST_STORE_PASSWORD" in outputs[0]
    # Two problems, one line each, naming the field; the URL's password shown as ***.
    assert outputs[1].count("invalid configuration") == 2
    assert "store_password does not belong in the file" in outputs[1]
    assert "store: postgresql://cce:***@127.0.0.1/cc:" in outputs[1]
    assert all(SECRET not in text for text in outputs)


def test_reload_compares_a_url_as_written_and_a_path_as_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    a = Settings(store="postgresql://cce@db.example/cc")
    assert reload_check(a, Settings(store="postgresql://cce@db.example/cc"), "c.toml") is None
    moved = reload_check(a, Settings(store="postgresql://cce@db.example/other"), "c.toml")
    assert moved == ("c.toml: store: changed from postgresql://cce@db.example/cc to "
                     "postgresql://cce@db.example/other; a new store needs a restart")
    # The same file written two ways is the same store; a URL instead of it is not.
    assert reload_check(Settings(store="s.db"), Settings(store=tmp_path / "s.db"), "c") is None
    assert reload_check(Settings(store="s.db"), a, "c") is not None
    monkeypatch.setenv("CONTACT_COST_STORE_PASSWORD", SECRET)
    changed = reload_check(a, Settings(store="postgresql://cce@db.example/cc"), "c.toml")
    assert changed is not None and changed.startswith("c.toml: store_password: changed")
    assert SECRET not in changed


# -- a SQLite store: one exporter, always the leader ------------------------------------------
def test_with_sqlite_there_is_no_lock_and_the_exporter_always_leads(tmp_path: Path) -> None:
    exporter, adapter = replica(tmp_path / "s.db")
    try:
        assert exporter.leader is None and exporter.is_leader
        assert gauge(exporter, "contactcenter_leader") == 1
        assert gauge(exporter, "contactcenter_store_up") == 1
        adapter.batches = [Batch([contact("a")], [], "p1")]
        assert exporter.ingest("pbx") == 1
        assert {job.id for job in build_scheduler(exporter).get_jobs()} == {
            "ingest:pbx", "recompute"}  # no leader job
    finally:
        exporter.close()


# -- the leader lock on a real PostgreSQL -------------------------------------------------------
@pytest.fixture
def shared_sqlite(tmp_path: Path) -> Callable[[], SqliteStore]:
    """Stores on one SQLite file for replicas whose leader lock is on PostgreSQL: the leader
    logic without the PostgreSQL store (the WAL file takes several writers)."""
    return lambda: SqliteStore(tmp_path / "shared.db", UTC_ZONE)


ReplicaPair = tuple[tuple[Exporter, CountingAdapter], tuple[Exporter, CountingAdapter]]


@pytest.fixture
def two_replicas(postgres_db: str,
                 shared_sqlite: Callable[[], SqliteStore]) -> Iterator[ReplicaPair]:
    """Two replicas (exporter, source) on one lock and the shared SQLite store, made in
    order (the first one polled first: it leads) and closed in that order afterwards."""
    first = replica(postgres_db, shared_sqlite())
    second = replica(postgres_db, shared_sqlite())
    try:
        yield first, second
    finally:
        first[0].close()
        second[0].close()


def test_exactly_one_replica_leads_and_the_follower_pulls_nothing(
    two_replicas: ReplicaPair
) -> None:
    (first, first_source), (second, second_source) = two_replicas
    # Polled once when made: the first one took the lock, the second found it taken.
    assert (first.is_leader, second.is_leader) == (True, False)
    assert gauge(first, "contactcenter_leader") == 1
    assert gauge(second, "contactcenter_leader") == 0
    first_source.batches = [Batch([contact("a"), contact("b")], [], "p2")]
    second_source.batches = [Batch([contact("x")], [], "p9")]
    assert first.ingest("pbx") == 2
    assert second.ingest("pbx") == 0
    assert second_source.pulls == []  # the follower's adapter is never called
    assert second.store.position("pbx") == "p2"  # only the leader's pull moved it
    assert second.poll_leader() is False and first.poll_leader() is True  # no flapping


def test_a_follower_is_ready_and_serves_the_shared_figures_without_pulling(
    two_replicas: ReplicaPair
) -> None:
    (leader, leader_source), (follower, follower_source) = two_replicas
    first_ingests: list[str] = []
    follower.on_initial_ingest_done = lambda: first_ingests.append("done")
    leader_source.batches = [Batch([contact("a"), contact("b")], [], "p2")]
    leader.ingest("pbx")
    assert follower.ingest("pbx") == 0
    # Readiness does not wait for pulls a follower never makes: its first (skipped)
    # round of ingests brings the first recompute, from the leader's two contacts.
    assert first_ingests == ["done"]
    follower.recompute(NOW)
    assert follower.ready
    assert contacts_today(follower) == 2
    assert follower_source.pulls == []


def test_a_terminated_lock_session_moves_leadership_at_the_next_poll(
    postgres_server: PostgresServer,
    two_replicas: ReplicaPair, caplog: pytest.LogCaptureFixture,
) -> None:
    (old, old_source), (new, new_source) = two_replicas
    assert old.is_leader and not new.is_leader
    assert old.leader is not None and old.leader.pid is not None
    postgres_server.admin(f"SELECT pg_terminate_backend({old.leader.pid})")
    # The backend exits asynchronously: the follower takes the lock within two polls.
    assert new.poll_leader() or new.poll_leader() or _after(0.5, new.poll_leader)
    assert gauge(new, "contactcenter_leader") == 1
    # The old leader asks the server before it pulls: it finds its session gone,
    # steps down and reads nothing.
    old_source.batches = [Batch([contact("late")], [], "p-late")]
    with caplog.at_level(logging.WARNING, logger="collector.runtime"):
        assert old.ingest("pbx") == 0
    assert old_source.pulls == []
    assert gauge(old, "contactcenter_leader") == 0
    assert "leader lock lost: this replica stops pulling sources" in caplog.text
    new_source.batches = [Batch([contact("a")], [], "p1")]
    assert new.ingest("pbx") == 1 and new.store.position("pbx") == "p1"


def test_the_old_leaders_gauge_drops_at_once_when_its_session_is_terminated(
    postgres_server: PostgresServer,
    two_replicas: ReplicaPair, caplog: pytest.LogCaptureFixture,
) -> None:
    """No poll, no pull: the lock's watcher tells the exporter, whose /metrics says
    contactcenter_leader 0 within 0.5 s, with one 'leader lock lost' line; the follower
    that then takes the lock says 1 only after the settle, so the two never overlap."""
    import time

    (old, _), (new, _) = two_replicas
    assert old.leader is not None and old.leader.pid is not None
    assert gauge(old, "contactcenter_leader") == 1
    with caplog.at_level(logging.INFO, logger="collector.runtime"):
        terminated = time.monotonic()
        postgres_server.admin(f"SELECT pg_terminate_backend({old.leader.pid})")
        while (gauge(old, "contactcenter_leader") == 1
               and time.monotonic() < terminated + 0.5):
            time.sleep(0.005)
        assert gauge(old, "contactcenter_leader") == 0, "still 1 after 0.5 s"
        assert new.poll_leader() or _after(0.5, new.poll_leader)
        took = time.monotonic() - terminated
        assert gauge(new, "contactcenter_leader") == 1
        assert 0.5 <= took < 2.5  # the settle (0.5 s) came before the follower's 1
        assert old.poll_leader() is False  # inside its reconnect backoff: a follower
    assert caplog.text.count("leader lock lost: this replica stops pulling") == 1
    assert "terminating connection due to administrator command" in caplog.text


def test_a_new_leaders_settle_is_at_most_a_quarter_of_the_interval(
    postgres_db: str, shared_sqlite: Callable[[], SqliteStore]
) -> None:
    """The settle (0.5 s) never eats the handover's two intervals: with interval 1 s it is
    0.25 s (a quarter), with the 60 s of the other tests the full 0.5 s."""
    import time

    started = time.monotonic()
    fast, _ = replica(postgres_db, shared_sqlite(), interval="1s")
    took = time.monotonic() - started
    slow, _ = replica(postgres_db, shared_sqlite())
    try:
        assert fast.is_leader and not slow.is_leader
        assert fast.leader is not None and slow.leader is not None
        assert (fast.leader._settle, slow.leader._settle) == (0.25, 0.5)
        assert 0.25 <= took < 0.5 + 1.0  # it waited its settle before it said it leads
    finally:
        fast.close()
        slow.close()


def _after(seconds: float, call: Callable[[], bool]) -> bool:
    import time

    time.sleep(seconds)
    return call()


def test_a_clean_stop_hands_the_lock_over_at_once(
    postgres_db: str, shared_sqlite: Callable[[], SqliteStore]
) -> None:
    first, _ = replica(postgres_db, shared_sqlite())
    second, _ = replica(postgres_db, shared_sqlite())
    try:
        assert first.is_leader and not second.is_leader
        first.close()  # LeaderLock.close: pg_advisory_unlock, not a wait for a timeout
        assert second.poll_leader() is True
    finally:
        second.close()


def test_the_leader_job_is_polled_every_interval_with_a_stable_id(
    postgres_db: str, shared_sqlite: Callable[[], SqliteStore]
) -> None:
    exporter, _ = replica(postgres_db, shared_sqlite())
    try:
        job = build_scheduler(exporter).get_job(LEADER_JOB)
        assert job is not None and job.id == "leader"
        assert job.func == exporter.poll_leader
        assert job.trigger.interval == timedelta(seconds=60)  # the interval
        assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, 60)
    finally:
        exporter.close()


class RefusingStore:
    """A stale leader's view of a fenced store: pull commits are refused with NotLeader."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.fence: Any = None

    def set_fence(self, fence: Any) -> None:
        self.fence = fence

    def commit_records(self, source: str, contacts: Sequence[Contact], legs: Sequence[Any],
                       position: str | None, *rest: Any) -> Any:
        if position is not None:
            raise NotLeader("the leader lock was lost; this pull's commit was rolled back")
        return self.inner.commit_records(source, contacts, legs, position, *rest)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_refused_commit_stops_the_pull_without_a_source_failure(
    postgres_db: str, shared_sqlite: Callable[[], SqliteStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = RefusingStore(shared_sqlite())
    exporter, source = replica(postgres_db, store)  # type: ignore[arg-type]
    try:
        assert store.fence is not None  # the exporter fenced its store on its lock
        assert store.fence() == exporter.leader.fence_sql()  # type: ignore[union-attr]
        source.batches = [Batch([contact("a")], [], "p1"), Batch([contact("b")], [], "p2")]
        with caplog.at_level(logging.WARNING, logger="collector.runtime"):
            assert exporter.ingest("pbx") == 0
        lines = [r.getMessage() for r in caplog.records if "lost leadership" in r.getMessage()]
        assert lines == ["source pbx: lost leadership, stopping this pull (new records it "
                         "stored: 0); the next leader reads on from the stored position"]
        assert "read failed" not in caplog.text
        state = exporter.health.sources()["pbx"]
        assert (state.up, state.last_error, state.last_run) == (0, "", 0.0)  # no run recorded
        assert store.inner.position("pbx") is None  # the batch stays unread
    finally:
        exporter.close()


def _one_shot_config(tmp_path: Path, store: str) -> Path:
    import shutil

    from tests.conftest import FIXTURES

    shutil.copy(FIXTURES / "golden" / "Master.csv", tmp_path / "Master.csv")
    config = tmp_path / "c.toml"
    config.write_text(
        f'timezone = "Europe/Oslo"\nstore = "{store}"\n'
        '[[sources]]\nname = "cdr"\nadapter = "asterisk_cdr"\n'
        f'path = "{tmp_path / "Master.csv"}"\n'
        'queues = { "support-in" = "support", "sales-in" = "sales" }\n')
    return config


def test_a_one_shot_command_beside_a_serving_leader_reads_the_shared_store_only(
    tmp_path: Path, postgres_db: str, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """report (as whatif and backfill, through the same _ingested) beside a serving leader
    takes part in the election like a replica: the lock is held, so it pulls nothing (no
    two exporters pull at once, and no read position goes back), says so in a command's
    words (not "this one serves webhooks"), and the replica keeps leading."""
    from collector.cli import main

    leader, _ = replica(postgres_db)
    config = _one_shot_config(tmp_path, postgres_db)
    try:
        assert leader.is_leader
        with caplog.at_level(logging.INFO):
            assert main(["report", "--config.file", str(config), "--format", "json"]) == 0
        capsys.readouterr()
        messages = [r.getMessage() for r in caplog.records]
        assert ("another exporter holds the leader lock and pulls the sources; this command "
                "reads the shared store only") in messages
        assert [m for m in messages if m.startswith(("follower:", "leader:"))] == []
        assert leader.store.counts() == {}  # report pulled none of its 4 CDRs
        assert leader.store.position("cdr") is None
        assert leader.poll_leader() is True and gauge(leader, "contactcenter_leader") == 1
    finally:
        leader.close()


def test_a_one_shot_command_with_no_serving_replica_pulls_and_hands_the_lock_back(
    tmp_path: Path, postgres_db: str, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No replica serves: report takes the lock, reads the fixture's 4 CDRs itself, and
    when it ends the lock is free again (a replica started afterwards leads at once)."""
    from collector.cli import main
    from collector.stores import open_store

    config = _one_shot_config(tmp_path, postgres_db)
    with caplog.at_level(logging.INFO):
        assert main(["report", "--config.file", str(config), "--format", "json"]) == 0
    capsys.readouterr()
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("leader lock taken: no serving replica pulls") for m in messages)
    store = open_store(Settings(store=postgres_db, timezone="Europe/Oslo"))
    try:
        assert store.counts() == {"cdr": 4}
    finally:
        store.close()
    later, _ = replica(postgres_db)
    try:
        assert later.is_leader  # report handed the lock back when it ended
    finally:
        later.close()


# -- store_up: a storage failure, the last figures kept ------------------------------------------
class FlakyStore:
    """A SQLite store whose reads fail while `down` is set, as a lost connection does."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.down = False

    def rollups_as_of(self, *args: Any) -> Any:
        if self.down:
            raise sqlite3.OperationalError("disk I/O error")
        return self.inner.rollups_as_of(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_store_up_goes_0_on_a_failed_recompute_and_the_last_figures_stay(
    tmp_path: Path,
) -> None:
    store = FlakyStore(SqliteStore(tmp_path / "s.db", UTC_ZONE))
    exporter, source = replica(tmp_path / "s.db", store)  # type: ignore[arg-type]
    try:
        source.batches = [Batch([contact("a"), contact("b")], [], "p2")]
        exporter.ingest("pbx")
        exporter.recompute(NOW)
        before = exporter.snapshots.current
        assert contacts_today(exporter) == 2 and gauge(exporter, "contactcenter_store_up") == 1
        store.down = True
        with pytest.raises(sqlite3.OperationalError):
            exporter.recompute(NOW)  # the job fails (counted as an error by the scheduler)
        assert exporter.snapshots.current is before  # /metrics keeps the last figures
        assert contacts_today(exporter) == 2
        assert gauge(exporter, "contactcenter_store_up") == 0
        errors = parse_exposition(exporter.metrics_body().decode())
        assert errors[("contactcenter_store_errors_total",
                       frozenset({"operation": "read"}.items()))] == 1
        store.down = False
        exporter.recompute(NOW)
        assert gauge(exporter, "contactcenter_store_up") == 1
    finally:
        exporter.close()


def test_serve_exits_1_with_one_line_when_the_store_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(f'store = "{tmp_path}"\n')  # a directory, not a file
    run = subprocess.run(
        [sys.executable, "-m", "collector", "--config.file", str(tmp_path / "c.toml"),
         "--web.listen-address", f"127.0.0.1:{free_port()}"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert run.returncode == 1
    assert run.stderr == (f"contact-cost-exporter: cannot open the store {tmp_path}: "
                          "unable to open database file\n")


# -- two exporters on one PostgreSQL store ------------------------------------------------------
def test_two_replicas_on_one_postgres_store_one_leads_and_both_serve_its_figures(
    postgres_db: str,
) -> None:
    first, first_source = replica(postgres_db)
    second, second_source = replica(postgres_db)
    try:
        assert [gauge(e, "contactcenter_leader") for e in (first, second)] == [1, 0]
        first_source.batches = [Batch([contact("a"), contact("b")], [], "p2")]
        second_source.batches = [Batch([contact("x"), contact("y"), contact("z")], [], "p9")]
        assert first.ingest("pbx") == 2
        assert second.ingest("pbx") == 0
        assert second_source.pulls == []  # the follower's adapter is never called
        assert second.store.position("pbx") == "p2"  # the follower sees the leader's position
        first.recompute(NOW)
        second.recompute(NOW)
        # Both recompute from the shared store: the leader's 2 contacts, none of x, y, z.
        assert contacts_today(first) == contacts_today(second) == 2
        assert [gauge(e, "contactcenter_store_up") for e in (first, second)] == [1, 1]
    finally:
        first.close()
        second.close()


class TerminatingAdapter(CountingAdapter):
    """Ends the leader's lock session between its two batches, as a DBA's
    pg_terminate_backend (or a network cut) would in the middle of a pull."""

    terminate: Callable[[], None] = staticmethod(lambda: None)

    def pull(self, position: str | None) -> Iterator[Batch]:
        self.pulls.append(position)
        yield Batch([contact("first")], [], "p1")
        self.terminate()
        yield Batch([contact("second")], [], "p2")


def test_a_stale_leaders_fenced_commit_is_refused_and_stores_nothing(
    postgres_db: str, postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture,
) -> None:
    old, _ = replica(postgres_db)
    new, new_source = replica(postgres_db)
    config = old.config.adapters[0].settings
    adapter = TerminatingAdapter(config, AdapterContext(old.settings.tz, "USD"))
    old.config = LoadedConfig(old.settings, (adapter,), "test")
    assert old.leader is not None and old.leader.pid is not None
    pid = old.leader.pid

    def terminate() -> None:
        postgres_server.admin(f"SELECT pg_terminate_backend({pid})")
        # The backend exits asynchronously; the fence looks at pg_locks, so wait for it.
        wait_for(lambda: not postgres_server.admin(
            f"SELECT 1 FROM pg_stat_activity WHERE pid = {pid}"),  # noqa: S608 - a pid
            10, 0.05, "backend gone")

    adapter.terminate = terminate  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.WARNING, logger="collector.runtime"):
            # batch 1 commits as leader; batch 2's commit finds no lock: refused, rolled back
            assert old.ingest("pbx") == 1
        # batch 1's one contact was stored before the lock was lost
        assert "source pbx: lost leadership, stopping this pull (new records it stored: 1)" \
            in caplog.text
        assert "read failed" not in caplog.text
        assert old.store.position("pbx") == "p1"  # batch 2 stays unread for the next leader
        assert old.health.sources()["pbx"].last_error == ""  # not a source failure
        assert gauge(old, "contactcenter_leader") == 0
        # A direct pull commit of the stale leader: NotLeader, nothing stored.
        before = old.store.counts()
        with pytest.raises(NotLeader):
            old.store.commit_records("pbx", [contact("late")], [], "p-late")
        assert old.store.counts() == before and old.store.position("pbx") == "p1"
        # The other replica takes over at its next poll and reads on from p1.
        assert new.poll_leader() is True
        new_source.batches = [Batch([contact("second")], [], "p2")]
        assert new.ingest("pbx") == 1
        assert new_source.pulls == ["p1"] and new.store.position("pbx") == "p2"
        new.recompute(NOW)
        assert contacts_today(new) == 2  # first + second, each once
    finally:
        old.close()
        new.close()


def test_store_up_follows_a_lost_connection_and_the_last_figures_stay(
    postgres_db: str, postgres_server: PostgresServer,
) -> None:
    exporter, source = replica(postgres_db)
    try:
        source.batches = [Batch([contact("a"), contact("b")], [], "p2")]
        exporter.ingest("pbx")
        exporter.recompute(NOW)
        before = exporter.snapshots.current
        assert contacts_today(exporter) == 2 and gauge(exporter, "contactcenter_store_up") == 1
        assert exporter.leader is not None
        # The store is away: its sessions end and no new one may start (the leader lock's
        # session is left alone). An ended session alone is no outage: the store would
        # replace it on its next call.
        with store_away(postgres_server, postgres_db, exporter.leader.pid):
            with pytest.raises(STORE_ERRORS):
                exporter.recompute(NOW)
            assert gauge(exporter, "contactcenter_store_up") == 0
            assert exporter.snapshots.current is before and contacts_today(exporter) == 2
        # The store reconnects (after its backoff) on a later call: store_up is 1 again.
        wait_for(lambda: _recomputed(exporter), 30, 0.2, "the store to reconnect")
        assert gauge(exporter, "contactcenter_store_up") == 1
        assert contacts_today(exporter) == 2
    finally:
        exporter.close()


@contextlib.contextmanager
def store_away(postgres_server: PostgresServer, url: str, keep_pid: int | None) -> Iterator[None]:
    """A real outage of the store's database: no new session may start, and every session
    of it but `keep_pid` (the leader lock's) and the admin one ends; back on leaving."""
    dbname = url.rsplit("/", 1)[1]
    postgres_server.admin(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
    try:
        postgres_server.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "  # noqa: S608
            f"'{dbname}' AND pid <> pg_backend_pid() AND pid <> {int(keep_pid or 0)}")
        yield
    finally:
        postgres_server.admin(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')


def _recomputed(exporter: Exporter) -> bool:
    try:
        exporter.recompute(NOW)
    except STORE_ERRORS:
        return False
    return True


@pytest.mark.parametrize("command", ["serve", "report"])
def test_an_unreachable_postgres_exits_1_with_one_line_without_the_password(
    tmp_path: Path, command: str,
) -> None:
    port = free_port()  # nothing listens there
    (tmp_path / "c.toml").write_text(f'store = "postgresql://cce@127.0.0.1:{port}/cc"\n')
    args = (["--web.listen-address", f"127.0.0.1:{free_port()}"] if command == "serve"
            else ["report"])
    run = subprocess.run(
        [sys.executable, "-m", "collector", "--config.file", str(tmp_path / "c.toml"), *args],
        cwd=REPO, env={"PATH": "/usr/bin:/bin", "CONTACT_COST_STORE_PASSWORD": SECRET},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert run.returncode == 1
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    url = f"postgresql://cce@127.0.0.1:{port}/cc"
    assert lines[0].startswith(f"contact-cost-exporter: cannot open the store: PostgreSQL at "
                               f"{url}: ")  # the URL once, then libpq's reason
    assert lines[0].count(url) == 1 and "Connection refused" in lines[0]
    assert "Traceback" not in run.stderr and SECRET not in run.stderr + run.stdout


def test_a_store_outage_is_one_line_when_it_starts_and_one_when_it_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The recompute job failing on the store every interval: the runtime logs the outage's
    first failure (one line, the reason, no traceback), APScheduler's own line for each
    failed run is left out, every failure is counted; the first success says 'ok again'."""
    store = FlakyStore(SqliteStore(tmp_path / "s.db", UTC_ZONE))
    exporter, _ = replica(tmp_path / "s.db", store)  # type: ignore[arg-type]
    scheduler = build_scheduler(exporter)

    def job_runs(status: str, job: str = "recompute") -> float:
        runs = parse_exposition(exporter.metrics_body().decode())
        return runs.get(("contactcenter_scheduler_job_runs_total",
                         frozenset({"job": job, "status": status}.items())), 0)

    def run_recompute_now() -> None:
        job = scheduler.get_job("recompute")
        job.modify(next_run_time=datetime.now(UTC))

    try:
        with caplog.at_level(logging.INFO):
            scheduler.start()
            # The source's first read (at start, its next a minute away) reads the store
            # through calls FlakyStore never fails; store_up follows the last call, so a
            # read landing between two failed recomputes would end the outage and start a
            # second. And the recompute it triggers must be over, or a run asked for while
            # it runs is skipped (one instance at a time). The outage begins after both.
            wait_for(lambda: (job_runs("success", "ingest") >= 1
                              and job_runs("success") >= 1) or None, 10, 0.05,
                     "the source's first read and the recompute after it")
            store.down = True
            for failures in (1, 2, 3):  # three failed runs of the job
                run_recompute_now()
                wait_for(lambda n=failures: job_runs("error") >= n, 10, 0.05,
                         "the recompute job to fail")
            assert gauge(exporter, "contactcenter_store_up") == 0
            store_errors = parse_exposition(exporter.metrics_body().decode())[
                ("contactcenter_store_errors_total", frozenset({"operation": "read"}.items()))]
            assert store_errors >= 3  # every failure counted
            store.down = False
            worked = job_runs("success")  # the first recompute, before the outage
            run_recompute_now()
            wait_for(lambda: job_runs("success") > worked, 10, 0.05, "a recompute that works")
        messages = [r.getMessage() for r in caplog.records]
        failed = [m for m in messages if m.startswith("store: a read failed")]
        assert failed == ["store: a read failed: disk I/O error; the last figures are served "
                          "meanwhile and store calls are retried; further failures are "
                          "counted in contactcenter_store_errors_total, not logged"]
        assert [m for m in messages if "raised an exception" in m] == []
        assert messages.count("store: ok again (contactcenter_store_up 1)") == 1
        assert "Traceback" not in caplog.text
        assert gauge(exporter, "contactcenter_store_up") == 1
    finally:
        scheduler.shutdown(wait=True)
        exporter.close()


def test_a_store_error_not_from_a_store_call_is_still_the_schedulers_one_line() -> None:
    """The filter leaves a store error the runtime did not report as APScheduler's line plus
    the reason, without the traceback (scheduler.StoreFailureInOneLine)."""
    from collector.scheduler import StoreFailureInOneLine

    try:
        raise sqlite3.OperationalError("database is locked")
    except sqlite3.OperationalError as exc:
        error = exc
    record = logging.LogRecord("apscheduler.executors.default", logging.ERROR, "x", 1,
                               'Job "%s" raised an exception', ("recompute figures",),
                               (type(error), error, error.__traceback__))
    assert StoreFailureInOneLine().filter(record) is True
    assert record.getMessage() == ('Job "recompute figures" raised an exception: the store '
                                   "failed: database is locked")
    assert record.exc_info is None
    from collector import storelog

    storelog.store_failed(error, "read", first=False)  # as Exporter._store_call marks it
    reported = logging.LogRecord("apscheduler.executors.default", logging.ERROR, "x", 1,
                                 "Job raised an exception", None,
                                 (type(error), error, error.__traceback__))
    assert StoreFailureInOneLine().filter(reported) is False


# -- the real CLI: the recompute worker's own store connection ----------------------------------
def test_serve_store_up_follows_an_outage_of_the_store_and_metrics_keep_the_figures(
    tmp_path: Path, postgres_db: str, postgres_server: PostgresServer,
    start_exporter: Callable[..., Any],
) -> None:
    import shutil

    from tests.conftest import FIXTURES
    from tests.pg_helpers import PASSWORD

    shutil.copy(FIXTURES / "golden" / "Master.csv", tmp_path / "Master.csv")
    config = tmp_path / "c.toml"
    config.write_text(
        f'timezone = "Europe/Oslo"\ninterval = "1s"\nstore = "{postgres_db}"\n'
        '[[sources]]\nname = "pbx"\nadapter = "asterisk_cdr"\npath = "Master.csv"\n'
        'interval = "1s"\nqueues = { "support-in" = "support", "sales-in" = "sales" }\n')
    exporter = start_exporter(config, env={"CONTACT_COST_STORE_PASSWORD": PASSWORD})

    def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return parse_exposition(exporter.metrics())

    def value(name: str) -> float | None:
        return scrape().get((name, frozenset()))

    def contacts() -> dict[Any, float]:
        return {k: v for k, v in scrape().items() if k[0] == "contactcenter_contacts"}

    # The 4 CDRs (3 answered, 1 not) are stored; the worker's figures show them.
    wait_for(lambda: scrape().get(("contactcenter_source_records_total",
                                   frozenset({"source": "pbx"}.items()))) == 4, 30)
    wait_for(lambda: sum(contacts().values()) > 0, 30, what="figures from the worker")
    assert value("contactcenter_leader") == 1 and value("contactcenter_store_up") == 1
    before = contacts()
    dbname = postgres_db.rsplit("/", 1)[1]
    # The store is away: no new session may start, and its sessions (the writer, the
    # worker's reader) end; the leader lock's session is left alone.
    postgres_server.admin(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
    try:
        postgres_server.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "  # noqa: S608
            f"'{dbname}' AND application_name LIKE 'contact-cost-exporter store%'")
        wait_for(lambda: value("contactcenter_store_up") == 0, 20, what="store_up 0")
        frozen = value("contactcenter_last_recompute_timestamp_seconds")
        wait_for(lambda: _sleep(2.5), 5)  # more than two intervals: recomputes fail meanwhile
        # /metrics still answers with the last figures: the same snapshot, not a new one.
        assert value("contactcenter_last_recompute_timestamp_seconds") == frozen
        assert contacts() == before
    finally:
        postgres_server.admin(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
    # Reconnected after its backoff (1 s, doubling): store_up is 1 and figures move on.
    wait_for(lambda: value("contactcenter_store_up") == 1, 60, what="store_up 1 again")
    wait_for(lambda: (value("contactcenter_last_recompute_timestamp_seconds") or 0) > frozen,
             30, what="a new snapshot")
    assert contacts() == before  # nothing lost or counted twice
    log = exporter.log.read_text(errors="replace")
    assert PASSWORD not in log
    assert "Traceback" not in log
    # The outage is logged when it starts and when it ends, not per failed job or read
    # (the recomputes failed every second meanwhile).
    started = log.count("msg=store: a read failed") + log.count("msg=store: a commit failed")
    assert 1 <= started <= log.count("msg=store: ok again")
    assert "raised an exception" not in log and "source pbx: read failed" not in log


CRM_SECRET = "crm-hook-secret"


def crm_source() -> GenericWebhookSettings:
    """The generic webhook source "crm" the webhook tests post to."""
    return GenericWebhookSettings(name="crm", adapter="generic_webhook", webhook_secret=CRM_SECRET)


def crm_event(event_id: str) -> bytes:
    """One chat contact as the generic webhook's event (README, Webhooks)."""
    import json

    return json.dumps({"id": event_id, "channel": "chat", "direction": "inbound",
                       "queue": "support", "start": "2026-11-26T11:00:00Z", "handled": True,
                       "handle_seconds": 300, "talk_seconds": 240}).encode()


def post_crm(exporter: Exporter, body: bytes) -> tuple[int, bytes]:
    """POST the body to the exporter's crm webhook, signed HMAC-SHA256 over
    "<timestamp>.<raw body>" as the generic webhook wants: (status, answer)."""
    import time

    stamp = str(int(time.time()))
    headers = {"X-Contact-Cost-Timestamp": stamp,
               "X-Contact-Cost-Signature": generic_signature(CRM_SECRET, stamp, body)}
    status, _, answer = exporter.webhooks.handle(
        "POST", "/webhooks/generic/crm", headers, body, "http://127.0.0.1/webhooks/generic/crm")
    return status, answer


def test_after_a_postgres_restart_a_webhook_and_a_new_leaders_pull_work_first_time(
    postgres_db: str, postgres_server: PostgresServer,
) -> None:
    """pg_ctl restart -m fast ends every session; once the server is back, nothing is
    down: the store's connections that sat idle through it are replaced on their first
    use, so a webhook to a follower is stored (200, not 503), and the follower that takes
    the lock pulls on its first try; store_up stays 1 and no store error is counted."""
    leader, _ = replica(postgres_db)
    crm = crm_source()
    config = Settings(store=postgres_db, interval="60s",
                      sources=[SourceSettings(name="pbx", adapter="counting"), crm],
                      costs=[{"name": "Fee", "component": "other", "per_contact": 3.0}])
    context = AdapterContext(config.tz, "USD")
    source = CountingAdapter(config.sources[0], context)
    follower = Exporter(LoadedConfig(config, (source, GenericWebhookAdapter(crm, context)),
                                     "test"), clock=lambda: NOW.timestamp())
    body = crm_event("evt-9")

    def post() -> tuple[int, bytes]:
        return post_crm(follower, body)

    def store_errors(exporter: Exporter) -> dict[Any, float]:
        return {k: v for k, v in parse_exposition(exporter.metrics_body().decode()).items()
                if k[0] == "contactcenter_store_errors_total" and v}

    try:
        assert gauge(leader, "contactcenter_leader") == 1
        assert gauge(follower, "contactcenter_leader") == 0
        follower.recompute(NOW)  # its store connections are open and then idle
        postgres_server.restart()
        assert post() == (200, b"accepted\n")  # on the first try
        assert gauge(follower, "contactcenter_store_up") == 1
        leader.close()  # the old leader is gone; the follower takes the lock and pulls
        assert follower.poll_leader() is True
        source.batches = [Batch([contact("a"), contact("b")], [], "p2")]
        assert follower.ingest("pbx") == 2
        assert source.pulls == [None]
        follower.recompute(NOW)
        assert contacts_today(follower) == 2  # the chat webhook is not in the voice row
        assert gauge(follower, "contactcenter_store_up") == 1
        assert store_errors(follower) == {}
        assert follower.store.counts() == {"crm": 1, "pbx": 2}
    finally:
        follower.close()
        leader.close()


def _sleep(seconds: float) -> bool:
    import time

    time.sleep(seconds)
    return True


def test_a_webhook_the_store_cannot_take_is_503_and_marks_the_store_down(
    postgres_db: str, postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture,
) -> None:
    """A webhook commit that fails on storage goes through the same bookkeeping as the
    jobs' store calls: 503 (the sender retries), contactcenter_store_up 0 and
    contactcenter_store_errors_total{operation="commit"} 1, one line for the outage however
    many requests fail; the retry after the store's reconnect is stored once, sets store_up
    1 again and says so once."""
    crm = crm_source()
    config = Settings(store=postgres_db, interval="60s", sources=[crm])
    exporter = Exporter(LoadedConfig(config, (GenericWebhookAdapter(
        crm, AdapterContext(config.tz, "USD")),), "test"), clock=lambda: NOW.timestamp())
    body = crm_event("evt-77")  # one contact

    def post() -> tuple[int, bytes]:
        return post_crm(exporter, body)

    def store_errors() -> float | None:
        return parse_exposition(exporter.metrics_body().decode()).get(
            ("contactcenter_store_errors_total", frozenset({("operation", "commit")})))

    try:
        assert gauge(exporter, "contactcenter_store_up") == 1
        assert exporter.leader is not None
        with caplog.at_level(logging.INFO):
            # The database is away (its store sessions ended, none may start; the lock's
            # session is left alone): the webhook's commit cannot be stored.
            with store_away(postgres_server, postgres_db, exporter.leader.pid):
                assert post() == (503, b"try again later\n")
                assert gauge(exporter, "contactcenter_store_up") == 0
                assert store_errors() == 1
                # At once again: inside the store's reconnect backoff (1 s), refused too;
                # counted, not logged again.
                assert post() == (503, b"try again later\n")
                assert store_errors() == 2
            # The sender retries; the store reconnects after its backoff on a later call.
            wait_for(lambda: post()[0] == 200, 30, 0.3, "the retried webhook stored")
        assert gauge(exporter, "contactcenter_store_up") == 1
        messages = [r.getMessage() for r in caplog.records]
        assert [m for m in messages if "answered 503" in m] == [
            "webhook generic/crm: could not store event evt-77, answered 503 (the sender "
            "retries)"]
        assert len([m for m in messages if m.startswith("store: a commit failed: ")]) == 1
        assert messages.count("store: ok again (contactcenter_store_up 1)") == 1
        assert "Traceback" not in caplog.text
        assert post() == (200, b"duplicate\n")  # stored once
        assert exporter.store.counts() == {"crm": 1}
    finally:
        exporter.close()
