"""APScheduler wiring: one ingest job per source, one recompute job, outcomes as self-metrics."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.interval import IntervalTrigger

from collector import storelog
from collector.runtime import Exporter, error_line
from collector.stores import STORE_ERRORS

log = logging.getLogger(__name__)
RECOMPUTE_JOB = "recompute"
LEADER_JOB = "leader"  # replicas on one PostgreSQL store: keep or take the leader lock


def ingest_job_id(source: str) -> str:
    return f"ingest:{source}"


def _status(event: JobExecutionEvent) -> str:
    if event.code == EVENT_JOB_MISSED:
        return "missed"
    return "error" if event.exception is not None else "success"


class StoreFailureInOneLine(logging.Filter):
    """APScheduler logs a failed job with its traceback. A job that failed on the store (a
    lost PostgreSQL connection, a full disk) fails so every interval until the store is
    back, and its traceback says nothing new: one line with the reason instead, as the
    runtime logs store failures (contactcenter_store_up and _store_errors_total count them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, STORE_ERRORS) and storelog.reported(exc):
            return False  # the runtime logged this outage (its first failure) already
        if isinstance(exc, STORE_ERRORS):
            record.msg = f"{record.getMessage()}: the store failed: {error_line(exc)}"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


class ExporterScheduler(BackgroundScheduler):  # type: ignore[misc]  # APScheduler 3 is untyped
    """A BackgroundScheduler whose shutdown first asks a running ingest to stop after its
    current batch, so SIGTERM does not wait for a long backfill to read to the end."""

    def __init__(self, exporter: Exporter, **options: Any) -> None:
        super().__init__(**options)
        self._exporter = exporter

    def shutdown(self, wait: bool = True) -> None:
        self._exporter.request_stop()
        super().shutdown(wait)


def build_scheduler(exporter: Exporter) -> BackgroundScheduler:
    """A scheduler with the jobs for the exporter's current config. Not started."""
    scheduler = ExporterScheduler(
        exporter,
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1},
        executors={"default": {"type": "threadpool", "max_workers": 4}},
    )

    def listener(event: JobExecutionEvent) -> None:
        # APScheduler only logs a listener's error, so this one must not raise.
        with contextlib.suppress(Exception):
            exporter.health.record_job(event.job_id.split(":", 1)[0], _status(event))

    scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    executor_log = logging.getLogger("apscheduler.executors.default")
    if not any(isinstance(f, StoreFailureInOneLine) for f in executor_log.filters):
        executor_log.addFilter(StoreFailureInOneLine())
    schedule_jobs(scheduler, exporter)

    def bring_recompute_forward() -> None:
        with contextlib.suppress(Exception):  # the scheduler may have stopped meanwhile
            job = scheduler.get_job(RECOMPUTE_JOB)
            if job is not None:
                job.modify(next_run_time=datetime.now(UTC))

    def run_first_recompute() -> None:
        # Called from an ingest job's thread. Not inline: shutdown(wait=True) holds the job
        # store lock while it waits for that very job, so modify() there would deadlock a
        # SIGTERM that lands during the first read.
        if scheduler.state == STATE_RUNNING:
            threading.Thread(target=bring_recompute_forward, daemon=True).start()

    def after_reload() -> None:
        schedule_jobs(scheduler, exporter)
        job = scheduler.get_job(RECOMPUTE_JOB)
        if job is not None and exporter.ready:  # the new costs show at once
            job.modify(next_run_time=datetime.now(UTC))

    exporter.on_initial_ingest_done = run_first_recompute
    exporter.reload_listeners.append(after_reload)
    return scheduler


def _schedule_every(
    scheduler: BackgroundScheduler,
    func: Callable[..., Any],
    *,
    job_id: str,
    name: str,
    interval: timedelta,
    first: datetime,
    jitter: timedelta | None = None,
    args: list[Any] | None = None,
) -> None:
    """Add or replace one interval job with the knobs every job here has (one instance,
    coalesced, a grace of one interval); a replaced job keeps its next run, a new one runs
    at `first`."""
    existing = scheduler.get_job(job_id)
    scheduler.add_job(
        func,
        IntervalTrigger(
            seconds=interval.total_seconds(),
            jitter=jitter.total_seconds() if jitter is not None else None,
        ),
        args=args,
        id=job_id,
        name=name,
        replace_existing=True,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=max(1, int(interval.total_seconds())),
        next_run_time=existing.next_run_time if existing else first,
    )


def schedule_jobs(scheduler: BackgroundScheduler, exporter: Exporter) -> None:
    """(Re)create the jobs for the exporter's config; removed sources' jobs go away."""
    settings = exporter.settings
    now = datetime.now(UTC)
    wanted = {ingest_job_id(name) for name in exporter.adapters}
    for job in scheduler.get_jobs():
        if job.id.startswith("ingest:") and job.id not in wanted:
            job.remove()
    for name, adapter in exporter.adapters.items():
        interval = settings.source_interval(adapter.settings)
        _schedule_every(
            scheduler, exporter.ingest, job_id=ingest_job_id(name), name=f"read source {name}",
            interval=interval, first=now, jitter=adapter.settings.jitter or interval / 10,
            args=[name],
        )
    interval = settings.interval
    if exporter.leader is not None:
        # Polled once already when the exporter was made (before any ingest); then every
        # interval, so a follower takes over within one interval of the leader's loss.
        _schedule_every(
            scheduler, exporter.poll_leader, job_id=LEADER_JOB,
            name="keep or take the leader lock", interval=interval, first=now + interval,
        )
    # The first recompute waits for every source's first read (see Exporter._note_first_run),
    # with the interval as a backstop for a source that hangs.
    _schedule_every(
        scheduler, exporter.recompute, job_id=RECOMPUTE_JOB, name="recompute figures",
        interval=interval, first=now if not exporter.adapters else now + interval,
    )

