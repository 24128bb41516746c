"""--config.check: every problem of a configuration, one line each, its warnings and a summary."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from adapters.base import Adapter, AdapterNotInstalled, load_adapter_class
from collector.config import (
    ENV_PREFIX,
    STORE_PASSWORD_ENV,
    ConfigError,
    CostItem,
    Settings,
    SourceSettings,
    apply_source_env,
    format_duration,
    load_settings,
    read_toml,
    validation_problems,
)
from collector.model import CHANNELS_KNOWN
from collector.runtime import LoadedConfig, load_config
from collector.series import count_series

OTHER = "other"
PROG = "contact-cost-exporter"


@dataclass
class CheckResult:
    """What --config.check found: problems (invalid), warnings (valid but suspect)."""

    origin: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    config: LoadedConfig | None = None


def _origin(path: Path | None, environ: Mapping[str, str]) -> str:
    origin = str(path) if path is not None else "environment"
    if any(k.startswith(ENV_PREFIX) for k in environ):
        return f"environment or {origin}"
    return origin


def _raw_sources(path: Path | None, environ: Mapping[str, str]) -> list[Any]:
    """The [[sources]] tables as written, with per-source env overrides applied."""
    raw: dict[str, Any] = read_toml(path) if path is not None else {}
    apply_source_env(raw, environ)
    sources = raw.get("sources")
    return sources if isinstance(sources, list) else []


def source_problems(sources: list[Any], origin: str) -> list[str]:
    """Each source against its own adapter's settings model: every problem of every source.

    The exporter itself stops at the first bad source; this keeps going, so one check
    lists them all.
    """
    problems: list[str] = []
    for index, source in enumerate(sources):
        if not isinstance(source, dict):
            continue  # the Settings validation already says so
        try:
            base = SourceSettings.model_validate(source)
        except ValidationError:
            continue  # name/adapter problems: reported by the Settings validation
        where = f"{origin}: sources[{index}] ({base.name})"
        try:
            cls = load_adapter_class(base.adapter)
        except AdapterNotInstalled as exc:
            problems.append(f"{where}.adapter: {exc}")
            continue
        try:
            cls.settings_model.model_validate(source)
        except ValidationError as exc:
            problems.extend(
                f"{where}.{line}" if not line.startswith("(top level)") else
                f"{where}{line.removeprefix('(top level)')}"
                for line in validation_problems(exc, source, cls.settings_model)
            )
    return problems


def check_config(path: Path | None, environ: Mapping[str, str] | None = None) -> CheckResult:
    """Validate everything, collecting every problem; on success, also the warnings."""
    env = os.environ if environ is None else environ
    result = CheckResult(_origin(path, env))
    try:
        load_settings(path)
    except ConfigError as exc:
        result.problems.extend(exc.problems)
    try:
        sources = _raw_sources(path, env)
    except ConfigError:
        sources = []  # unreadable file: already the one problem
    result.problems.extend(source_problems(sources, result.origin))
    result.problems = list(dict.fromkeys(result.problems))
    if result.problems:
        return result
    try:
        result.config = load_config(path)
    except ConfigError as exc:
        result.problems.extend(exc.problems)
        return result
    result.warnings = config_warnings(result.config)
    for adapter in result.config.adapters:
        adapter.close()
    return result


# -- warnings: valid, but probably not what was meant -------------------------------------------
def _produced_queues(adapter: Adapter) -> set[str] | None:
    """Queue labels a source can give its contacts; None when that cannot be known."""
    settings = adapter.settings
    queues = getattr(settings, "queues", None)
    if not isinstance(queues, dict):
        return None
    produced = {OTHER, *queues.values()}
    fixed = getattr(settings, "queue", None)
    if isinstance(fixed, str):
        produced.add(fixed)
    return produced


def _produced_channels(adapter: Adapter) -> set[str]:
    """Channel labels a source can give its contacts (generously: no false warnings)."""
    declared = getattr(adapter, "produces_channels", None)
    if declared is not None:
        return set(declared)
    settings = adapter.settings
    fixed = getattr(settings, "channel", None)
    if isinstance(fixed, str) and fixed:
        return {fixed}
    channels = getattr(settings, "channels", None)
    produced = {OTHER, *CHANNELS_KNOWN}
    if isinstance(channels, dict):
        produced.update(channels.values())
    return produced


def _where_source(origin: str, index: int, adapter: Adapter) -> str:
    return f"{origin}: sources[{index}] ({adapter.name})"


def config_warnings(config: LoadedConfig) -> list[str]:
    """Things that are valid but make figures wrong or empty, one line each."""
    origin = config.origin
    settings = config.settings
    warnings: list[str] = []
    queues: set[str] | None = set()
    channels: set[str] = set()
    for index, adapter in enumerate(config.adapters):
        where = _where_source(origin, index, adapter)
        path = getattr(adapter.settings, "path", None)
        if isinstance(path, Path) and not path.exists():
            warnings.append(
                f"{where}.path: {path} does not exist (relative to {Path.cwd()}); the source "
                "reports down until it appears"
            )
        columns = getattr(adapter.settings, "columns", None)
        if getattr(columns, "queue", None) and not getattr(adapter.settings, "queues", None):
            warnings.append(
                f"{where}.columns.queue: set, but the source has no `queues` mapping, so every "
                f"contact lands in queue `{OTHER}`; map the column's values to queues"
            )
        produced = _produced_queues(adapter)
        queues = None if queues is None or produced is None else queues | produced
        channels |= _produced_channels(adapter)
    if not settings.costs:
        warnings.append(f"{origin}: costs: no cost items, so every cost figure is 0")
    if settings.store_password is not None and not settings.store_is_url:
        warnings.append(f"{origin}: {STORE_PASSWORD_ENV} is set, but the store is a SQLite "
                        "file, so it is not used")
    for index, item in enumerate(settings.costs):
        where = f"{origin}: costs[{index}] ({item.name})"
        for label in item.queues or ():
            if queues is not None and label not in queues:
                warnings.append(
                    f"{where}.queues: no source maps a contact to queue `{label}`, so this "
                    "cost finds no contacts there"
                )
        for label in item.channels or ():
            if label not in channels:
                warnings.append(
                    f"{where}.channels: no source gives a contact channel `{label}`, so this "
                    "cost finds no contacts there"
                )
    return warnings


# -- the summary -----------------------------------------------------------------------------
def _how(item: CostItem) -> str:
    if item.per is not None:
        seats = f" x {item.seats} seats" if item.seats else ""
        return f"{item.amount:g} per {item.per}{seats}"
    if item.amortize_months is not None:
        return f"{item.amount:g} amortized over {item.amortize_months} months"
    if item.per_minute is not None:
        return f"{item.per_minute:g} per billable minute"
    return f"{item.per_contact:g} per handled contact"


def _scope(item: CostItem) -> str:
    parts = [
        f"{what} {', '.join(values)}"
        for what, values in (
            ("channels", item.channels),
            ("directions", item.directions),
            ("queues", item.queues),
        )
        if values is not None
    ]
    return "scope " + (" and ".join(parts) if parts else "all contacts")


def _dates(item: CostItem) -> str:
    if item.from_ and item.until:
        return f"from {item.from_} until {item.until}"
    if item.from_:
        return f"from {item.from_}"
    if item.until:
        return f"until {item.until}"
    return "no start or end date"


def _allocation(item: CostItem) -> str:
    if item.per_minute is not None:
        return "charged to each contact in scope by its billable minutes"
    if item.per_contact is not None:
        return "charged to each handled contact in scope"
    if item.allocate == "contacts":
        return "allocated over handled contacts in scope, equally"
    return "allocated over handled contacts in scope by handle time"


def cost_line(item: CostItem) -> str:
    """'Rent [facilities]: 12000 per month; scope all contacts; from ...; allocated ...'."""
    parts = [_how(item), _scope(item), _dates(item), _allocation(item)]
    if item.scales_with == "workload":
        parts.append("scales with the agents' handle hours in whatif")
    return f"{item.name} [{item.component}]: " + "; ".join(parts)


def _produced_directions(adapter: Adapter) -> set[str]:
    """Directions a source can give its contacts (generously)."""
    settings = adapter.settings
    mapped = getattr(settings, "directions", None)
    fixed = getattr(settings, "direction", None)
    column = getattr(getattr(settings, "columns", None), "direction", None)
    if isinstance(fixed, str) and not column and not mapped:
        return {fixed}
    if isinstance(mapped, dict) and not column and fixed is None:
        return {"inbound", *mapped.values()}  # asterisk_cdr: dcontext -> direction, else inbound
    return {"inbound", "outbound"}


def series_estimate(config: LoadedConfig) -> tuple[int, dict[str, int]]:
    """How many series /metrics carries: the exporter's own (about), and per figure family
    at most.

    The figure families count every (channel, direction, queue) slice the sources can
    produce (a source whose queues cannot be known counts as queue `other`), each cost
    component in use (telephony too: usage prices come with the records), every mapped
    outcome per queue, and the [metrics] periods, windows and dropped labels; the health
    block adds its per-source series.
    """
    settings = config.settings
    slices: set[tuple[str, str, str]] = set()
    queues: set[str] = set()
    channels: set[str] = set()
    outcomes: set[str] = set()
    for adapter in config.adapters:
        produced = _produced_queues(adapter) or {OTHER}
        chans = _produced_channels(adapter)
        for channel in chans:
            for direction in _produced_directions(adapter):
                slices.update((channel, direction, queue) for queue in produced)
        queues |= produced
        channels |= chans
        mapped = getattr(adapter.settings, "outcomes", None)
        if isinstance(mapped, dict):
            outcomes.update(str(v) for v in mapped.values())
    components = {item.component for item in settings.costs} | {"telephony"}
    counts = count_series(
        settings.metrics, len(slices), len(components), len(queues), len(outcomes),
        len(channels),
    )
    if settings.hours is not None:
        counts["contactcenter_open"] = 1
    sources = len(config.adapters)
    # info, recompute duration and time; per source: up, last success, last record,
    # duration, interval, records, duplicates, rotation losses; job runs; the two reload
    # gauges, leader and store_up
    own = 3 + 8 * sources + 3 * (sources + 1) + 4
    return own, counts


def _series_line(config: LoadedConfig) -> str:
    own, counts = series_estimate(config)
    total = sum(counts.values())
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    limits = config.settings.metrics
    kept = f"periods {', '.join(limits.periods)}; windows {', '.join(limits.windows)}"
    dropped = "; ".join(
        f"{name} without {', '.join(labels)}" for name, labels in limits.drop_labels.items()
        if labels
    )
    return (
        f"series: at most {total:,} figure series ({kept}" + (f"; {dropped}" if dropped else "")
        + "), largest " + ", ".join(f"{name} {n:,}" for name, n in top)
        + f"; and about {own} of the exporter's own (more per rejection reason seen)"
    )


def _kpi_lines(s: Settings) -> list[str]:
    """[service_level] and [fcr] as the store rolls up by them (defaults included); the
    customer key's value is a secret: only where it comes from is said."""
    sl, fcr = s.service_level, s.fcr
    queues = "".join(f"; queue {q} {format_duration(q_sl.threshold)}"
                     for q, q_sl in sorted(sl.queues.items()))
    window = fcr.window.total_seconds()
    key = ("customer key from the configuration" if fcr.customer_key is not None
           else "customer key made at random and kept in the store")
    return [
        f"service level: answered within {format_duration(sl.threshold)} (wait <= threshold)"
        f"{queues}; short abandons within {format_duration(sl.short_abandon)}",
        f"first contact resolution: a repeat follows a handled contact of the same customer "
        f"within {format_duration(fcr.window)} ({window:,.0f} s); {key}",
    ]


