"""The running exporter: sources, store, health and the latest snapshot, and the two jobs."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.base import Adapter
from collector.config import ConfigError, Settings, load_settings
from collector.health import HealthState
from collector.model import Rejection
from collector.pipeline import figures_at
from collector.snapshot import Snapshot, SnapshotHolder
from collector.sources import build_adapters
from collector.store import SqliteStore, Store
from collector.worker import RecomputeWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration and the adapters built from it."""

    settings: Settings
    adapters: tuple[Adapter, ...]
    origin: str


def load_config(path: Path | str | None) -> LoadedConfig:
    """Validate the file, env overrides and every source's adapter settings; ConfigError if not."""
    settings = load_settings(path)
    origin = str(path) if path is not None else "environment"
    return LoadedConfig(settings, tuple(build_adapters(settings, origin)), origin)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class Exporter:
    """Owns the state the jobs and the HTTP server share. Jobs are plain methods."""

    def __init__(
        self,
        config: LoadedConfig,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.store: Store = store or SqliteStore(config.settings.store, config.settings.tz)
        self.health = HealthState()
        self.snapshots = SnapshotHolder()
        self._ran_once: set[str] = set()
        self._source_locks: dict[str, threading.Lock] = {}
        self._last_logged: dict[str, str] = {}
        self._retired: dict[str, list[Adapter]] = {}  # closed when their running read ends
        self._retired_lock = threading.Lock()
        self.on_initial_ingest_done: Callable[[], None] | None = None
        # Set by the server (`serve`): recompute in a worker process, off the serving GIL.
        self.worker: RecomputeWorker | None = None
        self._stopping = threading.Event()  # set on shutdown: ingest ends after its batch
        self._configure_health()

    # -- configuration -----------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.config.settings

    @property
    def adapters(self) -> dict[str, Adapter]:
        return {a.name: a for a in self.config.adapters}

    def _configure_health(self) -> None:
        self.health.configure(
            {
                a.name: self.settings.source_interval(a.settings).total_seconds()
                for a in self.config.adapters
            }
        )
        # The newest stored contact per source comes from the store: it survives restarts.
        for adapter in self.config.adapters:
            try:
                newest = self._store_call("read", self.store.newest_start, adapter.name)
            except sqlite3.Error:
                continue  # counted; the next committed batch sets it
            self.health.set_last_record(adapter.name, newest)

    def replace_config(self, config: LoadedConfig) -> None:
        """Swap in a new validated config (live reload). Stored contacts are kept."""
        old = self.config
        self.config = config
        self._configure_health()
        for adapter in old.adapters:
            # A read under way with the old adapter closes it when it ends; else close now.
            with self._retired_lock:
                self._retired.setdefault(adapter.name, []).append(adapter)
            lock = self._source_locks.setdefault(adapter.name, threading.Lock())
            if lock.acquire(blocking=False):
                lock.release()
                self._close_retired(adapter.name)

    def _close_retired(self, source: str) -> None:
        with self._retired_lock:
            retired = self._retired.pop(source, [])
        for adapter in retired:
            adapter.close()

    def request_stop(self) -> None:
        """Shutdown: a running ingest stops after the batch it is committing."""
        self._stopping.set()

    # -- jobs --------------------------------------------------------------------------------
    def ingest(self, source: str) -> int:
        """Read what is new from one source into the store. Never raises.

        Each batch is committed with its position, so a failure part-way keeps what was
        committed and the next run resumes after it.
        """
        adapter = self.adapters.get(source)
        if adapter is None:
            return 0
        lock = self._source_locks.setdefault(source, threading.Lock())
        if not lock.acquire(blocking=False):
            return 0  # still running from the last tick
        started = time.monotonic()
        stored = 0
        rejected: Counter[str] = Counter()
        try:
            position = self._store_call("read", self.store.position, source)
            for batch in adapter.pull(position):
                if self._stopping.is_set():
                    break  # shutting down: the batches committed so far stay, the rest waits
                stored += self._commit(source, batch.contacts, batch.rejections, batch.position)
                rejected.update(r.reason for r in batch.rejections)
                if batch.rejections:
                    self._log_rejections(source, batch.location, batch.rejections)
        except Exception as exc:  # noqa: BLE001 - a source never takes the exporter down
            message = _short(exc)
            self.health.record_run(
                source, False, self.clock(), time.monotonic() - started, message
            )
            if self._last_logged.get(source) != message:
                log.warning("source %s: read failed: %s", source, message)
                self._last_logged[source] = message
        else:
            self.health.record_run(source, True, self.clock(), time.monotonic() - started)
            if self._last_logged.pop(source, None):
                log.info("source %s: read succeeded again", source)
            if stored or rejected:
                log.info(
                    "source %s: stored %d new contacts, rejected %d records",
                    source,
                    stored,
                    sum(rejected.values()),
                )
        finally:
            lock.release()
            self._close_retired(source)
            self._note_first_run(source)
        return stored

    def _commit(
        self,
        source: str,
        contacts: list,  # type: ignore[type-arg]
        rejections: list[Rejection],
        position: str | None,
    ) -> int:
        stored: int = self._store_call("commit", self.store.commit, source, contacts, position)
        newest = self._store_call("read", self.store.newest_start, source) if stored else None
        self.health.record_batch(source, stored, rejections, newest)
        return stored

    def _store_call(self, operation: str, call: Callable[..., Any], *args: Any) -> Any:
        """Call the store; count a failure (disk full, read-only, locked) and re-raise it."""
        try:
            return call(*args)
        except sqlite3.Error:
            self.health.record_store_error(operation)
            raise

    def _log_rejections(self, source: str, location: str, rejections: list[Rejection]) -> None:
        reasons = Counter(r.reason for r in rejections)
        first = rejections[0]
        summary = ", ".join(f"{reason}={count}" for reason, count in sorted(reasons.items()))
        where = f"{location}:{first.line}" if location else f"line {first.line}"
        log.warning(
            "source %s: skipped %d bad records (%s); first at %s: %s",
            source,
            len(rejections),
            summary,
            where,
            first.detail or first.reason,
        )

    def _note_first_run(self, source: str) -> None:
        self._ran_once.add(source)
        first_time = self.snapshots.current is None and set(self.adapters) <= self._ran_once
        if first_time and self.on_initial_ingest_done is not None:
            self.on_initial_ingest_done()

    def recompute(self, now: datetime | None = None) -> Snapshot:
        """Build and publish a new snapshot of all figures as of `now`."""
        settings = self.settings
        moment = now or datetime.fromtimestamp(self.clock(), UTC)
        if self.worker is not None:
            rendered = self._store_call(
                "read", self.worker.render, settings, moment, self.clock()
            )
            snapshot = Snapshot(rendered.body, self.clock(), rendered.duration, rendered.series,
                                gzipped=rendered.gzipped)
        else:
            figures = self._store_call(
                "read", figures_at, self.store, settings, moment, self.clock
            )
            snapshot = figures.snapshot
        self.snapshots.current = snapshot
        return snapshot

    @property
    def ready(self) -> bool:
        return self.snapshots.current is not None

    def metrics_body(self, gzipped: bool = False) -> bytes:
        return self.snapshots.exposition(self.health.rendered, gzipped)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        for adapter in self.config.adapters:
            adapter.close()
        self.store.close()


def reload_check(old: Settings, new: Settings, origin: str) -> str | None:
    """Why `new` cannot replace `old` in a running exporter, or None.

    The store and its time zone are opened once: daily rollups are kept in local days, so
    changing either needs a restart (and, for the time zone, a new store).
    """
    if Path(new.store).resolve() != Path(old.store).resolve():
        return (f"{origin}: store: changed from {old.store} to {new.store}; "
                "a new store path needs a restart")
    if new.timezone != old.timezone:
        return (f"{origin}: timezone: changed from {old.timezone} to {new.timezone}; "
                "the store keeps local days in the old zone, so this needs a restart")
    return None


def load_reload(exporter: Exporter, path: Path | str | None) -> LoadedConfig:
    """The new config for a live reload, validated; ConfigError if it is refused."""
    config = load_config(path)
    problem = reload_check(exporter.settings, config.settings, config.origin)
    if problem:
        for adapter in config.adapters:
            adapter.close()
        raise ConfigError(problem)
    return config


def reload_config(exporter: Exporter, path: Path | str | None) -> str | None:
    """Re-read the config; on success swap it in, else keep the old one. Returns the error."""
    try:
        config = load_reload(exporter, path)
    except ConfigError as exc:
        return str(exc)
    exporter.replace_config(config)
    return None
