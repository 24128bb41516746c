"""The immutable snapshot of all business gauges, and its exposition rendered exactly once."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString as _untyped_go_float

_RECOMPUTED = " Recomputed every interval from the store, not at scrape time."
_PERIOD = ["period", "window"]
_SLICE = ["period", "window", "channel", "direction", "queue"]

# name -> (help, label names). The order here is the order in the exposition.
METRICS: dict[str, tuple[str, list[str]]] = {
    "contactcenter_contacts": ("Handled contacts in the period window.", _SLICE),
    "contactcenter_contacts_abandoned": (
        "Contacts not handled (abandoned, unanswered, busy, failed) in the period window.",
        _SLICE,
    ),
    "contactcenter_cost": (
        "Cost allocated to the period window's contacts, by cost component, in the "
        "configured currency.",
        [*_SLICE, "component"],
    ),
    "contactcenter_cost_unallocated": (
        "Cost accrued in the period window that found no handled contact in its scope.",
        [*_PERIOD, "component"],
    ),
    "contactcenter_cost_per_contact": (
        "Allocated cost divided by handled contacts. Absent when there are none.",
        _SLICE,
    ),
    "contactcenter_outcomes": (
        "Handled contacts with an outcome (sale, lead, ...) in the period window.",
        ["period", "window", "queue", "outcome"],
    ),
    "contactcenter_cost_per_outcome": (
        "Cost of the queue's contacts divided by its outcomes. Absent when there are none.",
        ["period", "window", "queue", "outcome"],
    ),
    "contactcenter_handle_time_seconds": (
        "Sum of handle time (talk + hold + after-call work) of handled contacts.",
        _SLICE,
    ),
    "contactcenter_average_handle_time_seconds": (
        "Handle time divided by handled contacts. Absent when there are none.",
        _SLICE,
    ),
    "contactcenter_talk_time_seconds": (
        "Sum of talk time of handled contacts (handle time less hold and after-call work).",
        _SLICE,
    ),
    "contactcenter_benchmark_low": (
        "Lower edge of the healthy cost-per-contact band for the channel.",
        ["channel"],
    ),
    "contactcenter_benchmark_high": (
        "Upper edge of the healthy cost-per-contact band for the channel.",
        ["channel"],
    ),
}


class SampleLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def labels(self) -> dict[str, str]: ...

    @property
    def value(self) -> float: ...


@dataclass(frozen=True)
class Snapshot:
    """Everything one recompute produced. Never mutated after it is built."""

    body: bytes = field(repr=False)  # the rendered exposition
    computed_at: float  # unix time the recompute finished
    duration: float  # seconds the recompute took
    series: int
    built: tuple[Metric, ...] | None = field(default=None, repr=False)
    # gzip of `body`, made once with it. gzip members concatenate (RFC 1952), so /metrics
    # serves this followed by the health block's own member, compressing nothing per scrape.
    gzipped: bytes = field(default=b"", repr=False)

    @cached_property
    def families(self) -> tuple[Metric, ...]:
        """The gauge families; parsed back from the body when a worker process rendered it."""
        if self.built is not None:
            return self.built
        return tuple(text_string_to_metric_families(self.body.decode("utf-8")))


class SnapshotCollector:
    """A prometheus_client collector whose collect() only reads the current snapshot."""

    def __init__(self, holder: SnapshotHolder) -> None:
        self._holder = holder

    def collect(self) -> Iterator[Metric]:
        snapshot = self._holder.current
        return iter(snapshot.families if snapshot else ())

    def describe(self) -> Iterator[Metric]:
        return iter(())


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
    samples: Iterable[SampleLike],
    info: dict[str, str],
    computed_at: float,
    duration: float,
) -> Snapshot:
    """Group samples into gauge families, add the exporter's own gauges, render once."""
    families: dict[str, GaugeMetricFamily] = {}
    for name, (help_text, labels) in METRICS.items():
        families[name] = GaugeMetricFamily(name, help_text + _RECOMPUTED, labels=labels)
    for sample in samples:
        family = families.get(sample.name)
        if family is None:
            raise ValueError(f"cost model produced an undeclared metric {sample.name!r}")
        labels = METRICS[sample.name][1]
        family.add_metric([sample.labels[label] for label in labels], sample.value)
    info_family = GaugeMetricFamily(
        "contactcenter_info",
        "Exporter facts: currency of all money gauges, time zone of period boundaries.",
        labels=sorted(info),
    )
    info_family.add_metric([info[k] for k in sorted(info)], 1)
    recompute = GaugeMetricFamily(
        "contactcenter_recompute_duration_seconds",
        "How long the last recompute of all figures took.",
        value=duration,
    )
    last = GaugeMetricFamily(
        "contactcenter_last_recompute_timestamp_seconds",
        "Unix time the figures were last recomputed.",
        value=computed_at,
    )
    ordered = (*families.values(), info_family, recompute, last)
    series = sum(len(f.samples) for f in ordered)
    body = render_gauges(ordered)
    return Snapshot(body, computed_at, duration, series, ordered, gzip_member(body))


def gzip_member(body: bytes) -> bytes:
    """One gzip member; level 1 because it is made once per recompute and scraped often."""
    return gzip.compress(body, compresslevel=1, mtime=0)


def _go_float(value: float) -> str:
    """A value as Go's strconv writes it, which is what Prometheus parsers expect."""
    return str(_untyped_go_float(value))  # type: ignore[no-untyped-call]


def _escape_label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value


def render_gauges(families: Iterable[Metric]) -> bytes:
    """The text exposition of gauge families, byte for byte as generate_latest writes it.

    generate_latest re-validates every label name of every sample; at 10k series that is
    about 100 ms of GIL-held work per recompute, during which scrapes wait. Our label names
    are fixed in METRICS, so only values need escaping.
    """
    out: list[str] = []
    for family in families:
        if family.type != "gauge":
            raise ValueError(f"render_gauges renders gauges only, not {family.type} {family.name}")
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {family.name} {help_text}\n# TYPE {family.name} gauge\n")
        for sample in family.samples:
            if sample.labels:
                labels = ",".join(
                    f'{key}="{_escape_label_value(value)}"'
                    for key, value in sorted(sample.labels.items())
                )
                out.append(f"{sample.name}{{{labels}}} {_go_float(sample.value)}\n")
            else:
                out.append(f"{sample.name} {_go_float(sample.value)}\n")
    return "".join(out).encode("utf-8")


class StaticCollector:
    """A collector over families built beforehand: collect() only hands them out."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = tuple(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)

    def describe(self) -> Iterator[Metric]:
        return iter(())