def store_line(s: Settings) -> str:
    """Where the store is and, for PostgreSQL, where its password comes from: never the
    value (a URL with a password is refused before this)."""
    if not s.store_is_url:
        return f"store {s.store}"
    source = (f"from {STORE_PASSWORD_ENV}" if s.store_password is not None
              else "from libpq environment (PGPASSWORD or ~/.pgpass), if any")
    return (f"store {s.store} (PostgreSQL, password: {source}; replicas elect a leader "
            "that alone pulls the sources)")


def summary(config: LoadedConfig) -> str:
    """What --config.check prints for a valid configuration: never a secret."""
    s: Settings = config.settings
    lines = [
        f"{config.origin}: valid",
        f"currency {s.currency}, timezone {s.timezone}, recompute every "
        f"{format_duration(s.interval)}, {store_line(s)}",
        f"benchmark {s.benchmark.low:g}-{s.benchmark.high:g}"
        + "".join(f", {c} {b.low:g}-{b.high:g}" for c, b in s.benchmark.channels.items()),
    ]
    hours = getattr(s, "hours", None)
    describe = getattr(hours, "describe", None)
    lines.append("service hours: " + (describe() if callable(describe) else "around the clock"))
    lines.extend(_kpi_lines(s))
    lines.append(f"{len(config.adapters)} source(s):")
    for adapter in config.adapters:
        interval = format_duration(s.source_interval(adapter.settings))
        detail = adapter.describe()
        lines.append(
            f"  {adapter.name}: adapter {adapter.settings.adapter}, every {interval}"
            + (f", {detail}" if detail else "")
        )
    lines.append(f"{len(s.costs)} cost item(s):")
    lines.extend(f"  {cost_line(item)}" for item in s.costs)
    lines.append(_series_line(config))
    return "\n".join(lines)


def report_check(
    result: CheckResult, strict: bool = False, out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the outcome; the exit status: 1 when invalid (or warned, with strict), else 0."""
    out = out or sys.stdout
    err = err or sys.stderr
    if result.problems or result.config is None:
        _lines(err, "invalid configuration", result.problems or [f"{result.origin}: invalid"])
        return 1
    print(summary(result.config), file=out)
    _lines(err, "warning", result.warnings)
    return 1 if strict and result.warnings else 0


def _lines(stream: TextIO, kind: str, lines: Iterable[str]) -> None:
    for line in lines:
        print(f"{PROG}: {kind}: {line}", file=stream)
