"""Recompute in a worker process, so the figures' CPU work never holds the server's GIL.

At 10k series one recompute is about 100 ms of pure-Python work (rollups, allocation,
rendering). In the serving process that work holds the GIL, and every scrape that arrives
meanwhile waits for it. The worker reads the store through its own read-only connection
and sends back only the rendered exposition.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from collector.config import Settings
from collector.pagefigures import PageFigures
from collector.pipeline import figures_at
from collector.store import Store
from collector.stores import open_store

log = logging.getLogger(__name__)

# One read-only store per worker process, reused across recomputes (a PostgreSQL store
# reconnects by itself after a lost connection).
_stores: dict[tuple[str, str], Store] = {}


@dataclass(frozen=True)
class Rendered:
    """What the worker sends back: the exposition bytes and a few facts about them."""

    body: bytes
    gzipped: bytes
    series: int
    duration: float
    page: PageFigures | None = None  # the landing page's figures


def figures_body(settings: Settings, moment: datetime, computed_at: float) -> Rendered:
    """Runs in the worker: the pipeline over a read-only store, sent back as bytes."""
    where = settings.store if isinstance(settings.store, str) else str(
        Path(settings.store).resolve())
    key = (where, settings.timezone)
    store = _stores.get(key)
    if store is None:
        store = _stores[key] = open_store(settings, readonly=True)
    figures = figures_at(store, settings, moment, lambda: computed_at, with_page=True)
    snapshot = figures.snapshot
    return Rendered(snapshot.body, snapshot.gzipped, snapshot.series, figures.duration,
                    figures.page)


def init_worker() -> None:
    """Runs first in the worker. Ctrl-C reaches the whole foreground process group, but
    only the serving process acts on it; the worker exits when that process shuts the pool
    down (no KeyboardInterrupt traceback from the worker), or at once if that process is
    gone without a word (kill -9), instead of lingering with its store open."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_with, args=(parent.sentinel,), name="parent-watch", daemon=True
        ).start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])  # readable once the parent has exited
    os._exit(0)


class RecomputeWorker:
    """A single spawned worker process; rebuilt once if it dies."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the serving process has threads and an open SQLite handle.
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker,
            )
        return self._pool

    def render(self, settings: Settings, moment: datetime, computed_at: float) -> Rendered:
        try:
            return self._executor().submit(figures_body, settings, moment, computed_at).result()
        except BrokenProcessPool:
            log.warning("recompute worker died; starting a new one")
            self.close()
            return self._executor().submit(figures_body, settings, moment, computed_at).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
