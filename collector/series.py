"""[metrics]: which periods, windows and labels the figures carry, and how many series that is.

A center with many queues multiplies series: contactcenter_cost alone is
periods x windows x channels x directions x queues x components. `[metrics]` leaves out
periods or windows (their series are not written) and labels of additive families (the
series that differed only in a left-out label are summed into one, so the parts still add
up). Ratios are computed before, from the full parts, and keep their labels: a ratio is
never averaged, and a label cannot be dropped from one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from collector.metrics import BY_NAME, FIGURES, MetricFamily, Sample
from collector.model import PERIODS, WINDOWS, PeriodName, WindowName

# Families whose series add up across any of their labels: counts, sums of seconds, money.
# A family not listed here (ratios, averages, thresholds, bands) keeps every label.
ADDITIVE: frozenset[str] = frozenset({
    "contactcenter_contacts",
    "contactcenter_contacts_abandoned",
    "contactcenter_cost",
    "contactcenter_cost_unallocated",
    "contactcenter_outcomes",
    "contactcenter_handle_time_seconds",
    "contactcenter_talk_time_seconds",
    "contactcenter_contacts_abandoned_short",
    "contactcenter_contacts_answered_in_threshold",
    "contactcenter_wait_seconds",
    "contactcenter_contacts_identified",
    "contactcenter_contacts_repeat",
    "contactcenter_contacts_projected",
    "contactcenter_cost_projected",
})
# The projection (collector.projection): only the current window of week .. year.
PROJECTED = frozenset({
    "contactcenter_contacts_projected",
    "contactcenter_cost_projected",
    "contactcenter_cost_per_contact_projected",
})
# Summing over these would add a day to its month: they are chosen with `periods`/`windows`.
NOT_DROPPABLE = ("period", "window")


class MetricsSettings(BaseModel):
    """`[metrics]`: the periods and windows written, and labels left out of additive families."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    periods: tuple[PeriodName, ...] = PERIODS
    windows: tuple[WindowName, ...] = WINDOWS
    # family name -> labels to leave out, e.g. {contactcenter_cost = ["component"]}
    drop_labels: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("periods", "windows")
    @classmethod
    def _not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one")
        if len(set(value)) != len(value):
            raise ValueError("names one twice")
        return value

    @model_validator(mode="after")
    def _droppable(self) -> MetricsSettings:
        for name, labels in self.drop_labels.items():
            family = BY_NAME.get(name)
            if family is None or family not in FIGURES:
                raise ValueError(f"drop_labels: {name!r} is not a figure family")
            if name not in ADDITIVE:
                raise ValueError(
                    f"drop_labels: {name} is a ratio or a setting, not a sum; it keeps its "
                    "labels (drop them from its parts, or leave the ratio to PromQL)"
                )
            for label in labels:
                if label in NOT_DROPPABLE:
                    raise ValueError(
                        f"drop_labels: {name} cannot leave out {label!r}; choose [metrics] "
                        "periods and windows instead"
                    )
                if label not in family.labels:
                    raise ValueError(
                        f"drop_labels: {name} has no label {label!r} (labels: "
                        f"{', '.join(family.labels)})"
                    )
        return self

    @property
    def is_default(self) -> bool:
        return (
            self.periods == PERIODS and self.windows == WINDOWS
            and not any(self.drop_labels.values())
        )


def limit_series(samples: Sequence[Sample], limits: MetricsSettings) -> Sequence[Sample]:
    """The samples `limits` keeps: other periods/windows left out, dropped labels summed.

    Order is kept (a merged series sits where its first part was), so the default settings
    give the very same exposition.
    """
    if limits.is_default:
        return samples
    periods, windows = set(limits.periods), set(limits.windows)
    drops = {name: frozenset(labels) for name, labels in limits.drop_labels.items() if labels}
    kept: list[Sample] = []
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for sample in samples:
        labels = sample.labels
        if ("period" in labels and labels["period"] not in periods) or (
            "window" in labels and labels["window"] not in windows
        ):
            continue
        drop = drops.get(sample.name)
        if drop is None:
            kept.append(sample)
            continue
        rest = {k: v for k, v in labels.items() if k not in drop}
        key = (sample.name, tuple(sorted(rest.items())))
        at = merged.get(key)
        if at is None:
            merged[key] = len(kept)
            kept.append(Sample(sample.name, rest, sample.value))
        else:
            kept[at] = Sample(sample.name, rest, kept[at].value + sample.value)
    return kept


def limited_labels(name: str, labels: Iterable[str], limits: MetricsSettings) -> tuple[str, ...]:
    """The label names family `name` is written with under `limits`."""
    drop = set(limits.drop_labels.get(name, ()))
    return tuple(label for label in labels if label not in drop)


def count_series(
    limits: MetricsSettings,
    slices: int,
    components: int,
    queues: int,
    outcomes: int,
    channels: int,
) -> dict[str, int]:
    """At most how many series each figure family has, per family name.

    `slices`: (channel, direction, queue) combinations the sources can produce;
    `components`: cost components in use; `queues`, `outcomes`, `channels`: distinct
    labels.
    A family's left-out labels are collapsed: without `queue` a slice family has one
    series per (channel, direction) instead (bounded by `slices`).
    """
    windows = len(limits.periods) * len(limits.windows)
    counts: dict[str, int] = {}
    per_label = {"component": components, "queue": queues, "outcome": outcomes,
                 "channel": channels, "direction": 2}
    for family in FIGURES:
        labels = limited_labels(family.name, family.labels, limits)
        slice_labels = [lb for lb in ("channel", "direction", "queue") if lb in family.labels]
        n = 1
        if len(slice_labels) == 3:
            kept = [lb for lb in slice_labels if lb in labels]
            n = min(slices, _product(per_label[lb] for lb in kept))  # all kept: `slices`
            rest = [lb for lb in labels if lb not in ("channel", "direction", "queue")]
        else:
            rest = list(labels)
        for label in rest:
            if label in ("period", "window"):
                continue
            n *= per_label.get(label, 1)
        if family.name in PROJECTED:  # week, month, quarter and year; current window only
            n *= len(set(limits.periods) - {"day"}) * ("current" in limits.windows)
        elif family.name == "contactcenter_period_open_elapsed_ratio":
            n = len(set(limits.periods) - {"day"})
        elif "period" in family.labels:
            n *= windows
        if family.name == "contactcenter_service_level_threshold_seconds":
            n = queues + 1  # one per queue with a wait, and queue="default"
        if family.name in ("contactcenter_benchmark_low", "contactcenter_benchmark_high"):
            n = channels + 1  # and channel="default"
        counts[family.name] = n
    counts.pop("contactcenter_open", None)  # only with [hours]; counted by the caller
    return counts


def _product(values: Iterable[int]) -> int:
    n = 1
    for v in values:
        n *= v
    return n


def limited_families(limits: MetricsSettings) -> tuple[MetricFamily, ...]:
    """The figure families with the label names `limits` writes them with."""
    if not any(limits.drop_labels.values()):
        return FIGURES
    return tuple(
        replace(f, labels=limited_labels(f.name, f.labels, limits)) if f.name in limits.drop_labels
        else f
        for f in FIGURES
    )
