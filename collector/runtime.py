"""The running exporter: sources, store, health, the latest snapshot, the jobs and reload."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.base import Adapter
from collector import storelog
from collector.config import ConfigError, Settings, load_settings
from collector.health import HealthState
from collector.leader import SETTLE_SECONDS, LeaderLock
from collector.logsafe import describe_error, printable
from collector.metrics import LEADER, RELOAD_SUCCESS_TIMESTAMP, RELOAD_SUCCESSFUL
from collector.model import Batch, Rejection
from collector.pipeline import figures_at
from collector.snapshot import Snapshot, SnapshotHolder
from collector.sources import build_adapters
from collector.store import Committed, Store
from collector.storelog import error_line as error_line  # used by the scheduler, the cli
from collector.stores import STORE_ERRORS, NotLeader, open_store
from collector.webconfig import WebConfig, load_web_config
from collector.webhooks import WebhookReceiver
from collector.worker import RecomputeWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration and the adapters built from it."""

    settings: Settings
    adapters: tuple[Adapter, ...]
    origin: str


# A batch logs at most this many rejected records per reason, then one line with the rest.
REJECTIONS_LOGGED_PER_REASON = 3


def load_config(path: Path | str | None) -> LoadedConfig:
    """Validate the file, env overrides and every source's adapter settings; ConfigError if not.

    Whatever raises while validating (pydantic, or an adapter's own constructor, e.g. an
    unknown time zone), the caller gets one ConfigError line naming the file.
    """
    origin = str(path) if path is not None else "environment"
    try:
        settings = load_settings(path)
        return LoadedConfig(settings, tuple(build_adapters(settings, origin)), origin)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - every validation error is one config error line
        raise ConfigError(f"{origin}: {describe_error(exc)}") from None


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload did: applied (error None) or refused, keeping the last good config."""

    error: str | None
    sources: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


class Exporter:
    """Owns the state the jobs and the HTTP server share. Jobs are plain methods."""

    def __init__(
        self,
        config: LoadedConfig,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        web: WebConfig | None = None,
        leader: LeaderLock | None = None,
        *,
        one_shot: bool = False,
    ) -> None:
        """`store`, `leader`: given by tests; by default the configured store is opened
        (a STORE_ERRORS exception when it cannot be: the caller says so in one line) and,
        with a PostgreSQL store, a leader lock on the same database is made and polled.
        `one_shot` (report, whatif, backfill): the command takes the lock like a replica, so
        it pulls the sources only when no serving replica does (and hands the lock back
        when it ends), and otherwise reads the shared store the leader keeps up to date;
        its role is logged in a command's words, not a replica's."""
        self.config = config
        self.clock = clock
        self.store: Store = store or open_store(config.settings)
        self.health = HealthState()
        self.health.set_store_up(True)  # opened
        # Replicas sharing one PostgreSQL store: only the holder of the lock pulls sources.
        # With a SQLite store there is one exporter per store, always the leader.
        self._one_shot = one_shot
        if leader is None and config.settings.store_is_url:
            # The settle of a new leader stays a small part of the handover's two intervals.
            settle = min(SETTLE_SECONDS, config.settings.interval.total_seconds() / 4)
            leader = LeaderLock(str(config.settings.store), config.settings.store_password_value,
                                settle=settle)
        self.leader = leader
        # The gauge and the role's log lines follow the LeaderLock call that produced them.
        self._leader_mutex = threading.Lock()
        self._was_leader: bool | None = None
        self._leader_error: str | None = None
        set_fence = getattr(self.store, "set_fence", None)
        if leader is not None and callable(set_fence):
            set_fence(leader.fence_sql)  # a stale leader's pull commit is refused
        if leader is not None:
            leader.on_lost = self._leader_lost  # its watcher: the gauge drops at once
        self.health.set_gauge(LEADER.name, 1 if leader is None else 0)
        self.snapshots = SnapshotHolder()
        self.web = web or WebConfig()  # TLS, basic auth, headers: replaced whole on reload
        self.webhooks = self._webhook_receiver()
        # Called after a reload is applied (the server follows web/webhooks, the scheduler
        # reschedules); a listener that raises makes the reload count as failed.
        self.reload_listeners: list[Callable[[], None]] = []
        self._reload_lock = threading.Lock()
        self._ran_once: set[str] = set()
        self._source_locks: dict[str, threading.Lock] = {}
        self._last_logged: dict[str, str] = {}
        self._retired: dict[str, list[Adapter]] = {}  # closed when their running read ends
        self._retired_lock = threading.Lock()
        self.on_initial_ingest_done: Callable[[], None] | None = None
        # Called with the source and each batch once it is committed (progress bars).
        self.on_batch: Callable[[str, Batch], None] | None = None
        # Set by the server (`serve`): recompute in a worker process, off the serving GIL.
        self.worker: RecomputeWorker | None = None
        self._stopping = threading.Event()  # set on shutdown: ingest ends after its batch
        self._configure_health()
        self.poll_leader()  # before the first ingest: a follower pulls nothing from the start

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
            self.health.expect_exclusions(adapter.name, type(adapter).exclusion_reasons)
            try:
                newest = self._store_call("read", self.store.newest_start, adapter.name)
            except STORE_ERRORS:
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

    def _webhook_receiver(self) -> WebhookReceiver:
        return WebhookReceiver(self.settings, list(self.config.adapters), self.store, self.health)

    def started(self) -> None:
        """Serving with the configuration loaded at start-up: the reload gauges begin at 1."""
        self.health.set_gauge(RELOAD_SUCCESSFUL.name, 1)
        self.health.set_gauge(RELOAD_SUCCESS_TIMESTAMP.name, self.clock())

    def reload(
        self, path: Path | str | None, web_path: Path | str | None = None
    ) -> ReloadOutcome:
        """Re-read the config and the web config; apply both or neither. Never raises.

        Used by SIGHUP and POST /-/reload alike. A refused reload keeps the last good
        configuration, logs one line with the reason and sets the reload gauge to 0.
        """
        with self._reload_lock:
            try:
                outcome = self._reload(path, web_path)
            except Exception as exc:  # noqa: BLE001 - a reload never takes the service down
                # Raised while applying (a listener): the new config may be partly in force.
                outcome = ReloadOutcome(describe_error(exc))
                log.error("reload failed while applying the new config: %s", outcome.error)
            self.health.set_gauge(RELOAD_SUCCESSFUL.name, 1 if outcome.ok else 0)
            if outcome.ok:
                self.health.set_gauge(RELOAD_SUCCESS_TIMESTAMP.name, self.clock())
            return outcome

    def _reload(self, path: Path | str | None, web_path: Path | str | None) -> ReloadOutcome:
        try:
            new_web = load_web_config(web_path)
            new_config = load_config(path)
        except Exception as exc:  # noqa: BLE001 - any validation error refuses the reload
            reason = str(exc) if isinstance(exc, ConfigError) else (
                f"{web_path}: {describe_error(exc)}")  # load_config raises ConfigError only
            log.error("reload refused, keeping the last good config: %s", reason)
            return ReloadOutcome(reason)
        problem = reload_check(self.settings, new_config.settings, new_config.origin)
        if problem:
            for adapter in new_config.adapters:
                adapter.close()
            log.error("reload refused, keeping the last good config: %s", problem)
            return ReloadOutcome(problem)
        self.replace_config(new_config)
        self.web = new_web
        self.webhooks = self._webhook_receiver()
        for listener in self.reload_listeners:
            listener()
        log.info("configuration reloaded from %s, %d source(s)", new_config.origin,
                 len(new_config.adapters))
        return ReloadOutcome(None, len(new_config.adapters))

    def request_stop(self) -> None:
        """Shutdown: a running ingest stops after the batch it is committing."""
        self._stopping.set()

    # -- leadership --------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        """Whether this replica pulls sources (always, with a SQLite store)."""
        return self.leader is None or self.leader.is_leader

    def poll_leader(self) -> bool:
        """Keep or try to take the leader lock (the leader job, every interval). Never raises."""
        return self._ask_leader(lambda lock: lock.poll())

    def _verify_leader(self) -> bool:
        """Before a pull: whether the lock is still held, asked of the server."""
        return self._ask_leader(lambda lock: lock.verify())

    def _ask_leader(self, ask: Callable[[LeaderLock], bool]) -> bool:
        """Ask the lock (poll or verify) under the leader mutex, then note a change of role."""
        if self.leader is None:
            return True
        with self._leader_mutex:
            leading = ask(self.leader)
            self._leadership_changed(leading, self.leader.error)
        return leading

    def _leader_lost(self) -> None:
        """The lock's watcher found the session gone between polls (pg_terminate_backend,
        a vanished server): the gauge goes to 0 and the change is logged, now."""
        if self.leader is None:
            return
        with self._leader_mutex:
            self._leadership_changed(self.leader.is_leader, self.leader.error)

    def _leadership_changed(self, leading: bool, error: str | None) -> None:
        """The gauge, and one log line per change of role or of the lock's connection error
        (called holding the leader mutex)."""
        self.health.set_gauge(LEADER.name, 1 if leading else 0)
        if error != self._leader_error:
            self._leader_error = error
            if error is not None:
                log.warning("leader lock: %s; not pulling sources until it is back", error)
        if leading == self._was_leader:
            return
        first = self._was_leader is None
        self._was_leader = leading
        if self._one_shot:
            if leading:
                log.info("leader lock taken: no serving replica pulls the sources now, so this "
                         "command reads them itself (the lock is handed back when it ends)")
            else:
                log.info("another exporter holds the leader lock and pulls the sources; this "
                         "command reads the shared store only")
        elif leading:
            log.info("leader: this replica holds the leader lock and pulls the sources")
        elif first:
            log.info("follower: another replica holds the leader lock (or it cannot be taken "
                     "yet); this one serves webhooks and figures and pulls no source")
        else:
            log.warning("leader lock lost: this replica stops pulling sources; another "
                        "replica takes over at its next poll")

    # -- jobs --------------------------------------------------------------------------------
    def ingest(self, source: str) -> int:
        """Read what is new from one source into the store. Never raises.

        Each batch is committed with its position, so a failure part-way keeps what was
        committed and the next run resumes after it. Only the leader pulls: a follower (or a
        leader whose lock is gone) reads nothing, and a pull whose commit is refused because
        the lock was lost meanwhile stops there, its batch left for the new leader.
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
            if not self._verify_leader():
                return 0  # a follower: the leader pulls (finally: readiness still comes)
            position = self._store_call("read", self.store.position, source)
            for batch in adapter.pull(position):
                if self._stopping.is_set():
                    break  # shutting down: the batches committed so far stay, the rest waits
                stored += self._commit(source, batch)
                if self.on_batch is not None:
                    self.on_batch(source, batch)
                rejected.update(r.reason for r in batch.rejections)
                if batch.rejections:
                    self._log_rejections(source, batch.location, batch.rejections)
                if batch.rotation_losses:
                    log.warning(
                        "source %s: %s was rotated or truncated and the rest of its old "
                        "content was not found: rows written after the previous read are "
                        "lost, if there were any (see rotated_glob in the README)",
                        source,
                        printable(batch.location or "the file"),
                    )
        except NotLeader:
            # Not the source's fault: the lock's session ended while this pull ran, so the
            # batch was rolled back and the next leader reads it from the stored position.
            log.warning("source %s: lost leadership, stopping this pull (new records it "
                        "stored: %d); the next leader reads on from the stored position",
                        source, stored)
            self._verify_leader()
        except Exception as exc:  # noqa: BLE001 - a source never takes the exporter down
            message = describe_error(exc)
            self.health.record_run(
                source, False, self.clock(), time.monotonic() - started, message
            )
            # A store outage is logged once by _store_call, not per source and run.
            if not storelog.reported(exc) and self._last_logged.get(source) != message:
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

    def _commit(self, source: str, batch: Batch) -> int:
        """Commit one batch (contacts, or call legs the store merges per call)."""
        committed: Committed = self._store_call(
            "commit", self.store.commit_records, source, batch.contacts, batch.legs,
            batch.position, *((batch.queue_calls,) if batch.queue_calls else ()),
        )
        stored = committed.records
        newest = self._store_call("read", self.store.newest_start, source) if stored else None
        self.health.record_batch(
            source, stored, batch.rejections, newest, committed.duplicates, batch.excluded,
            batch.rotation_losses,
        )
        return stored

    def _store_call(self, operation: str, call: Callable[..., Any], *args: Any) -> Any:
        """Call the store; count a failure (disk full, read-only, locked, the PostgreSQL
        connection lost) and re-raise it. contactcenter_store_up follows the last call.

        An outage is logged twice: its first failure and the first success after it; the
        failures between are counted (contactcenter_store_errors_total) and not logged
        again, here or by the job or source that saw them (collector.storelog)."""
        try:
            result = call(*args)
        except STORE_ERRORS as exc:
            storelog.store_failed(exc, operation, self.health.record_store_error(operation))
            raise
        if self.health.set_store_up(True):
            storelog.store_back()
        return result

    def _log_rejections(self, source: str, location: str, rejections: list[Rejection]) -> None:
        """The one log of rejected records: one line each, at most a few per reason a batch.

        Each line names the source, the file or URL and the line or item number, and the
        reason; the rest of a reason's records in the batch are one summary line. The
        counts are all in contactcenter_source_rejected_records_total.
        """
        by_reason: dict[str, list[Rejection]] = {}
        for rejection in rejections:
            by_reason.setdefault(rejection.reason, []).append(rejection)
        where = printable(location) if location else "input"
        for reason, found in sorted(by_reason.items()):
            for rejection in found[:REJECTIONS_LOGGED_PER_REASON]:
                at = f"{where}:{rejection.line}" if rejection.line else where
                log.warning(
                    "source %s: rejected record at %s, reason %s: %s",
                    source,
                    at,
                    printable(reason, 40),
                    printable(rejection.detail or reason),
                )
            rest = len(found) - REJECTIONS_LOGGED_PER_REASON
            if rest > 0:
                log.warning(
                    "source %s: %d more records in %s rejected with reason %s",
                    source,
                    rest,
                    where,
                    printable(reason, 40),
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
                                gzipped=rendered.gzipped, page=rendered.page)
        else:
            figures = self._store_call(
                "read", figures_at, self.store, settings, moment, self.clock, True
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
        """Stop: the worker, the adapters, the leader lock (handed over at once), the store."""
        if self.worker is not None:
            self.worker.close()
        for adapter in self.config.adapters:
            adapter.close()
        if self.leader is not None:
            # Not under the leader mutex: close() joins the lock's watcher, which may be
            # waiting for that mutex in _leader_lost. The lock serialises its own calls.
            self.leader.close()
            with self._leader_mutex:
                self.health.set_gauge(LEADER.name, 0)
        self.store.close()


def store_failure(settings: Settings, exc: BaseException) -> str:
    """One line for a store that cannot be opened at start-up: where, and why (a store URL
    never holds a password, and libpq never echoes one)."""
    reason = error_line(exc)
    where = printable(settings.store)
    if where in reason:  # StoreUnavailable names the URL itself
        return f"cannot open the store: {reason}"
    return f"cannot open the store {where}: {reason}"


def reload_check(old: Settings, new: Settings, origin: str) -> str | None:
    """Why `new` cannot replace `old` in a running exporter, or None.

    The store and its time zone are opened once: daily rollups are kept in local days, so
    changing either needs a restart (and, for the time zone, a new store). A PostgreSQL
    URL is compared as written, a SQLite path as the file it names.
    """
    if _store_identity(new.store) != _store_identity(old.store):
        return (f"{origin}: store: changed from {old.store} to {new.store}; "
                "a new store needs a restart")
    if new.store_password != old.store_password:  # compared, never shown
        return (f"{origin}: store_password: changed; the store's connections keep the one "
                "they were opened with, so this needs a restart")
    if new.timezone != old.timezone:
        return (f"{origin}: timezone: changed from {old.timezone} to {new.timezone}; "
                "the store keeps local days in the old zone, so this needs a restart")
    if new.kpi_definitions != old.kpi_definitions or new.customer_key != old.customer_key:
        return (f"{origin}: service_level/fcr: changed; the store rolls up service level and "
                "repeats (and keys customers) by them, so this needs a restart")
    return None


def _store_identity(store: Path | str) -> str:
    """What a `store` setting names: the URL itself, or the SQLite file's absolute path."""
    return store if isinstance(store, str) else str(Path(store).resolve())
