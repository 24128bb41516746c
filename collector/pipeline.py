"""The one recompute pipeline: store rollups -> figures -> snapshot, as of a moment.

The serving runtime, the recompute worker process, `report` and `backfill` all call
`figures_at`; nothing else turns the store into figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from collector import __version__
from collector.config import Settings
from collector.costing import compute_figures, first_day_needed
from collector.metrics import Sample
from collector.pagefigures import PageFigures, page_figures
from collector.projection import arrivals_first_day, project_figures
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
    arrivals = store.arrivals(arrivals_first_day(moment, settings.tz, weeks), moment)
    samples += project_figures(settings, rollups, arrivals, moment, weeks)
    page = None
    if with_page:  # the stored contacts are counted within a time budget (storedcounts)
        page = page_figures(settings, samples, rollups, moment, stored_counts(store))
    duration = time.monotonic() - started
    return Figures(
        moment, samples, exporter_info(settings), clock(), duration, page, settings.metrics
    )
