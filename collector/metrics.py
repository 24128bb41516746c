"""The one list of metric families the exporter writes, and the one way to render them.

Every family has its name, type, HELP text and label names here and nowhere else: the
snapshot, the cost model's figure names, the health block, backfill's OpenMetrics file and
the tests all read this list. The order of each tuple is the order in the exposition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from prometheus_client.utils import floatToGoString as _untyped_go_float

# prometheus_client's own float formatting (Go's strconv), typed.
_go: Callable[[float], str] = _untyped_go_float

RECOMPUTED = " Recomputed every interval from the store, not at scrape time."


class Sample(NamedTuple):
    """One value of a declared family: metric name, labels, value."""

    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class MetricFamily:
    """One metric family: what a scraper sees in HELP and TYPE, and its label names."""

    name: str
    type: Literal["gauge", "counter"]
    help: str
    labels: tuple[str, ...] = ()
    # Left out entirely, HELP and TYPE too, while it has no sample (contactcenter_open
    # without [hours]), so a configuration without the feature exposes what it always did.
    optional: bool = False

    @property
    def exposed_name(self) -> str:
        """The name in the text format: counters carry `_total` on HELP, TYPE and samples."""
        return self.name + "_total" if self.type == "counter" else self.name


_PERIOD = ("period", "window")
_SLICE = ("period", "window", "channel", "direction", "queue")
_OUTCOME = ("period", "window", "queue", "outcome")


def _figure(name: str, help_text: str, labels: tuple[str, ...]) -> MetricFamily:
    return MetricFamily(name, "gauge", help_text + RECOMPUTED, labels)


# The cost model's figures (collector.allocation emits exactly these, in this order).
FIGURES: tuple[MetricFamily, ...] = (
    _figure("contactcenter_contacts", "Handled contacts in the period window.", _SLICE),
    _figure(
        "contactcenter_contacts_abandoned",
        "Contacts not handled (abandoned, unanswered, busy, failed) in the period window.",
        _SLICE,
    ),
    _figure(
        "contactcenter_cost",
        "Cost allocated to the period window's contacts, by cost component, in the "
        "configured currency.",
        (*_SLICE, "component"),
    ),
    _figure(
        "contactcenter_cost_unallocated",
        "Cost accrued in the period window that found no handled contact in its scope.",
        (*_PERIOD, "component"),
    ),
    _figure(
        "contactcenter_cost_per_contact",
        "Allocated cost divided by handled contacts. Absent when there are none.",
        _SLICE,
    ),
    _figure(
        "contactcenter_outcomes",
        "Handled contacts with an outcome (sale, lead, ...) in the period window.",
        _OUTCOME,
    ),
    _figure(
        "contactcenter_cost_per_outcome",
        "Cost of the queue's contacts divided by its outcomes. Absent when there are none.",
        _OUTCOME,
    ),
    _figure(
        "contactcenter_handle_time_seconds",
        "Sum of handle time (talk + hold + after-call work) of handled contacts.",
        _SLICE,
    ),
    _figure(
        "contactcenter_average_handle_time_seconds",
        "Handle time divided by handled contacts. Absent when there are none.",
        _SLICE,
    ),
    _figure(
        "contactcenter_talk_time_seconds",
        "Sum of talk time of handled contacts (handle time less hold and after-call work).",
        _SLICE,
    ),
    _figure(
        "contactcenter_contacts_abandoned_short",
        "Short abandons: contacts not handled whose wait was at most [service_level] "
        "short_abandon (inclusive); left out of abandonment and service level. 0 where no "
        "wait is known.",
        _SLICE,
    ),
    _figure(
        "contactcenter_contacts_answered_in_threshold",
        "Handled contacts whose wait was at most the queue's service-level threshold "
        "(inclusive). Absent for label sets whose contacts carry no wait.",
        _SLICE,
    ),
    _figure(
        "contactcenter_wait_seconds",
        "Sum of the wait (time in queue until a person answered) of handled contacts. "
        "Absent for label sets whose contacts carry no wait.",
        _SLICE,
    ),
    _figure(
        "contactcenter_average_speed_of_answer_seconds",
        "Average speed of answer = contactcenter_wait_seconds / contactcenter_contacts. "
        "Absent without handled contacts or without a known wait.",
        _SLICE,
    ),
    _figure(
        "contactcenter_service_level_ratio",
        "Service level = contactcenter_contacts_answered_in_threshold / (contactcenter_contacts "
        "+ contactcenter_contacts_abandoned - contactcenter_contacts_abandoned_short). Absent "
        "when the denominator is 0 or no wait is known.",
        _SLICE,
    ),
    _figure(
        "contactcenter_abandonment_ratio",
        "Abandonment = (contactcenter_contacts_abandoned - contactcenter_contacts_abandoned_short)"
        " / (contactcenter_contacts + contactcenter_contacts_abandoned - "
        "contactcenter_contacts_abandoned_short). Absent when the denominator is 0.",
        _SLICE,
    ),
    _figure(
        "contactcenter_contacts_identified",
        "Handled contacts that carry a customer key (the denominator of first contact "
        "resolution).",
        _SLICE,
    ),
    _figure(
        "contactcenter_contacts_repeat",
        "Repeats: handled contacts followed, within [fcr] window after their start "
        "(inclusive), by another contact of the same customer (any channel, any queue).",
        _SLICE,
    ),
    _figure(
        "contactcenter_first_contact_resolution_ratio",
        "First contact resolution = 1 - contactcenter_contacts_repeat / "
        "contactcenter_contacts_identified. Absent when no handled contact has a customer key.",
        _SLICE,
    ),
    _figure(
        "contactcenter_cost_per_resolution",
        "Cost per resolution = sum of contactcenter_cost / (contactcenter_contacts - "
        "contactcenter_contacts_repeat). Absent when the denominator is 0.",
        _SLICE,
    ),
    _figure(
        "contactcenter_benchmark_low",
        "Lower edge of the healthy cost-per-contact band for the channel.",
        ("channel",),
    ),
    _figure(
        "contactcenter_benchmark_high",
        "Upper edge of the healthy cost-per-contact band for the channel.",
        ("channel",),
    ),
    _figure(
        "contactcenter_service_level_threshold_seconds",
        "The service-level threshold ([service_level] threshold, per queue where set): one "
        "series per queue whose contacts carry a wait, and queue=\"default\".",
        ("queue",),
    ),
    _figure(
        "contactcenter_fcr_window_seconds",
        "The first-contact-resolution window ([fcr] window): a later contact of the same "
        "customer within it makes a handled contact a repeat.",
        (),
    ),
    _figure(
        "contactcenter_contacts_projected",
        "Handled contacts projected for the whole current period: those so far plus those "
        "expected over its remaining open hours from the weekday-and-hour profile of the last "
        "[forecast] weeks complete weeks.",
        _SLICE,
    ),
    _figure(
        "contactcenter_cost_projected",
        "Cost projected for the whole current period: its shared cost in full (from the "
        "configuration) allocated to the projected contacts, plus usage cost so far and at "
        "the current rate per contact for the expected ones.",
        _SLICE,
    ),
    _figure(
        "contactcenter_cost_per_contact_projected",
        "contactcenter_cost_projected / contactcenter_contacts_projected. Absent when no "
        "contact is projected.",
        _SLICE,
    ),
    _figure(
        "contactcenter_period_open_elapsed_ratio",
        "Share of the current period's open seconds (service hours; all seconds without "
        "[hours]) that has passed. Absent for a period with no open second.",
        ("period",),
    ),
    MetricFamily(
        "contactcenter_open",
        "gauge",
        "1 inside the configured service hours ([hours]), 0 outside (closed days, "
        "holidays). Absent without [hours], when the center is open around the clock."
        + RECOMPUTED,
        optional=True,
    ),
)
FIGURE_NAMES: tuple[str, ...] = tuple(f.name for f in FIGURES)

# Written with every snapshot, after the figures.
INFO = MetricFamily(
    "contactcenter_info",
    "gauge",
    "Exporter facts: currency of all money gauges, time zone of period boundaries.",
    ("currency", "timezone", "version"),
)
RECOMPUTE_DURATION = MetricFamily(
    "contactcenter_recompute_duration_seconds",
    "gauge",
    "How long the last recompute of all figures took.",
)
LAST_RECOMPUTE = MetricFamily(
    "contactcenter_last_recompute_timestamp_seconds",
    "gauge",
    "Unix time the figures were last recomputed.",
)
SNAPSHOT_OWN: tuple[MetricFamily, ...] = (INFO, RECOMPUTE_DURATION, LAST_RECOMPUTE)

# The health block (collector.health), rendered on change, in this order.
SOURCE_UP = MetricFamily(
    "contactcenter_source_up",
    "gauge",
    "1 if the source's last read succeeded, 0 if it failed (file missing, API error).",
    ("source",),
)
SOURCE_LAST_SUCCESS = MetricFamily(
    "contactcenter_source_last_success_timestamp_seconds",
    "gauge",
    "Unix time of the source's last successful read; 0 if it never succeeded.",
    ("source",),
)
SOURCE_LAST_RECORD = MetricFamily(
    "contactcenter_source_last_record_timestamp_seconds",
    "gauge",
    "Unix time the newest contact stored from the source started (read from the store, so it "
    "survives restarts); 0 if the source has stored none.",
    ("source",),
)
SOURCE_DURATION = MetricFamily(
    "contactcenter_source_duration_seconds",
    "gauge",
    "How long the source's last read took.",
    ("source",),
)
SOURCE_INTERVAL = MetricFamily(
    "contactcenter_source_interval_seconds",
    "gauge",
    "The source's configured read interval.",
    ("source",),
)
SOURCE_RECORDS = MetricFamily(
    "contactcenter_source_records",
    "counter",
    "New records stored from this source since the exporter started: contacts, or call "
    "legs for sources that write several records per call (contactcenter_contacts counts calls).",
    ("source",),
)
SOURCE_DUPLICATES = MetricFamily(
    "contactcenter_source_duplicate_records",
    "counter",
    "Records read again that were already stored (a re-read export, a redelivery), "
    "so not counted twice.",
    ("source",),
)
SOURCE_EXCLUDED = MetricFamily(
    "contactcenter_source_excluded_records",
    "counter",
    "Records left out on purpose, by reason: a configured exclusion (excluded_context, "
    "excluded_value) or a call's internal leg (internal_leg). Not contacts.",
    ("source", "reason"),
)
SOURCE_ROTATION_LOSSES = MetricFamily(
    "contactcenter_source_rotation_losses",
    "counter",
    "Times the source's file was rotated, truncated or replaced and the rest of its old "
    "content was not found (compressed at once, or moved where rotated_glob does not look): "
    "rows written after the previous read are lost, if there were any.",
    ("source",),
)
SOURCE_REJECTED = MetricFamily(
    "contactcenter_source_rejected_records",
    "counter",
    "Input records skipped because they could not be used, by reason.",
    ("source", "reason"),
)
SCHEDULER_JOB_RUNS = MetricFamily(
    "contactcenter_scheduler_job_runs",
    "counter",
    "Scheduler job runs by job and status (success, error, missed).",
    ("job", "status"),
)
STORE_ERRORS = MetricFamily(
    "contactcenter_store_errors",
    "counter",
    "Failed store operations (disk full, read-only, locked) by operation.",
    ("operation",),
)
WEBHOOK_REQUESTS = MetricFamily(
    "contactcenter_webhook_requests",
    "counter",
    "Webhook requests by source and status (accepted, duplicate, unauthorized, ...).",
    ("source", "status"),
)
# Process-level gauges set with HealthState.set_gauge; rendered last, sorted by name.
RELOAD_SUCCESSFUL = MetricFamily(
    "contactcenter_config_last_reload_successful",
    "gauge",
    "1 if the last configuration reload succeeded.",
)
RELOAD_SUCCESS_TIMESTAMP = MetricFamily(
    "contactcenter_config_last_reload_success_timestamp_seconds",
    "gauge",
    "Unix time of the last successful configuration reload.",
)
LEADER = MetricFamily(
    "contactcenter_leader",
    "gauge",
    "1 when this replica holds the leader lock and pulls sources, 0 on a follower; always 1 "
    "with a SQLite store.",
)
STORE_UP = MetricFamily(
    "contactcenter_store_up",
    "gauge",
    "1 when the last store operation succeeded, 0 after a storage failure (such as a lost "
    "PostgreSQL connection); the exporter keeps serving its last figures meanwhile.",
)
HEALTH: tuple[MetricFamily, ...] = (
    SOURCE_UP,
    SOURCE_LAST_SUCCESS,
    SOURCE_LAST_RECORD,
    SOURCE_DURATION,
    SOURCE_INTERVAL,
    SOURCE_RECORDS,
    SOURCE_REJECTED,
    SOURCE_DUPLICATES,
    SOURCE_EXCLUDED,
    SOURCE_ROTATION_LOSSES,
    SCHEDULER_JOB_RUNS,
    STORE_ERRORS,
    WEBHOOK_REQUESTS,
    RELOAD_SUCCESSFUL,
    RELOAD_SUCCESS_TIMESTAMP,
    LEADER,
    STORE_UP,
)

ALL: tuple[MetricFamily, ...] = (*FIGURES, *SNAPSHOT_OWN, *HEALTH)
BY_NAME: Mapping[str, MetricFamily] = {f.name: f for f in ALL}


def escape_label_value(value: str) -> str:
    """A label value inside double quotes, as the text format (and OpenMetrics) escape it."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value


def escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def render_labels(labels: Mapping[str, str]) -> str:
    """`{a="x",b="y"}` with names sorted, or "" when there are none."""
    if not labels:
        return ""
    return "{" + ",".join(
        f'{key}="{escape_label_value(value)}"' for key, value in sorted(labels.items())
    ) + "}"


def family_header(family: MetricFamily, help_text: str | None = None) -> str:
    name = family.exposed_name
    text = escape_help(family.help if help_text is None else help_text)
    return f"# HELP {name} {text}\n# TYPE {name} {family.type}\n"


def render_family(
    family: MetricFamily, samples: Iterable[tuple[Mapping[str, str], float]]
) -> str:
    """One family in the text exposition, byte for byte as prometheus_client writes it.

    generate_latest re-validates every label name of every sample; at 10k series that is
    about 100 ms of GIL-held work per recompute, during which scrapes wait. Label names
    here come from this list, so only values need escaping.
    """
    name = family.exposed_name
    keys = sorted(family.labels)  # the declared names; a sample must carry each of them
    out = [family_header(family)]
    append = out.append
    if keys:
        for labels, value in samples:
            rendered = ",".join([f'{k}="{escape_label_value(labels[k])}"' for k in keys])
            append(f"{name}{{{rendered}}} {_go(value)}\n")
    else:
        for _, value in samples:
            append(f"{name} {_go(value)}\n")
    return "".join(out)
