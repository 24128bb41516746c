"""The immutable snapshot of all business gauges, and its exposition rendered exactly once."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from collector.metrics import (
    FIGURES,
    INFO,
    LAST_RECOMPUTE,
    RECOMPUTE_DURATION,
    Sample,
    render_family,
)
from collector.series import MetricsSettings, limit_series, limited_families

if TYPE_CHECKING:
    from collector.pagefigures import PageFigures


@dataclass(frozen=True)
class Snapshot:
    """Everything one recompute produced. Never mutated after it is built."""

    body: bytes = field(repr=False)  # the rendered exposition
    computed_at: float  # unix time the recompute finished
    duration: float  # seconds the recompute took
    series: int
    # gzip of `body`, made once with it. gzip members concatenate (RFC 1952), so /metrics
    # serves this followed by the health block's own member, compressing nothing per scrape.
    gzipped: bytes = field(default=b"", repr=False)
    # The landing page's figures, computed with the samples (None where nobody asked).
    page: PageFigures | None = field(default=None, repr=False)


class SnapshotHolder:
    """Holds the latest snapshot; swapping it is a single reference assignment."""

    def __init__(self) -> None:
        self.current: Snapshot | None = None

    def exposition(self, health: tuple[bytes, bytes], gzipped: bool) -> bytes:
        """The /metrics body: the snapshot's bytes, then the health block's (body, gzip)."""
        snapshot = self.current
        if gzipped:
            return (snapshot.gzipped if snapshot else b"") + health[1]
        return (snapshot.body if snapshot else b"") + health[0]


def build_snapshot(
    samples: Iterable[Sample],
    info: Mapping[str, str],
    computed_at: float,
    duration: float,
    page: PageFigures | None = None,
    limits: MetricsSettings | None = None,
) -> Snapshot:
    """Group samples into the declared figure families, add the exporter's own, render once.

    `limits` ([metrics]) leaves out periods and sums away dropped labels before rendering.
    """
    families = FIGURES if limits is None else limited_families(limits)
    if limits is not None:
        samples = limit_series(list(samples), limits)
    grouped: dict[str, list[tuple[Mapping[str, str], float]]] = {f.name: [] for f in FIGURES}
    for name, labels, value in samples:
        bucket = grouped.get(name)
        if bucket is None:
            raise ValueError(f"cost model produced an undeclared metric {name!r}")
        bucket.append((labels, value))
    parts = [
        render_family(family, grouped[family.name])
        for family in families
        if grouped[family.name] or not family.optional
    ]
    parts.append(render_family(INFO, [(info, 1.0)]))
    parts.append(render_family(RECOMPUTE_DURATION, [({}, duration)]))
    parts.append(render_family(LAST_RECOMPUTE, [({}, computed_at)]))
    series = sum(len(bucket) for bucket in grouped.values()) + 3
    body = "".join(parts).encode("utf-8")
    return Snapshot(body, computed_at, duration, series, gzip_member(body), page)


def gzip_member(body: bytes) -> bytes:
    """One gzip member; level 1 because it is made once per recompute and scraped often."""
    return gzip.compress(body, compresslevel=1, mtime=0)
