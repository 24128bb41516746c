"""Self-metrics: each source's health and the scheduler's job outcomes, rendered on change."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from collector.metrics import (
    BY_NAME,
    SCHEDULER_JOB_RUNS,
    SOURCE_DUPLICATES,
    SOURCE_DURATION,
    SOURCE_EXCLUDED,
    SOURCE_INTERVAL,
    SOURCE_LAST_RECORD,
    SOURCE_LAST_SUCCESS,
    SOURCE_RECORDS,
    SOURCE_REJECTED,
    SOURCE_ROTATION_LOSSES,
    SOURCE_UP,
    STORE_ERRORS,
    STORE_UP,
    WEBHOOK_REQUESTS,
    render_family,
)
from collector.model import Rejection
from collector.snapshot import gzip_member


@dataclass
class SourceState:
    """What is known about one source's latest runs."""

    interval_seconds: float
    up: int = 0
    last_success: float = 0.0
    last_duration: float = 0.0
    records: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    rotation_losses: int = 0  # rotations whose old content was not found
    last_error: str = ""
    last_run: float = 0.0
    last_record: float = 0.0  # start of the newest stored contact; 0 when none


# Rejected API records remembered per source, so a re-read one is not counted again.
MAX_REMEMBERED_REJECTIONS = 10_000


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
        self._extra: dict[str, float] = {}
        self._store_errors: Counter[str] = Counter()
        self._seen_rejections: dict[str, OrderedDict[tuple[str, str], None]] = {}
        self._rendered = (b"", gzip_member(b""))
        self._render()

    # -- updates ---------------------------------------------------------------------------
    def configure(self, intervals: dict[str, float]) -> None:
        """Set the configured sources; keep counters of sources that stay (reload)."""
        with self._lock:
            for name in list(self._sources):
                if name not in intervals:
                    del self._sources[name]
                    self._seen_rejections.pop(name, None)
            for name, interval in intervals.items():
                state = self._sources.setdefault(name, SourceState(interval))
                state.interval_seconds = interval
            self._render()

    def expect_exclusions(self, source: str, reasons: Iterable[str]) -> None:
        """Start the source's excluded-records counters at 0 for the reasons it may use."""
        with self._lock:
            state = self._sources.get(source)
            if state is None:
                return
            for reason in reasons:
                state.excluded.setdefault(reason, 0)
            self._render()

    def record_batch(
        self,
        source: str,
        accepted: int,
        rejections: Iterable[Rejection],
        newest: float | None = None,
        duplicates: int = 0,
        excluded: Iterable[Rejection] = (),
        rotation_losses: int = 0,
    ) -> None:
        """A committed batch; `newest`: the start of the newest contact it stored, if known."""
        with self._lock:
            state = self._sources.get(source)
            if state is None:
                return
            state.records += accepted
            state.duplicates += duplicates
            state.excluded.update(r.reason for r in excluded)
            state.rotation_losses += rotation_losses
            state.rejected.update(r.reason for r in self._first_seen(source, rejections))
            if newest is not None:
                state.last_record = max(state.last_record, newest)
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

    def _first_seen(self, source: str, rejections: Iterable[Rejection]) -> list[Rejection]:
        """The rejections not counted before: a record's (reason, fingerprint) counts once.

        An API adapter re-reads its overlap window on every poll; without this, one bad
        record would be counted again each time and the rejected-records alert never settle.
        The memory is bounded (least recently seen forgotten first).
        """
        seen = self._seen_rejections.setdefault(source, OrderedDict())
        fresh: list[Rejection] = []
        for rejection in rejections:
            if rejection.record:
                key = (rejection.reason, rejection.record)
                if key in seen:
                    seen.move_to_end(key)
                    continue
                seen[key] = None
                if len(seen) > MAX_REMEMBERED_REJECTIONS:
                    seen.popitem(last=False)
            fresh.append(rejection)
        return fresh

    def set_last_record(self, source: str, newest: float | None) -> None:
        """The start of the source's newest stored contact, as read from the store."""
        with self._lock:
            state = self._sources.get(source)
            if state is None:
                return
            state.last_record = newest or 0.0
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

    def record_store_error(self, operation: str) -> bool:
        """A store write or read failed (disk full, read-only, locked, connection lost):
        counted, and contactcenter_store_up is 0 until a store call succeeds. Whether it
        was up until now (the outage's first failure: log it). Never raises."""
        try:
            with self._lock:
                first = self._extra.get(STORE_UP.name) != 0
                self._store_errors[operation] += 1
                self._extra[STORE_UP.name] = 0
                self._render()
        except Exception:  # noqa: BLE001 - called from error paths
            return False
        return first

    def set_store_up(self, up: bool) -> bool:
        """contactcenter_store_up after a store call; re-renders only when it changes.
        Whether it changed from the other value (set up after a failure: log it)."""
        value = 1 if up else 0
        if self._extra.get(STORE_UP.name) == value:  # the common case: no lock, no render
            return False
        with self._lock:
            before = self._extra.get(STORE_UP.name)
            self._extra[STORE_UP.name] = value
            self._render()
        return before is not None and before != value

    def set_gauge(self, name: str, value: float) -> None:
        """A process-level gauge declared in collector.metrics, e.g. the last reload's outcome."""
        if BY_NAME.get(name) is None or BY_NAME[name].labels or BY_NAME[name].type != "gauge":
            raise ValueError(f"{name!r} is not a declared gauge without labels")
        with self._lock:
            if self._extra.get(name) != value:  # the leader gauge is set on every poll
                self._extra[name] = value
                self._render()

    # -- reads -----------------------------------------------------------------------------
    def sources(self) -> dict[str, SourceState]:
        with self._lock:
            return {
                name: SourceState(
                    **{**s.__dict__, "rejected": Counter(s.rejected),
                       "excluded": Counter(s.excluded)}
                )
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
    def _blocks(self) -> Iterator[str]:
        sources = sorted(self._sources.items())
        yield render_family(SOURCE_UP, [({"source": n}, s.up) for n, s in sources])
        yield render_family(
            SOURCE_LAST_SUCCESS, [({"source": n}, s.last_success) for n, s in sources]
        )
        yield render_family(
            SOURCE_LAST_RECORD, [({"source": n}, s.last_record) for n, s in sources]
        )
        yield render_family(SOURCE_DURATION, [({"source": n}, s.last_duration) for n, s in sources])
        yield render_family(
            SOURCE_INTERVAL, [({"source": n}, s.interval_seconds) for n, s in sources]
        )
        yield render_family(SOURCE_RECORDS, [({"source": n}, s.records) for n, s in sources])
        yield render_family(
            SOURCE_REJECTED,
            [
                ({"source": n, "reason": reason}, count)
                for n, s in sources
                for reason, count in sorted(s.rejected.items())
            ],
        )
        yield render_family(SOURCE_DUPLICATES, [({"source": n}, s.duplicates) for n, s in sources])
        yield render_family(
            SOURCE_EXCLUDED,
            [
                ({"source": n, "reason": reason}, count)
                for n, s in sources
                for reason, count in sorted(s.excluded.items())
            ],
        )
        yield render_family(
            SOURCE_ROTATION_LOSSES, [({"source": n}, s.rotation_losses) for n, s in sources]
        )
        yield render_family(
            SCHEDULER_JOB_RUNS,
            [
                ({"job": job, "status": status}, n)
                for (job, status), n in sorted(self._jobs.items())
            ],
        )
        if self._store_errors:  # from the first failure on (keeps a healthy exposition short)
            yield render_family(
                STORE_ERRORS,
                [
                    ({"operation": operation}, self._store_errors[operation])
                    for operation in sorted({"commit", "read", *self._store_errors})
                ],
            )
        if self._webhooks:
            yield render_family(
                WEBHOOK_REQUESTS,
                [
                    ({"source": source, "status": status}, n)
                    for (source, status), n in sorted(self._webhooks.items())
                ],
            )
        for name, value in sorted(self._extra.items()):
            yield render_family(BY_NAME[name], [({}, value)])

    def _render(self) -> None:
        body = "".join(self._blocks()).encode("utf-8")
        self._rendered = (body, gzip_member(body))
