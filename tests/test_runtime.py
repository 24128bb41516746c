"""Runtime and scheduler: jobs wired as promised, a failing source never raises, report output."""

from __future__ import annotations

import json
import logging
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
from collector.runtime import REJECTIONS_LOGGED_PER_REASON, Exporter, LoadedConfig
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


def test_rejected_records_are_logged_once_bounded_and_escaped(
    exporter: tuple[Exporter, ScriptedAdapter], caplog: pytest.LogCaptureFixture
) -> None:
    exp, adapter = exporter
    hostile = "disposition '\x1b[2J\r\x00FORGED'"  # ESC clear-screen, CR, NUL from an export
    adapter.batches = [
        Batch([contact("a")], [Rejection("date", n, f"bad date on line {n}") for n in (2, 3, 4, 5, 6)]
              + [Rejection("disposition", 9, hostile)], "p1", "/exports/Master.csv"),
    ]
    with caplog.at_level(logging.WARNING, logger="collector.runtime"):
        assert exp.ingest("pbx") == 1
    messages = [r.getMessage() for r in caplog.records]
    assert REJECTIONS_LOGGED_PER_REASON == 3
    # Three of the five date rejections one line each, then one line for the other two.
    assert messages == [
        "source pbx: rejected record at /exports/Master.csv:2, reason date: bad date on line 2",
        "source pbx: rejected record at /exports/Master.csv:3, reason date: bad date on line 3",
        "source pbx: rejected record at /exports/Master.csv:4, reason date: bad date on line 4",
        "source pbx: 2 more records in /exports/Master.csv rejected with reason date",
        "source pbx: rejected record at /exports/Master.csv:9, reason disposition: "
        "disposition '\\x1b[2J\\r\\x00FORGED'",
    ]
    assert not any(c in m for m in messages for c in "\x1b\r\x00")
    # Every rejection is counted, logged or not.
    assert exp.health.sources()["pbx"].rejected == {"date": 5, "disposition": 1}


def test_reload_applies_or_refuses_and_sets_the_gauge(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    config = tmp_path / "c.toml"
    config.write_text(f'store = "{store}"\ncurrency = "EUR"\n')
    exp = Exporter(LoadedConfig(Settings(store=store), (), "test"), clock=lambda: 1234.0)
    calls: list[str] = []
    exp.reload_listeners.append(lambda: calls.append(exp.settings.currency))
    try:
        exp.started()

        def gauge(name: str) -> float | None:
            return parse_exposition(exp.health.body.decode()).get((name, frozenset()))

        assert gauge("contactcenter_config_last_reload_successful") == 1
        outcome = exp.reload(config)
        assert outcome.ok and outcome.sources == 0
        assert exp.settings.currency == "EUR" and calls == ["EUR"]
        assert gauge("contactcenter_config_last_reload_success_timestamp_seconds") == 1234.0

        # An error raised outside pydantic (here zoneinfo, from a source's settings) is a
        # refusal with the reason, like any other invalid configuration.
        config.write_text(
            f'store = "{store}"\ncurrency = "USD"\n[[sources]]\nname = "la"\n'
            'adapter = "liveagent"\nbase_url = "https://x.invalid/"\napi_key = "k"\n'
            'api_timezone = "Mars/Olympus"\n'
        )
        outcome = exp.reload(config)
        assert not outcome.ok and outcome.error is not None
        assert outcome.error.startswith(f"{config}: ") and "Mars/Olympus" in outcome.error
        assert exp.settings.currency == "EUR" and calls == ["EUR"]  # the last good one stays
        assert gauge("contactcenter_config_last_reload_successful") == 0

        # A listener that fails makes the reload fail; the next one still runs.
        config.write_text(f'store = "{store}"\ncurrency = "NOK"\n')
        exp.reload_listeners.append(lambda: (_ for _ in ()).throw(RuntimeError("boom\rX")))
        outcome = exp.reload(config)
        assert outcome.error == "boom\\rX"
        assert gauge("contactcenter_config_last_reload_successful") == 0
        exp.reload_listeners.pop()
        assert exp.reload(config).ok
        assert gauge("contactcenter_config_last_reload_successful") == 1
    finally:
        exp.close()


def test_a_bad_row_of_a_real_export_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .test_e2e import cdr_line, write_config

    monkeypatch.chdir(tmp_path)
    start = datetime(2026, 11, 26, 9, tzinfo=UTC)
    good = cdr_line("1.1", start, 120)
    # Line 2: billsec "12x" where cdr_csv writes ASCII digits (a counted `duration` rejection),
    # with an ESC sequence in the disposition field for good measure.
    bad = cdr_line("1.2", start, 60).replace(",65,60,", ",65,12x,").replace(
        '"ANSWERED"', '"ANSWERED\x1b[2J"')
    (tmp_path / "Master.csv").write_text(good + bad + cdr_line("1.3", start, 30))
    from collector.runtime import load_config

    exp = Exporter(load_config(write_config(tmp_path)), clock=lambda: NOW.timestamp())
    try:
        with caplog.at_level(logging.DEBUG):  # every logger, adapters' included
            assert exp.ingest("pbx") == 2
    finally:
        exp.close()
    assert sum(exp.health.sources()["pbx"].rejected.values()) == 1
    about_line_2 = [r for r in caplog.records if "Master.csv:2" in r.getMessage()]
    assert len(about_line_2) == 1, [r.getMessage() for r in caplog.records]
    record = about_line_2[0]
    assert record.name == "collector.runtime"
    assert record.getMessage().startswith(
        f"source pbx: rejected record at {tmp_path / 'Master.csv'}:2, reason ")
    assert "\x1b" not in "".join(r.getMessage() for r in caplog.records)


def test_an_adapter_failing_outside_pydantic_is_one_config_error_and_closes_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import collector.sources
    from collector.config import ConfigError

    closed: list[str] = []

    class Closing(ScriptedAdapter):
        def close(self) -> None:
            closed.append(self.name)

    class Exploding(ScriptedAdapter):
        def __init__(self, settings: SourceSettings, context: AdapterContext) -> None:
            raise KeyError("No time zone found with key Mars/Olympus")  # as zoneinfo does

    classes = {"closing": Closing, "exploding": Exploding}
    monkeypatch.setattr(collector.sources, "load_adapter_class", classes.__getitem__)
    settings = Settings(sources=[SourceSettings(name="a", adapter="closing"),
                                 SourceSettings(name="b", adapter="exploding")])
    with pytest.raises(ConfigError) as caught:
        collector.sources.build_adapters(settings, "c.toml")
    assert str(caught.value) == "c.toml: sources[1] (b): No time zone found with key Mars/Olympus"
    assert closed == ["a"]  # the adapter built before the failing one is not leaked
