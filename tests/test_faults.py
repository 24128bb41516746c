"""Fault tests: full or read-only disk, a locked store, rotation and truncation between reads,
a source slower than its interval, the clock jumping back, SIGTERM mid-ingest.

Each one ends by comparing the store with a clean run over the same input: nothing lost,
nothing counted twice.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from adapters.base import Adapter, AdapterContext
from collector.config import Settings, SourceSettings
from collector.model import Batch, Contact
from collector.runtime import Exporter, LoadedConfig, load_config
from collector.scheduler import build_scheduler, ingest_job_id
from collector.store import SqliteStore

from .conftest import ExporterProcess, parse_exposition, wait_for
from .test_e2e import cdr_line, make_big_cdr, run_report, series, write_config

BASE = datetime(2026, 11, 2, 9, tzinfo=UTC)


def rows(first: int, count: int, base: datetime = BASE) -> str:
    """`count` CDR lines with unique ids from `first`; every 5th unanswered."""
    return "".join(
        cdr_line(f"1762000000.{i}", base + timedelta(seconds=30 * i),
                 0 if i % 5 == 0 else 60 + i % 90, "NO ANSWER" if i % 5 == 0 else "ANSWERED")
        for i in range(first, first + count)
    )


def totals(store: SqliteStore) -> tuple[int, int, int, float]:
    """Contacts, rolled-up contacts, handled and billable seconds: the store's whole content."""
    db = store._db  # tests read the tables directly
    contacts = db.execute("SELECT count(*) FROM contacts").fetchone()[0]
    daily = db.execute(
        "SELECT coalesce(sum(contacts), 0), coalesce(sum(handled), 0), total(billable_seconds) "
        "FROM daily"
    ).fetchone()
    return (contacts, *daily)


def clean_totals(tmp_path: Path, text: str) -> tuple[int, int, int, float]:
    """The same rows read once, in one file, by a fresh exporter."""
    folder = tmp_path / "clean"
    folder.mkdir(exist_ok=True)
    (folder / "Master.csv").write_text(text)
    exporter = Exporter(load_config(write_config(folder)))
    try:
        exporter.ingest("pbx")
        assert isinstance(exporter.store, SqliteStore)
        return totals(exporter.store)
    finally:
        exporter.close()


def up(exporter: Exporter) -> int:
    return exporter.health.sources()["pbx"].up


def store_errors(exporter: Exporter, operation: str = "commit") -> float:
    values = parse_exposition(exporter.health.body.decode())
    return values.get(("contactcenter_store_errors_total",
                       frozenset({("operation", operation)})), 0.0)


def figures(body: bytes) -> dict[Any, float]:
    """The business samples of an exposition (no self-metrics that change every tick)."""
    return {
        key: value for key, value in parse_exposition(body.decode()).items()
        if not key[0].startswith(("contactcenter_source_", "contactcenter_snapshot_",
                                  "contactcenter_scheduler_", "contactcenter_store_",
                                  "contactcenter_last_", "contactcenter_recompute_"))
    }


# -- disk full / read-only store -------------------------------------------------------------
@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str = "4m") -> Iterator[Path]:
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Write until the filesystem is full; the file that took the space."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as handle:
        block = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                handle.write(block)
        with contextlib.suppress(OSError):
            while True:  # the last few bytes
                handle.write(b"\0")
    return filler


def test_store_disk_full_keeps_last_snapshot_and_recovers(tmp_path: Path) -> None:
    # A real full filesystem: as root, chmod does not stop writes, and a tmpfs holding the
    # open store cannot be remounted read-only (EBUSY).
    disk = tmp_path / "disk"
    with tiny_filesystem(disk):
        config = write_config(tmp_path)
        text = config.read_text().replace(str(tmp_path / "state.db"), str(disk / "state.db"))
        config.write_text(text)
        cdr = tmp_path / "Master.csv"
        cdr.write_text(rows(0, 200))
        exporter = Exporter(load_config(config), clock=lambda: BASE.timestamp() + 86400)
        try:
            exporter.ingest("pbx")
            exporter.recompute()
            before = exporter.metrics_body()
            assert up(exporter) == 1

            with cdr.open("a") as handle:
                handle.write(rows(200, 3000))  # far more than fits once the disk is full
            filler = fill(disk)
            exporter.ingest("pbx")
            exporter.ingest("pbx")  # longer than a tick
            assert up(exporter) == 0
            reason = exporter.health.sources()["pbx"].last_error
            assert "full" in reason, reason
            assert store_errors(exporter) >= 2
            # The last snapshot is still what /metrics serves; a recompute only reads.
            assert figures(exporter.metrics_body()) == figures(before)
            exporter.recompute()
            assert up(exporter) == 0

            filler.unlink()
            exporter.ingest("pbx")
            assert up(exporter) == 1
            assert isinstance(exporter.store, SqliteStore)
            assert totals(exporter.store) == clean_totals(tmp_path, cdr.read_text())
            assert totals(exporter.store)[0] == 3200
        finally:
            exporter.close()


