"""The one recompute pipeline: store rollups -> figures -> snapshot, as of a moment.

The serving runtime, the recompute worker process, `report` and `backfill` all call
`figures_at`; nothing else turns the store into figures.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from collector import __version__
from collector.config import Settings
from collector.costing import compute_figures, first_day_needed
from collector.metrics import Sample
from collector.model import Arrival, Rollup
from collector.pagefigures import PageFigures, page_figures
from collector.projection import arrivals_days, profile_fingerprint, project_figures
from collector.series import MetricsSettings
from collector.snapshot import Snapshot, build_snapshot
from collector.store import Store
from collector.storedcounts import stored_counts


def exporter_info(settings: Settings) -> dict[str, str]:
    """The labels of `contactcenter_info`."""
    return {"currency": settings.currency, "timezone": settings.timezone, "version": __version__}


@dataclass(frozen=True)
class Figures:
    """All figures as of `moment`; the snapshot is rendered from them on first use."""

    moment: datetime
    samples: Sequence[Sample] = field(repr=False)
    info: dict[str, str]
    computed_at: float  # unix time the figures were ready, stamped on the snapshot
    duration: float  # seconds from reading the store to the figures (rendering excluded)
    page: PageFigures | None = field(default=None, repr=False)  # the landing page's figures
    # [metrics]: the periods and labels /metrics carries (samples and report keep them all)
    limits: MetricsSettings = field(default_factory=MetricsSettings, repr=False)

    @cached_property
    def snapshot(self) -> Snapshot:
        return build_snapshot(
            self.samples, self.info, self.computed_at, self.duration, self.page, self.limits
        )


# The profile weeks' arrivals per store: those days lie in the past, so they are read again
# only when their rollups change (a late export, a recomputed call), not on every tick; and
# while history is being ingested (they change every tick), a read that took d > 50 ms is
# not repeated within 10 x d, so the profile's query stays under a tenth of the time.
_Cached = tuple[tuple[object, ...], list[Arrival], float, float]  # key, arrivals, at, took
_ARRIVALS: weakref.WeakKeyDictionary[Store, _Cached] = weakref.WeakKeyDictionary()
_ARRIVALS_LOCK = threading.Lock()
_SLOW_READ = 0.05


def _profile_arrivals(
    store: Store, settings: Settings, moment: datetime, rollups: list[Rollup]
) -> list[Arrival]:
    first, last = arrivals_days(moment, settings.tz, settings.forecast.weeks)
    key = (first, last, settings.timezone, profile_fingerprint(rollups, first, last))
    with _ARRIVALS_LOCK:
        try:
            cached = _ARRIVALS.get(store)
        except TypeError:  # a store that cannot be weakly referenced: no cache
            cached = None
    started = time.monotonic()
    if cached is not None:
        old_key, arrivals, read_at, took = cached
        if old_key == key:
            return arrivals
        if old_key[:3] == key[:3] and took > _SLOW_READ and started - read_at < 10 * took:
            return arrivals
    arrivals = store.arrivals(first, last)
    took = time.monotonic() - started
    with _ARRIVALS_LOCK, contextlib.suppress(TypeError):
        _ARRIVALS[store] = (key, arrivals, started, took)
    return arrivals


def figures_at(
    store: Store,
    settings: Settings,
    moment: datetime,
    clock: Callable[[], float] = time.time,
    with_page: bool = False,
) -> Figures:
    """Read the rollups the windows of `moment` need and compute every figure.

    `moment` is taken in the configured zone; `clock` gives the wall-clock time stamped
    on the snapshot once the figures are ready (the exporter's clock, fixed in tests).
    `with_page`: also the landing page's figures (the serving exporter; not backfill).
    """
    started = time.monotonic()
    moment = moment.astimezone(settings.tz)
    rollups = store.rollups_as_of(first_day_needed(moment), moment)
    samples = compute_figures(settings, rollups, moment)
    weeks = settings.forecast.weeks
    arrivals = _profile_arrivals(store, settings, moment, rollups)
    samples += project_figures(settings, rollups, arrivals, moment, weeks)
    page = None
    if with_page:  # the stored contacts are counted within a time budget (storedcounts)
        page = page_figures(settings, samples, rollups, moment, stored_counts(store))
    duration = time.monotonic() - started
    return Figures(
        moment, samples, exporter_info(settings), clock(), duration, page, settings.metrics
    )
