"""The `report` subcommand's output: one period's KPIs from the figures (table or JSON), or
cost and contacts over any window of local dates by the dimensions asked for (table, JSON, CSV).
"""

from __future__ import annotations

import csv
import io
import json
import math
import urllib.parse
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from collector.accrual import AccrualSchedule
from collector.allocation import Key, RollupIndex, allocate_window
from collector.apianswer import OneAtATime, bad_query
from collector.config import COMPONENTS, Settings
from collector.logsafe import printable
from collector.metrics import Sample
from collector.model import Rollup
from collector.periods import WINDOWS, ReportWindow, elapsed_day_fraction
from collector.store import Store


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
        projected = _projected(samples) if window == "current" else None
        if projected is not None:
            out["windows"][window]["projected"] = projected
    return out


def _projected(samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, Any] | None:
    """The current window's projection to the end of the period (collector.projection):
    totals and per slice; None for a period that is not projected (day)."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for name, field in (("contactcenter_contacts_projected", "contacts"),
                        ("contactcenter_cost_projected", "cost")):
        for labels, value in samples[name]:
            key = (labels["channel"], labels["direction"], labels["queue"])
            row = rows.setdefault(key, {"channel": key[0], "direction": key[1],
                                        "queue": key[2], "contacts": 0.0, "cost": 0.0})
            row[field] = value
    elapsed = [v for _, v in samples["contactcenter_period_open_elapsed_ratio"]]
    if not rows and not elapsed:
        return None
    slices = [rows[k] for k in sorted(rows)]
    for row in slices:
        row["cost_per_contact"] = row["cost"] / row["contacts"] if row["contacts"] else None
    contacts = sum(r["contacts"] for r in slices)
    cost = sum(r["cost"] for r in slices)
    return {
        "contacts": contacts,
        "cost": cost,
        "cost_per_contact": cost / contacts if contacts else None,
        "open_elapsed_ratio": elapsed[0] if elapsed else None,
        "slices": slices,
    }


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
        p = w.get("projected")
        if p is not None:
            passed = p["open_elapsed_ratio"]
            lines.append(
                f"projected to the end of the {data['period']}"
                + ("" if passed is None else f" ({passed:.0%} of its open time passed)")
                + f": {p['contacts']:,.0f} contacts, cost {_money(p['cost'])}, "
                f"per contact {_money(p['cost_per_contact'])}"
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


# -- any window ---------------------------------------------------------------------------------
DIMENSIONS = ("channel", "direction", "queue", "component")
DEFAULT_BY = ("channel", "direction", "queue")
# A window longer than this is refused (CLI and API alike): ten years of days bounds the work.
MAX_WINDOW_DAYS = 3660


class WindowError(ValueError):
    """The window or the dimensions asked for cannot be reported (one readable line)."""


def parse_by(text: str) -> tuple[str, ...]:
    """``"queue,channel"`` -> ``("channel", "queue")``: known names, in the canonical order."""
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(names - set(DIMENSIONS))
    if unknown:
        raise WindowError(
            f"--by: unknown dimension {', '.join(unknown)} (choose from {', '.join(DIMENSIONS)})"
        )
    if not names:
        raise WindowError(f"--by: name at least one of {', '.join(DIMENSIONS)}")
    return tuple(d for d in DIMENSIONS if d in names)


def check_window(first: date, last: date) -> None:
    if last < first:
        raise WindowError(f"--to {last} is before --from {first}")
    if (last - first).days + 1 > MAX_WINDOW_DAYS:
        raise WindowError(f"the window is longer than {MAX_WINDOW_DAYS} days")


def window_report(
    settings: Settings,
    rollups: Iterable[Rollup],
    first: date,
    last: date,
    now: datetime,
    by: Sequence[str] = DEFAULT_BY,
) -> dict[str, Any]:
    """Contacts and cost over local days ``first``..``last`` (inclusive) grouped by ``by``.

    Pure: ``now`` (aware) is passed in. Rules:

    - Costs are the periods' (:mod:`collector.allocation`): shared items accrue by
      :mod:`collector.accrual` over the window's days (over open seconds with ``[hours]``)
      and are allocated to the window's handled contacts in scope; usage costs attach to
      the contacts that caused them.
    - A window reaching past ``now`` ends at ``now``, as a current period does: today
      carries its share up to ``now`` and later days carry nothing.
    - ``contacts`` are handled contacts. Under ``component`` each row's ``contacts`` are
      those of its other dimensions: the same handled contacts carry every component.
    - Cost that found no handled contact in scope (the window's unallocated cost) is a row
      whose other dimensions are None, with 0 contacts: nothing is dropped, so the rows'
      costs always add up to ``total.cost``.
    - ``cost_per_contact`` is cost / contacts, None when there are no contacts.
    """
    check_window(first, last)
    by = tuple(d for d in DIMENSIONS if d in by)
    local_now = now.astimezone(settings.tz)
    today = local_now.date()
    end = min(last, today)
    fraction = elapsed_day_fraction(local_now, settings.tz) if last >= today else 1.0
    rows: list[dict[str, Any]] = []
    if end >= first:
        index = RollupIndex(rollups, first, end)
        schedules = [
            AccrualSchedule(item, first, end, settings.open_hours)
            for item in settings.costs
            if not item.is_usage
        ]
        # The period name is not used by the allocation; the window is days first..end.
        window = ReportWindow("day", "window", first, end, fraction)
        totals, cost, unallocated = allocate_window(settings, index, schedules, window)
        used = {item.component for item in settings.costs}
        if index.has_price:
            used.add("telephony")
        components = [c for c in COMPONENTS if c in used]
        rows = _window_rows(by, components, totals, cost, unallocated)
    contacts = _contacts_of(rows, by)
    total_cost = math.fsum(r["cost"] for r in rows)
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "currency": settings.currency,
        "rows": rows,
        "total": {
            "contacts": contacts,
            "cost": total_cost,
            "cost_per_contact": total_cost / contacts if contacts else None,
        },
    }


def _window_rows(
    by: tuple[str, ...],
    components: Sequence[str],
    totals: dict[Key, Any],
    cost: dict[Key, dict[str, float]],
    unallocated: dict[str, float],
) -> list[dict[str, Any]]:
    """One row per combination of the ``by`` dimensions, unallocated cost rows last."""
    others = [d for d in by if d != "component"]
    position = {"channel": 0, "direction": 1, "queue": 2}
    contacts: dict[tuple[str, ...], float] = defaultdict(float)
    costs: dict[tuple[str, ...], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for key, t in totals.items():
        group = tuple(key[position[d]] for d in others)
        contacts[group] += t.handled
        for component in components:
            costs[group][component].append(cost[key].get(component, 0.0))
    rows: list[dict[str, Any]] = []
    for group in sorted(contacts):
        dims = dict(zip(others, group, strict=True))
        parts = {c: math.fsum(v) for c, v in costs[group].items()}
        if "component" in by:
            for component in components:
                rows.append(_row(by, {**dims, "component": component}, contacts[group],
                                 parts.get(component, 0.0)))
        else:
            rows.append(_row(by, dims, contacts[group], math.fsum(parts.values())))
    left = {c: v for c, v in unallocated.items() if v}
    nobody = dict.fromkeys(others)
    if "component" in by:
        for component in (c for c in COMPONENTS if c in left):
            rows.append(_row(by, {**nobody, "component": component}, 0.0, left[component]))
    elif left:
        rows.append(_row(by, nobody, 0.0, math.fsum(left.values())))
    return rows


def _row(by: tuple[str, ...], dims: dict[str, Any], contacts: float, cost: float) -> dict[str, Any]:
    return {
        **{d: dims[d] for d in by},
        "contacts": round(contacts),  # a count of contacts: an integer in JSON and CSV
        "cost": cost,
        "cost_per_contact": cost / contacts if contacts else None,
    }


def _contacts_of(rows: list[dict[str, Any]], by: tuple[str, ...]) -> int:
    """Handled contacts of all rows, each group once under ``component``."""
    if "component" not in by:
        return sum(r["contacts"] for r in rows)
    seen: dict[tuple[Any, ...], int] = {}
    for r in rows:
        seen[tuple(r[d] for d in by if d != "component")] = r["contacts"]
    return sum(seen.values())


def render_window(data: dict[str, Any], fmt: str, by: Sequence[str]) -> str:
    """A window report as JSON, CSV (header = the row keys) or a table."""
    if fmt == "json":
        return json.dumps(data, indent=2, allow_nan=False) + "\n"
    keys = [*(d for d in DIMENSIONS if d in by), "contacts", "cost", "cost_per_contact"]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(keys)
        for row in data["rows"]:
            writer.writerow(["" if row[k] is None else _csv_value(row[k]) for k in keys])
        return out.getvalue()
    return _window_table(data, keys)


def _csv_value(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite figure {value!r}")  # a bug to see, as in JSON
        return f"{value:.0f}" if value.is_integer() else repr(value)
    return str(value)


def _window_table(data: dict[str, Any], keys: list[str]) -> str:
    dims = keys[:-3]
    widths = {d: max([len(d), 13, *(len(str(r[d] or "")) for r in data["rows"])]) for d in dims}
    first = date.fromisoformat(data["from"])
    last = date.fromisoformat(data["to"])
    days = (last - first + timedelta(days=1)).days
    lines = [
        f"Cost per contact, {data['from']} to {data['to']} "
        f"({days} day{'' if days == 1 else 's'}, {data['currency']})",
        "",
    ]
    header = " ".join(f"{d:<{widths[d]}}" for d in dims) + (
        f" {'contacts':>9} {'cost':>14} {'per contact':>11}"
    )
    lines += [header, "-" * len(header)]
    for r in data["rows"]:
        names = " ".join(
            f"{'(unallocated)' if r[d] is None else r[d]:<{widths[d]}}" for d in dims
        )
        lines.append(
            f"{names} {r['contacts']:>9.0f} {_money(r['cost']):>14} "
            f"{_money(r['cost_per_contact']):>11}"
        )
    total = data["total"]
    width = sum(widths.values()) + len(dims) - 1
    lines.append(
        f"{'all':<{width}} {total['contacts']:>9.0f} {_money(total['cost']):>14} "
        f"{_money(total['cost_per_contact']):>11}"
    )
    return "\n".join(lines) + "\n"


def window_report_from_store(
    store: Store,
    settings: Settings,
    first: date,
    last: date,
    now: datetime,
    by: Sequence[str] = DEFAULT_BY,
) -> dict[str, Any]:
    """The thin I/O shell of :func:`window_report`: the window's rollups read from the store."""
    check_window(first, last)
    rollups = store.rollups_as_of(first, now.astimezone(settings.tz))
    return window_report(settings, rollups, first, last, now, by)


class ReportEndpoint:
    """``GET /api/v1/report?from=YYYY-MM-DD&to=YYYY-MM-DD&by=channel,queue`` as JSON.

    An explicit request, so it reads the window's rollups from the store, in the request's
    own thread (scrapes only copy the snapshot's bytes and never wait for it). Bounded: one
    report at a time (another is answered 429 at once, never queued) and a window of at
    most :data:`MAX_WINDOW_DAYS` days.
    """

    def __init__(self) -> None:
        self._one = OneAtATime("report")

    @staticmethod
    def parse_query(query: str) -> tuple[date, date, tuple[str, ...]]:
        """The window and dimensions of a query string; WindowError with the reason if bad."""
        fields = urllib.parse.parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(fields) - {"from", "to", "by"})
        if unknown:
            raise WindowError(f"unknown parameter {printable(unknown[0], 40)} "
                              "(give from, to and optionally by)")
        days: list[date] = []
        for name in ("from", "to"):
            values = fields.get(name, [])
            if len(values) != 1:
                raise WindowError(f"give {name}=YYYY-MM-DD once")
            try:
                days.append(date.fromisoformat(values[0]))
            except ValueError:
                raise WindowError(f"{name}: not a date YYYY-MM-DD") from None
        by = DEFAULT_BY if "by" not in fields else parse_by(",".join(fields["by"]))
        check_window(days[0], days[1])
        return days[0], days[1], by

    def answer(
        self, query: str, store: Store, settings: Settings, now: datetime
    ) -> tuple[int, bytes]:
        """HTTP status and JSON body; never raises on a bad query."""
        try:
            first, last, by = self.parse_query(query)
        except WindowError as exc:
            return bad_query(exc)
        return self._one.answer(
            lambda: window_report_from_store(store, settings, first, last, now, by),
            lambda data: render_window(data, "json", by),
            f"report {first}..{last}",
        )
