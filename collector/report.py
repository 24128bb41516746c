"""The `report` subcommand's output: one period's KPIs from the figures, as a table or JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from collector.config import Settings
from collector.metrics import Sample

WINDOWS = ("current", "previous")


def _samples(
    figures: Iterable[Sample], period: str
) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for sample in figures:
        if sample.labels.get("period", period) == period:
            found[sample.name].append((sample.labels, sample.value))
    return found


def report_data(
    figures: Iterable[Sample], settings: Settings, at: datetime, period: str
) -> dict[str, Any]:
    """Plain data for one period, both windows: per slice, per component, outcomes, totals."""
    samples = _samples(figures, period)
    out: dict[str, Any] = {
        "at": at.astimezone(settings.tz).isoformat(),
        "period": period,
        "currency": settings.currency,
        "timezone": settings.timezone,
        "windows": {},
    }
    for window in WINDOWS:
        slices: dict[tuple[str, str, str], dict[str, Any]] = {}

        def slice_of(
            labels: dict[str, str], slices: dict[tuple[str, str, str], dict[str, Any]] = slices
        ) -> dict[str, Any]:
            key = (labels["channel"], labels["direction"], labels["queue"])
            return slices.setdefault(
                key,
                {
                    "channel": key[0],
                    "direction": key[1],
                    "queue": key[2],
                    "contacts": 0,
                    "abandoned": 0,
                    "cost": 0.0,
                    "handle_time_seconds": 0.0,
                },
            )

        components: dict[str, float] = defaultdict(float)
        unallocated: dict[str, float] = {}
        outcomes: list[dict[str, Any]] = []
        for name, field in (
            ("contactcenter_contacts", "contacts"),
            ("contactcenter_contacts_abandoned", "abandoned"),
            ("contactcenter_handle_time_seconds", "handle_time_seconds"),
        ):
            for labels, value in samples[name]:
                if labels["window"] == window:
                    slice_of(labels)[field] = value
        for labels, value in samples["contactcenter_cost"]:
            if labels["window"] == window:
                slice_of(labels)["cost"] += value
                components[labels["component"]] += value
        for labels, value in samples["contactcenter_cost_unallocated"]:
            if labels["window"] == window:
                unallocated[labels["component"]] = value
        per_outcome = {
            (lb["queue"], lb["outcome"]): v
            for lb, v in samples["contactcenter_cost_per_outcome"]
            if lb["window"] == window
        }
        for labels, value in samples["contactcenter_outcomes"]:
            if labels["window"] == window:
                key = (labels["queue"], labels["outcome"])
                outcomes.append(
                    {
                        "queue": key[0],
                        "outcome": key[1],
                        "count": value,
                        "cost_per_outcome": per_outcome.get(key),
                    }
                )
        rows = sorted(slices.values(), key=lambda r: (r["channel"], r["direction"], r["queue"]))
        for row in rows:
            handled = row["contacts"]
            row["cost_per_contact"] = row["cost"] / handled if handled else None
            row["average_handle_time_seconds"] = (
                row["handle_time_seconds"] / handled if handled else None
            )
        contacts = sum(r["contacts"] for r in rows)
        cost = sum(r["cost"] for r in rows)
        out["windows"][window] = {
            "slices": rows,
            "cost_by_component": dict(sorted(components.items())),
            "cost_unallocated": dict(sorted(unallocated.items())),
            "outcomes": sorted(outcomes, key=lambda o: (o["queue"], o["outcome"])),
            "contacts": contacts,
            "abandoned": sum(r["abandoned"] for r in rows),
            "cost": cost,
            "cost_per_contact": cost / contacts if contacts else None,
        }
    return out


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _table(data: dict[str, Any]) -> str:
    lines = [f"Cost per contact, {data['period']}, as of {data['at']} ({data['currency']})", ""]
    for window, w in data["windows"].items():
        lines.append(f"== {window} {data['period']} ==")
        header = (
            f"{'channel':<8} {'direction':<9} {'queue':<12} {'contacts':>9} {'abandoned':>9} "
            f"{'cost':>12} {'per contact':>11} {'AHT s':>7}"
        )
        lines += [header, "-" * len(header)]
        for r in w["slices"]:
            aht = r["average_handle_time_seconds"]
            lines.append(
                f"{r['channel']:<8} {r['direction']:<9} {r['queue']:<12} {r['contacts']:>9.0f} "
                f"{r['abandoned']:>9.0f} {_money(r['cost']):>12} "
                f"{_money(r['cost_per_contact']):>11} {'-' if aht is None else f'{aht:.0f}':>7}"
            )
        lines.append(
            f"{'all':<32} {w['contacts']:>9.0f} {w['abandoned']:>9.0f} {_money(w['cost']):>12} "
            f"{_money(w['cost_per_contact']):>11}"
        )
        if w["cost_by_component"]:
            lines.append(
                "by component: "
                + ", ".join(f"{c} {_money(v)}" for c, v in w["cost_by_component"].items())
            )
        if w["cost_unallocated"]:
            lines.append(
                "unallocated: "
                + ", ".join(f"{c} {_money(v)}" for c, v in w["cost_unallocated"].items())
            )
        for o in w["outcomes"]:
            lines.append(
                f"outcome {o['queue']}/{o['outcome']}: {o['count']:.0f}, "
                f"cost per {o['outcome']} {_money(o['cost_per_outcome'])}"
            )
        lines.append("")
    return "\n".join(lines)


def render_report(
    figures: Iterable[Sample], settings: Settings, at: datetime, period: str, fmt: str
) -> str:
    """The report of one period from the pipeline's figures, as a table or JSON."""
    data = report_data(figures, settings, at, period)
    if fmt == "json":
        # Strict JSON: a non-finite figure is a bug to see (ValueError), never `Infinity`.
        return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return _table(data)
