"""Runtime and scheduler: jobs wired as promised, a failing source never raises, report output."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent

from adapters.base import Adapter, AdapterContext, SourceError
from collector.config import Settings, SourceSettings
from collector.model import Batch, Contact, Rejection
from collector.runtime import Exporter, LoadedConfig
from collector.scheduler import RECOMPUTE_JOB, build_scheduler, ingest_job_id

from .conftest import FIXTURES, parse_exposition

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


class ScriptedAdapter(Adapter):
    """Yields the batches it is given, then raises if told to: a source we control."""

    settings_model: ClassVar[type[SourceSettings]] = SourceSettings

    def __init__(self, settings: SourceSettings, context: AdapterContext) -> None:
        super().__init__(settings, context)
        self.batches: list[Batch] = []
        self.fail: Exception | None = None
        self.positions: list[str | None] = []

    def pull(self, position: str | None) -> Iterator[Batch]:
        self.positions.append(position)
        yield from self.batches
        if self.fail is not None:
            raise self.fail


def contact(cid: str) -> Contact:
    return Contact(cid, "voice", "inbound", "support", NOW.timestamp() - 3600, True,
                   200.0, 200.0, 200.0)


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[tuple[Exporter, ScriptedAdapter]]:
    settings = Settings(
        store=tmp_path / "s.db",
        interval="60s",
        sources=[SourceSettings(name="pbx", adapter="scripted", interval="30s")],
        costs=[{"name": "Fee", "component": "other", "per_contact": 3.0}],
    )
    adapter = ScriptedAdapter(settings.sources[0], AdapterContext(settings.tz, "USD"))
    exp = Exporter(LoadedConfig(settings, (adapter,), "test"), clock=lambda: NOW.timestamp())
    yield exp, adapter
    exp.close()


def test_scheduler_jobs(exporter: tuple[Exporter, ScriptedAdapter]) -> None:
    exp, _ = exporter
    scheduler = build_scheduler(exp)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {ingest_job_id("pbx"), RECOMPUTE_JOB}
    for job in jobs.values():
        assert job.max_instances == 1
        assert job.coalesce is True
    assert jobs["ingest:pbx"].trigger.interval.total_seconds() == 30
    assert jobs["ingest:pbx"].trigger.jitter == 3  # a tenth of the interval
    assert jobs["ingest:pbx"].misfire_grace_time == 30
    assert jobs[RECOMPUTE_JOB].trigger.interval.total_seconds() == 60


def test_job_events_become_self_metrics(exporter: tuple[Exporter, ScriptedAdapter]) -> None:
    exp, _ = exporter
    scheduler = build_scheduler(exp)
    now = datetime.now(UTC)
    scheduler._dispatch_event(JobExecutionEvent(EVENT_JOB_EXECUTED, "ingest:pbx", "default", now))
    scheduler._dispatch_event(
        JobExecutionEvent(EVENT_JOB_ERROR, RECOMPUTE_JOB, "default", now, exception=ValueError())
    )
    values = parse_exposition(exp.health.body.decode())
    assert values[("contactcenter_scheduler_job_runs_total",
                   frozenset({"job": "ingest", "status": "success"}.items()))] == 1
    assert values[("contactcenter_scheduler_job_runs_total",
                   frozenset({"job": "recompute", "status": "error"}.items()))] == 1


def test_first_ingest_of_every_source_triggers_the_first_recompute(
    exporter: tuple[Exporter, ScriptedAdapter],
) -> None:
    exp, _ = exporter
    called: list[bool] = []
    exp.on_initial_ingest_done = lambda: called.append(True)
    exp.ingest("pbx")
    assert called == [True]


def test_failing_source_goes_down_keeps_committed_batches(
    exporter: tuple[Exporter, ScriptedAdapter],
) -> None:
    exp, adapter = exporter
    adapter.batches = [
        Batch([contact("a"), contact("b")], [Rejection("date", 7, "bad date")], "p1"),
    ]
    adapter.fail = SourceError("https://api.example.invalid/calls: HTTP 401", "auth")
    assert exp.ingest("pbx") == 2  # never raises
    state = exp.health.sources()["pbx"]
    assert state.up == 0
    assert state.last_error == "https://api.example.invalid/calls: HTTP 401"
    assert state.records == 2 and state.rejected == {"date": 1}
    assert exp.store.position("pbx") == "p1"  # the committed batch stays
    exp.recompute(NOW)
    text = exp.metrics_body().decode()
    values = parse_exposition(text)
    labels = {"period": "day", "window": "current", "channel": "voice", "direction": "inbound",
              "queue": "support"}
    assert values[("contactcenter_contacts", frozenset(labels.items()))] == 2
    # 3.00 per handled contact, two contacts.
    assert values[("contactcenter_cost_per_contact", frozenset(labels.items()))] == 3.0
    assert values[("contactcenter_source_up", frozenset({"source": "pbx"}.items()))] == 0

    # Next run: the source recovers and resumes from the committed position.
    adapter.batches, adapter.fail = [], None
    exp.ingest("pbx")
    assert adapter.positions == [None, "p1"]
    assert exp.health.sources()["pbx"].up == 1
    assert exp.health.sources()["pbx"].last_success == NOW.timestamp()


def test_report_subcommand_json(tmp_path: Path) -> None:
    for name in ("config.toml", "Master.csv"):
        (tmp_path / name).write_bytes((FIXTURES / "golden" / name).read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "collector", "report", "--config.file", "config.toml",
         "--at", "2026-11-26T12:00:00+01:00", "--period", "month", "--format", "json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    current = data["windows"]["current"]
    # Same hand-worked figures as tests/test_golden.py: 1147.55 + 1997.60 over two calls.
    assert current["contacts"] == 2
    assert current["abandoned"] == 1
    assert current["cost"] == pytest.approx(3145.15)
    assert current["cost_per_contact"] == pytest.approx(1572.575)
    assert current["cost_by_component"] == pytest.approx(
        {"facilities": 595.0, "salaries": 2550.0, "telephony": 0.15}
    )
    assert current["outcomes"] == [
        {"queue": "sales", "outcome": "sale", "count": 1.0, "cost_per_outcome": pytest.approx(1997.6)}
    ]
    assert data["windows"]["previous"]["cost_per_contact"] == pytest.approx(3700.02)
    table = subprocess.run(
        [sys.executable, "-m", "collector", "report", "--config.file", "config.toml",
         "--at", "2026-11-26T12:00:00+01:00"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert table.returncode == 0
    assert "voice    inbound   sales" in table.stdout
    assert "cost per sale 1,997.60" in table.stdout
