"""Self-metrics: each source's health and the scheduler's job outcomes, rendered on change."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from collector.model import Rejection
from collector.snapshot import StaticCollector, gzip_member


@dataclass
class SourceState:
    """What is known about one source's latest runs."""

    interval_seconds: float
    up: int = 0
    last_success: float = 0.0
    last_duration: float = 0.0
    records: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    last_error: str = ""
    last_run: float = 0.0


class HealthState:
    """Thread-safe per-source health plus scheduler counters.

    Every update re-renders the (small) exposition text once, so a scrape only copies
    bytes, as the business figures do.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, SourceState] = {}
        self._jobs: Counter[tuple[str, str]] = Counter()
        self._webhooks: Counter[tuple[str, str]] = Counter()
        self._extra: dict[str, tuple[str, float]] = {}
        self._store_errors: Counter[str] = Counter()
        self._rendered = (b"", gzip_member(b""))
        self._render()

    # -- updates ---------------------------------------------------------------------------
    def configure(self, intervals: dict[str, float]) -> None:
        """Set the configured sources; keep counters of sources that stay (reload)."""
        with self._lock:
            for name in list(self._sources):
                if name not in intervals:
                    del self._sources[name]
            for name, interval in intervals.items():
                state = self._sources.setdefault(name, SourceState(interval))
                state.interval_seconds = interval
            self._render()

    def record_batch(self, source: str, accepted: int, rejections: Iterable[Rejection]) -> None:
        with self._lock:
            state = self._sources.get(source)
            if state is None:
                return
            state.records += accepted
            state.rejected.update(r.reason for r in rejections)
            self._render()

    def record_run(self, source: str, ok: bool, finished: float, duration: float,
                   error: str = "") -> None:
        with self._lock:
            state = self._sources.get(source)
            if state is None:
                return
            state.up = int(ok)
            state.last_run = finished
            state.last_duration = duration
            state.last_error = "" if ok else error
            if ok:
                state.last_success = finished
            self._render()

    def record_job(self, job: str, status: str) -> None:
        """Never raises: called from APScheduler listeners."""
        try:
            with self._lock:
                self._jobs[(job, status)] += 1
                self._render()
        except Exception:  # noqa: BLE001, S110 - a listener must not raise
            pass

    def record_webhook(self, source: str, status: str) -> None:
        with self._lock:
            self._webhooks[(source, status)] += 1
            self._render()

    def record_store_error(self, operation: str) -> None:
        """A store write or read failed (disk full, read-only, locked); never raises."""
        try:
            with self._lock:
                self._store_errors[operation] += 1
                self._render()
        except Exception:  # noqa: BLE001, S110 - called from error paths
            pass

    def set_gauge(self, name: str, help_text: str, value: float) -> None:
        """A process-level gauge, e.g. the last reload's outcome."""
        with self._lock:
            self._extra[name] = (help_text, value)
            self._render()

    # -- reads -----------------------------------------------------------------------------
    def sources(self) -> dict[str, SourceState]:
        with self._lock:
            return {
                name: SourceState(**{**s.__dict__, "rejected": Counter(s.rejected)})
                for name, s in self._sources.items()
            }

    @property
    def body(self) -> bytes:
        return self._rendered[0]

    @property
    def rendered(self) -> tuple[bytes, bytes]:
        """The exposition text and its gzip member, swapped together."""
        return self._rendered

    # -- rendering ---------------------------------------------------------------------------
    def _families(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "contactcenter_source_up",
            "1 if the source's last read succeeded, 0 if it failed (file missing, API error).",
            labels=["source"],
        )
        last = GaugeMetricFamily(
            "contactcenter_source_last_success_timestamp_seconds",
            "Unix time of the source's last successful read; 0 if it never succeeded.",
            labels=["source"],
        )
        duration = GaugeMetricFamily(
            "contactcenter_source_duration_seconds",
            "How long the source's last read took.",
            labels=["source"],
        )
        interval = GaugeMetricFamily(
            "contactcenter_source_interval_seconds",
            "The source's configured read interval.",
            labels=["source"],
        )
        records = CounterMetricFamily(
            "contactcenter_source_records",
            "New contacts stored from this source since the exporter started.",
            labels=["source"],
        )
        rejected = CounterMetricFamily(
            "contactcenter_source_rejected_records",
            "Input records skipped because they could not be used, by reason.",
            labels=["source", "reason"],
        )
        for name, s in sorted(self._sources.items()):
            up.add_metric([name], s.up)
            last.add_metric([name], s.last_success)
            duration.add_metric([name], s.last_duration)
            interval.add_metric([name], s.interval_seconds)
            records.add_metric([name], s.records)
            for reason, count in sorted(s.rejected.items()):
                rejected.add_metric([name, reason], count)
        yield from (up, last, duration, interval, records, rejected)
        jobs = CounterMetricFamily(
            "contactcenter_scheduler_job_runs",
            "Scheduler job runs by job and status (success, error, missed).",
            labels=["job", "status"],
        )
        for (job, status), count in sorted(self._jobs.items()):
            jobs.add_metric([job, status], count)
        yield jobs
        if self._store_errors:  # from the first failure on (keeps a healthy exposition short)
            store_errors = CounterMetricFamily(
                "contactcenter_store_errors",
                "Failed store operations (disk full, read-only, locked) by operation.",
                labels=["operation"],
            )
            for operation in sorted({"commit", "read", *self._store_errors}):
                store_errors.add_metric([operation], self._store_errors[operation])
            yield store_errors
        if self._webhooks:
            hooks = CounterMetricFamily(
                "contactcenter_webhook_requests",
                "Webhook requests by source and status (accepted, duplicate, unauthorized, ...).",
                labels=["source", "status"],
            )
            for (source, status), count in sorted(self._webhooks.items()):
                hooks.add_metric([source, status], count)
            yield hooks
        for name, (help_text, value) in sorted(self._extra.items()):
            yield GaugeMetricFamily(name, help_text, value=value)

    def _render(self) -> None:
        families = list(self._families())
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StaticCollector(families))
        body = generate_latest(registry)
        self._rendered = (body, gzip_member(body))