# -- a store locked by another process -------------------------------------------------------
def test_store_locked_longer_than_a_tick(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    cdr = tmp_path / "Master.csv"
    cdr.write_text(rows(0, 100))
    store = SqliteStore(tmp_path / "state.db", ZoneInfo("UTC"), busy_timeout=0.2)
    exporter = Exporter(config, store=store, clock=lambda: BASE.timestamp() + 86400)
    try:
        exporter.ingest("pbx")
        exporter.recompute()
        with cdr.open("a") as handle:
            handle.write(rows(100, 500))
        other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            exporter.ingest("pbx")
            exporter.ingest("pbx")
            assert up(exporter) == 0
            assert "locked" in exporter.health.sources()["pbx"].last_error
            assert store_errors(exporter) == 2
            exporter.recompute()  # WAL: readers go on while another process writes
        finally:
            other.execute("ROLLBACK")
            other.close()
        exporter.ingest("pbx")
        assert up(exporter) == 1
        assert totals(store) == clean_totals(tmp_path, cdr.read_text())
        assert totals(store)[0] == 600
    finally:
        exporter.close()


# -- rotation and truncation between two reads -----------------------------------------------
def test_export_rotated_between_two_reads(tmp_path: Path) -> None:
    exporter = Exporter(load_config(write_config(tmp_path)))
    cdr = tmp_path / "Master.csv"
    try:
        cdr.write_text(rows(0, 100))
        exporter.ingest("pbx")
        with cdr.open("a") as handle:
            handle.write(rows(100, 50))  # written just before the rotation: not read yet
        cdr.rename(tmp_path / "Master.csv.1")
        cdr.write_text(rows(150, 70))
        exporter.ingest("pbx")
        exporter.ingest("pbx")  # and nothing more on the next tick
        assert up(exporter) == 1
        assert isinstance(exporter.store, SqliteStore)
        assert totals(exporter.store) == clean_totals(tmp_path, rows(0, 220))
    finally:
        exporter.close()


def test_export_truncated_and_rewritten(tmp_path: Path) -> None:
    exporter = Exporter(load_config(write_config(tmp_path)))
    cdr = tmp_path / "Master.csv"
    try:
        cdr.write_text(rows(0, 100))
        exporter.ingest("pbx")
        # Rewritten in place with the same rows and more: the old ones count once.
        with cdr.open("r+") as handle:
            handle.truncate(0)
            handle.write(rows(0, 130))
        exporter.ingest("pbx")
        # Truncated and rewritten shorter, with new rows only.
        with cdr.open("r+") as handle:
            handle.truncate(0)
            handle.write(rows(500, 10))
        exporter.ingest("pbx")
        assert up(exporter) == 1
        assert isinstance(exporter.store, SqliteStore)
        assert totals(exporter.store) == clean_totals(tmp_path, rows(0, 130) + rows(500, 10))
    finally:
        exporter.close()


def rotation_losses(exporter: Exporter) -> float | None:
    values = parse_exposition(exporter.health.body.decode())
    return values.get(("contactcenter_source_rotation_losses_total",
                       frozenset({("source", "pbx")})))


def with_rotated_glob(tmp_path: Path, pattern: str) -> Path:
    config = write_config(tmp_path)
    text = config.read_text()
    config.write_text(text.replace("usegmtime = true\n", f'usegmtime = true\nrotated_glob = "{pattern}"\n', 1))
    return config


def test_copytruncate_with_100_unread_rows_loses_none(tmp_path: Path) -> None:
    """Issue 10: logrotate copytruncate lost 100 of 100 unread rows."""
    exporter = Exporter(load_config(write_config(tmp_path)))
    cdr = tmp_path / "Master.csv"
    try:
        cdr.write_text(rows(0, 100))
        exporter.ingest("pbx")
        with cdr.open("a") as handle:
            handle.write(rows(100, 100))  # the 100 unread rows
        shutil.copyfile(cdr, tmp_path / "Master.csv.1")  # copytruncate: copy, then truncate
        with cdr.open("r+") as handle:
            handle.truncate(0)
        with cdr.open("a") as handle:
            handle.write(rows(200, 20))  # the writer goes on in the truncated file
        exporter.ingest("pbx")
        exporter.ingest("pbx")
        assert isinstance(exporter.store, SqliteStore)
        assert totals(exporter.store) == clean_totals(tmp_path, rows(0, 220))
        assert rotation_losses(exporter) == 0.0  # nothing lost
    finally:
        exporter.close()


def test_olddir_with_rotated_glob_loses_none(tmp_path: Path) -> None:
    """Issue 10: rotation into another directory (olddir) lost 30 of 30 unread rows."""
    exporter = Exporter(load_config(with_rotated_glob(tmp_path, "old/Master.csv*")))
    cdr = tmp_path / "Master.csv"
    try:
        cdr.write_text(rows(0, 50))
        exporter.ingest("pbx")
        with cdr.open("a") as handle:
            handle.write(rows(50, 30))  # the 30 unread rows
        (tmp_path / "old").mkdir()
        cdr.rename(tmp_path / "old" / "Master.csv.1")
        cdr.write_text(rows(80, 5))
        exporter.ingest("pbx")
        assert isinstance(exporter.store, SqliteStore)
        assert totals(exporter.store) == clean_totals(tmp_path, rows(0, 85))
        assert rotation_losses(exporter) == 0.0
    finally:
        exporter.close()


def test_olddir_without_rotated_glob_counts_and_logs_the_loss_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = Exporter(load_config(write_config(tmp_path)))
    cdr = tmp_path / "Master.csv"
    try:
        cdr.write_text(rows(0, 50))
        exporter.ingest("pbx")
        with cdr.open("a") as handle:
            handle.write(rows(50, 30))
        (tmp_path / "old").mkdir()
        cdr.rename(tmp_path / "old" / "Master.csv.1")
        cdr.write_text(rows(80, 5))
        with caplog.at_level("WARNING", logger="collector.runtime"):
            exporter.ingest("pbx")
            exporter.ingest("pbx")
        # 50 + 5 stored; the 30 moved away unread are the counted loss.
        assert isinstance(exporter.store, SqliteStore)
        assert totals(exporter.store) == clean_totals(tmp_path, rows(0, 50) + rows(80, 5))
        assert rotation_losses(exporter) == 1.0
        lost = [r.getMessage() for r in caplog.records if "rotated or truncated" in r.getMessage()]
        assert len(lost) == 1 and "Master.csv" in lost[0] and "pbx" in lost[0]
    finally:
        exporter.close()


def test_export_without_final_newline_is_stored_whole(tmp_path: Path) -> None:
    exporter = Exporter(load_config(write_config(tmp_path)))
    cdr = tmp_path / "Master.csv"
    try:
        cdr.write_text(rows(0, 10).rstrip("\n"))  # written once, no final newline
        exporter.ingest("pbx")
        exporter.ingest("pbx")  # unchanged since the first read: the last row is complete
        with cdr.open("a") as handle:
            handle.write("\n" + rows(10, 3))
        exporter.ingest("pbx")
        assert isinstance(exporter.store, SqliteStore)
        assert totals(exporter.store) == clean_totals(tmp_path, rows(0, 13))
    finally:
        exporter.close()


# -- a source slower than its interval -------------------------------------------------------
class SlowAdapter(Adapter):
    """Yields contact batches after its position; the first read blocks until released."""

    settings_model: ClassVar[type[SourceSettings]] = SourceSettings

    def __init__(self, settings: SourceSettings, context: AdapterContext) -> None:
        super().__init__(settings, context)
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls = 0
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def pull(self, position: str | None) -> Iterator[Batch]:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            self.started.set()
            self.release.wait(30)
            done = int(position or 0)
            for first in range(done, 300, 100):
                yield Batch([contact(i) for i in range(first, first + 100)], [], str(first + 100))
        finally:
            with self._lock:
                self.running -= 1


def contact(i: int) -> Contact:
    return Contact(f"c{i}", "voice", "inbound", "support", BASE.timestamp() + i, True,
                   100.0, 100.0, 100.0)


def test_source_slower_than_its_interval_never_overlaps_or_double_counts(
    tmp_path: Path,
) -> None:
    settings = Settings(
        store=tmp_path / "s.db",
        interval="1s",
        sources=[SourceSettings(name="pbx", adapter="slow", interval="1s")],
        costs=[{"name": "Fee", "component": "other", "per_contact": 1.0}],
    )
    adapter = SlowAdapter(settings.sources[0], AdapterContext(settings.tz, "USD"))
    exporter = Exporter(LoadedConfig(settings, (adapter,), "test"))
    scheduler = build_scheduler(exporter)
    scheduler.start()
    try:
        assert adapter.started.wait(10)
        began = datetime.now(UTC)
        job = scheduler.get_job(ingest_job_id("pbx"))
        # Let at least three ticks come due while the first read is still blocked.
        wait_for(lambda: job.next_run_time > began + timedelta(seconds=3), timeout=15,
                 what="three ticks while the read blocks")
        assert adapter.calls == 1
        exporter.ingest("pbx")  # a direct call meanwhile is refused by the source lock
        assert adapter.calls == 1
        adapter.release.set()
        assert isinstance(exporter.store, SqliteStore)
        wait_for(lambda: adapter.calls >= 2 and totals(exporter.store)[0] == 300, timeout=15,
                 what="the slow read to finish and a later tick to run")
        assert adapter.most_running == 1
        assert totals(exporter.store) == (300, 300, 300, 30000.0)
        assert exporter.health.sources()["pbx"].records == 300
    finally:
        scheduler.shutdown(wait=True)
        exporter.close()


# -- the clock jumps back an hour ------------------------------------------------------------
def test_clock_jumping_back_an_hour_keeps_figures_consistent(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    config_path.write_text(config_path.read_text().replace('timezone = "UTC"',
                                                           'timezone = "Europe/Berlin"'))
    # 2026-10-25 03:00 CEST -> 02:00 CET: 01:30 UTC is 02:30 CET; an hour before, 02:30 CEST.
    moment = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    now = [moment.timestamp()]
    cdr = tmp_path / "Master.csv"
    cdr.write_text(rows(0, 200, base=moment - timedelta(hours=2)))  # every 30 s up to now
    exporter = Exporter(load_config(config_path), clock=lambda: now[0])
    try:
        exporter.ingest("pbx")
        exporter.recompute()
        first = figures(exporter.metrics_body())
        now[0] -= 3600  # NTP step or a DST mistake: the clock goes back an hour
        exporter.ingest("pbx")
        exporter.recompute()
        back = figures(exporter.metrics_body())
        assert all(math.isfinite(v) for v in back.values())
        key = ("contactcenter_contacts", frozenset({
            "period": "day", "window": "current", "channel": "voice", "direction": "inbound",
            "queue": "support"}.items()))
        assert back[key] <= first[key]  # an hour earlier fewer calls have started
        now[0] += 3600
        exporter.recompute()
        assert figures(exporter.metrics_body()) == first
        assert up(exporter) == 1
    finally:
        exporter.close()


# -- SIGTERM during the ingest of a large file -----------------------------------------------
def test_sigterm_during_large_ingest_exits_cleanly_and_resumes(
    tmp_path: Path, start_exporter: Callable[..., ExporterProcess]
) -> None:
    count = 400_000
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    for folder in (killed, clean):
        folder.mkdir()
    make_big_cdr(killed / "Master.csv", count)
    shutil.copy(killed / "Master.csv", clean / "Master.csv")
    exporter = start_exporter(write_config(killed), cwd=killed, ready=False)

    def mid_ingest() -> bool:
        records = series(exporter.metrics(), "contactcenter_source_records_total", source="pbx")
        return (records or 0) > 0

    wait_for(mid_ingest, timeout=60, interval=0.01, what="ingest under way")
    sent = time.monotonic()
    exporter.proc.send_signal(signal.SIGTERM)
    code = exporter.proc.wait(timeout=30)
    took = time.monotonic() - sent
    assert code == 0, exporter.log.read_text()
    assert took < 5, f"SIGTERM took {took:.1f}s"
    with sqlite3.connect(killed / "state.db") as db:
        stored = db.execute("SELECT count(*) FROM contacts").fetchone()[0]
        rolled = db.execute("SELECT coalesce(sum(contacts), 0) FROM daily").fetchone()[0]
    assert stored == rolled  # committed batches only, each with its rollups
    assert 0 < stored < count, "the signal must land while the file is half read"

    restarted = start_exporter(write_config(killed), cwd=killed)
    wait_for(lambda: series(restarted.metrics(), "contactcenter_source_records_total",
                            source="pbx") == count - stored, timeout=120,
             what="the rest of the file after the restart")
    assert restarted.stop() == 0
    assert run_report(write_config(killed), killed) == run_report(write_config(clean), clean)
    with sqlite3.connect(killed / "state.db") as db:
        assert db.execute("SELECT count(*) FROM contacts").fetchone()[0] == count
        assert db.execute("SELECT sum(contacts) FROM daily").fetchone()[0] == count

