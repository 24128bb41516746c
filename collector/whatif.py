"""What-if levers: one period window's figures as they are and with levers pulled. Pure.

Levers, applied per label set in scope (``queues``/``channels``; unset: all), in this order:

- ``deflect`` (a share): that share of handled contacts goes to self-service; they leave
  with their share of handle, talk and billable time (and export price, repeats and
  identified contacts); each adds ``deflected_cost`` under component ``other``.
- ``fcr`` (percentage points): handled contacts fall by pp/100 x identified contacts (the
  repeats that no longer happen, at most the repeats there are), each taking the average
  handle, talk and billable time with it; repeats and identified fall by as many.
- ``aht`` (seconds or a share): handle, talk and billable time per handled contact change
  by that amount (never below 0) or share.
- ``automate`` (a share): that share of handled contacts is handled by automation: they
  stay contacts, their handle time leaves the agents' workload, their usage costs stay;
  each adds ``automated_cost`` under component ``software``.
- ``per_minute``: every per-minute item of component ``telephony`` in scope takes this
  rate, and export prices in scope are replaced by it (a carrier switch, VoIP).

Costs: a shared item with ``scales_with = "workload"`` (agent labour, per-seat licences)
scales with the agents' handle seconds in its scope; a fixed one (the default: rent,
hardware) keeps its amount. Shared cost is allocated as the exporter does (handle time or
contacts, in scope). Usage items are recomputed from the changed minutes and contacts.
Cost per contact = all cost / handled contacts (automated ones included); cost per
resolution = all cost / (handled - repeats).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from collector.accrual import AccrualSchedule
from collector.allocation import Key, RollupIndex, Totals
from collector.config import COMPONENTS, Settings
from collector.model import Rollup
from collector.periods import PERIODS, ReportWindow, first_day_needed, report_windows

if TYPE_CHECKING:
    from collector.store import Store

LEVER_NAMES = (
    "deflect", "deflected-cost", "fcr", "aht", "automate", "automated-cost", "per-minute",
    "queue", "channel",
)


class LeverError(ValueError):
    """A lever that cannot be read: one line naming the lever."""


@dataclass(frozen=True)
class Levers:
    """The levers of one scenario (see the module rules)."""

    deflect: float = 0.0
    deflected_cost: float = 0.0
    fcr_pp: float = 0.0
    aht_seconds: float | None = None
    aht_share: float | None = None
    automate: float = 0.0
    automated_cost: float = 0.0
    per_minute: float | None = None
    queues: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()

    def in_scope(self, key: Key) -> bool:
        return (not self.channels or key[0] in self.channels) and (
            not self.queues or key[2] in self.queues
        )


_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"


def parse_share(name: str, text: str) -> float:
    """'10%' -> 0.10 (0% to 100%)."""
    match = re.fullmatch(rf"\s*({_NUMBER})\s*%\s*", text)
    if not match:
        raise LeverError(f"--{name}: {text!r} is not a share such as 10%")
    value = float(match.group(1)) / 100
    if not 0 <= value <= 1:
        raise LeverError(f"--{name}: {text!r} must lie between 0% and 100%")
    return value


def parse_points(name: str, text: str) -> float:
    """'+5pp' -> 5.0 percentage points (0 to 100)."""
    match = re.fullmatch(rf"\s*({_NUMBER})\s*(?:pp)?\s*", text)
    if not match:
        raise LeverError(f"--{name}: {text!r} is not percentage points such as +5pp")
    value = float(match.group(1))
    if not 0 <= value <= 100:
        raise LeverError(f"--{name}: {text!r} must be between 0pp and +100pp")
    return value


def parse_aht(text: str) -> tuple[float | None, float | None]:
    """'-30s' -> (-30.0, None); '-10%' -> (None, -0.10); '+1m' -> (60.0, None)."""
    match = re.fullmatch(rf"\s*({_NUMBER})\s*(s|m|min|%)\s*", text)
    if not match:
        raise LeverError(f"--aht: {text!r} is not a change such as -30s or -10%")
    value, unit = float(match.group(1)), match.group(2)
    if unit == "%":
        if value < -100:
            raise LeverError(f"--aht: {text!r} cannot remove more than all handle time")
        return None, value / 100
    return value * (60 if unit in ("m", "min") else 1), None


def parse_money(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LeverError(f"--{name}: {text!r} is not an amount such as 0.30") from None
    if not (math.isfinite(value) and 0 <= value <= 10000):
        raise LeverError(f"--{name}: {text!r} must be an amount from 0 to 10000")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def parse_levers(given: Mapping[str, str]) -> Levers:
    """Levers from flag names without dashes (``deflect``, ``deflected-cost`` or
    ``deflected_cost``, ...) and their text, as the CLI and GET /api/v1/whatif give them."""
    values = {k.replace("_", "-"): v for k, v in given.items() if v is not None}
    unknown = sorted(set(values) - set(LEVER_NAMES))
    if unknown:
        raise LeverError(f"unknown lever {unknown[0]!r} (levers: {', '.join(LEVER_NAMES)})")
    levers = Levers()
    if "deflect" in values:
        levers = replace(levers, deflect=parse_share("deflect", values["deflect"]))
    if "deflected-cost" in values:
        levers = replace(levers, deflected_cost=parse_money("deflected-cost",
                                                            values["deflected-cost"]))
    if "fcr" in values:
        levers = replace(levers, fcr_pp=parse_points("fcr", values["fcr"]))
    if "aht" in values:
        seconds, share = parse_aht(values["aht"])
        levers = replace(levers, aht_seconds=seconds, aht_share=share)
    if "automate" in values:
        levers = replace(levers, automate=parse_share("automate", values["automate"]))
    if "automated-cost" in values:
        levers = replace(levers, automated_cost=parse_money("automated-cost",
                                                            values["automated-cost"]))
    if "per-minute" in values:
        levers = replace(levers, per_minute=parse_money("per-minute", values["per-minute"]))
    if "queue" in values:
        levers = replace(levers, queues=_names(values["queue"]))
    if "channel" in values:
        levers = replace(levers, channels=_names(values["channel"]))
    if levers.deflect + levers.automate > 1:
        raise LeverError("--deflect and --automate together exceed 100% of handled contacts")
    return levers


@dataclass
class Slice:
    """One label set's working figures in a scenario."""

    contacts: float
    handled: float
    handle_seconds: float  # all handle time of handled contacts (automated included)
    agent_seconds: float  # handle time that is the agents' workload
    talk_seconds: float
    billable_seconds: float
    price: float
    identified: float
    repeats: float
    extra: dict[str, float]  # component -> added cost (deflected, automated)


def baseline_slice(t: Totals) -> Slice:
    return Slice(t.contacts, t.handled, t.handle_seconds, t.handle_seconds, t.talk_seconds,
                 t.billable_seconds, t.price, t.identified, t.repeats, {})


def _remove(s: Slice, share: float) -> None:
    """Remove ``share`` of the handled contacts with their share of the time."""
    gone = s.handled * share
    keep = 1 - share
    s.contacts -= gone
    s.handled -= gone
    s.handle_seconds *= keep
    s.agent_seconds *= keep
    s.talk_seconds *= keep
    s.billable_seconds *= keep
    s.price *= keep
    s.identified *= keep
    s.repeats *= keep


def apply_levers(s: Slice, levers: Levers) -> Slice:
    """The slice with the levers applied, in the module's order."""
    s = Slice(**{**asdict(s), "extra": dict(s.extra)})
    if levers.deflect and s.handled > 0:
        deflected = s.handled * levers.deflect
        _remove(s, levers.deflect)
        if levers.deflected_cost:
            s.extra["other"] = s.extra.get("other", 0.0) + deflected * levers.deflected_cost
    if levers.fcr_pp and s.handled > 0:
        removed = min(levers.fcr_pp / 100 * s.identified, s.repeats, s.handled)
        repeats, identified = s.repeats, s.identified
        _remove(s, removed / s.handled)
        # The repeats that no longer happen: exactly `removed` fewer of both.
        s.repeats = max(repeats - removed, 0.0)
        s.identified = max(identified - removed, 0.0)
    if s.handled > 0 and (levers.aht_seconds is not None or levers.aht_share is not None):
        before = s.billable_seconds
        if levers.aht_share is not None:
            factor = 1 + levers.aht_share
            s.handle_seconds *= factor
            s.agent_seconds *= factor
            s.talk_seconds *= factor
            s.billable_seconds *= factor
        else:
            delta = (levers.aht_seconds or 0.0) * s.handled
            s.handle_seconds = max(s.handle_seconds + delta, 0.0)
            s.agent_seconds = max(s.agent_seconds + delta, 0.0)
            s.talk_seconds = max(s.talk_seconds + delta, 0.0)
            s.billable_seconds = max(s.billable_seconds + delta, 0.0)
        s.price = s.price * s.billable_seconds / before if before > 0 else s.price
    if levers.automate and s.handled > 0:
        automated = s.handled * levers.automate
        s.agent_seconds *= 1 - levers.automate
        if levers.automated_cost:
            s.extra["software"] = (s.extra.get("software", 0.0)
                                   + automated * levers.automated_cost)
    return s


def _window(now: datetime, settings: Settings, period: str, window: str) -> ReportWindow:
    for w in report_windows(now, settings.tz):
        if w.period == period and w.window == window:
            return w
    raise LeverError(f"unknown period {period!r} or window {window!r}")


def scenario_costs(
    settings: Settings,
    index: RollupIndex,
    w: ReportWindow,
    base: Mapping[Key, Slice],
    scen: Mapping[Key, Slice],
    levers: Levers,
) -> tuple[dict[Key, dict[str, float]], dict[str, float]]:
    """Cost per label set and component for the slices ``scen`` (``base``: as they are)."""
    cost: dict[Key, dict[str, float]] = {k: defaultdict(float) for k in scen}
    unallocated: dict[str, float] = defaultdict(float)
    for item in settings.costs:
        if item.is_usage:
            continue
        schedule = AccrualSchedule(item, w.first, w.last, settings.open_hours)
        amount = schedule.accrued(w.first, w.last, w.last_day_fraction)
        scope = [k for k in scen if item.in_scope(*k)]
        if item.scales_with == "workload":
            before = math.fsum(base[k].agent_seconds for k in scope)
            after = math.fsum(scen[k].agent_seconds for k in scope)
            if before > 0:
                amount *= after / before
        handled = [k for k in scope if scen[k].handled > 0]
        weights = {k: scen[k].agent_seconds for k in handled}
        if item.allocate == "contacts" or math.fsum(weights.values()) <= 0:
            weights = {k: scen[k].handled for k in handled}
        whole = math.fsum(weights.values())
        if whole <= 0:
            unallocated[item.component] += amount
            continue
        for k, weight in weights.items():
            cost[k][item.component] += amount * (weight / whole)
    for item in settings.costs:
        if not item.is_usage:
            continue
        first = max(w.first, item.from_) if item.from_ else w.first
        last = min(w.last, item.until) if item.until else w.last
        for k, s in scen.items():
            if not item.in_scope(*k):
                continue
            b = base[k]
            t = index.totals(k, first, last)
            if item.per_minute is not None:
                rate = item.per_minute
                if (levers.per_minute is not None and item.component == "telephony"
                        and levers.in_scope(k)):
                    rate = levers.per_minute
                factor = s.billable_seconds / b.billable_seconds if b.billable_seconds else 0.0
                cost[k][item.component] += rate * t.billable_seconds * factor / 60
            if item.per_contact is not None:
                factor = s.handled / b.handled if b.handled else 0.0
                cost[k][item.component] += item.per_contact * t.handled * factor
    for k, s in scen.items():
        if levers.per_minute is not None and levers.in_scope(k) and base[k].price:
            cost[k]["telephony"] += levers.per_minute * s.billable_seconds / 60
        elif s.price:
            cost[k]["telephony"] += s.price
        for component, value in s.extra.items():
            cost[k][component] += value
    return cost, unallocated


def _summary(
    slices: Mapping[Key, Slice],
    cost: Mapping[Key, Mapping[str, float]],
    unallocated: Mapping[str, float],
) -> dict[str, Any]:
    by_component: dict[str, float] = defaultdict(float)
    for parts in cost.values():
        for component, value in parts.items():
            by_component[component] += value
    for component, value in unallocated.items():
        by_component[component] += value
    total = math.fsum(by_component.values())
    handled = math.fsum(s.handled for s in slices.values())
    repeats = math.fsum(s.repeats for s in slices.values())
    agent = math.fsum(s.agent_seconds for s in slices.values())
    return {
        "contacts": handled,
        "handle_seconds": agent,
        "handle_hours": agent / 3600,
        "cost": total,
        "cost_per_contact": total / handled if handled > 0 else None,
        "cost_per_resolution": total / (handled - repeats) if handled - repeats > 0 else None,
        "cost_by_component": {
            c: by_component[c] for c in COMPONENTS if c in by_component
        },
        "unallocated": math.fsum(unallocated.values()),
    }


def _change(base: dict[str, Any], scen: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("contacts", "handle_seconds", "handle_hours", "cost", "cost_per_contact",
                 "cost_per_resolution"):
        a, b = base[name], scen[name]
        out[name] = None if a is None or b is None else b - a
    return out


def levers_data(levers: Levers) -> dict[str, Any]:
    data = {k: v for k, v in asdict(levers).items() if v not in (None, 0.0, ())}
    for name in ("queues", "channels"):
        if name in data:
            data[name] = list(data[name])
    return data


def _fcr_shortfall(base: Mapping[Key, Slice], levers: Levers) -> str | None:
    """A note when --fcr asks for more repeats to vanish than happen in scope: the
    scenario then removes only the repeats there are (resolution cannot pass 100%)."""
    if not levers.fcr_pp:
        return None
    keep = 1 - levers.deflect  # deflection runs first and takes its share of both
    scope = [s for k, s in base.items() if levers.in_scope(k) and s.handled > 0]
    identified = math.fsum(s.identified for s in scope) * keep
    repeats = math.fsum(s.repeats for s in scope) * keep
    asked = levers.fcr_pp / 100 * identified
    removed = math.fsum(min(levers.fcr_pp / 100 * s.identified * keep, s.repeats * keep,
                            s.handled * keep) for s in scope)
    if identified <= 0:
        return ("--fcr changes nothing: no handled contact in scope carries a customer key "
                "(contactcenter_contacts_identified is 0)")
    if removed >= asked * (1 - 1e-9):
        return None
    return (f"--fcr +{levers.fcr_pp:g}pp asks for {asked:,.0f} fewer repeat contacts, but "
            f"only {repeats:,.0f} repeats happen (first contact resolution is already "
            f"{1 - repeats / identified:.1%}); the scenario removes only those")


def describe_levers(levers: Mapping[str, Any]) -> str:
    """The levers as a reader types them: 'deflect 10% at 0.30 each, aht -30s, ...'."""
    parts: list[str] = []
    if "deflect" in levers:
        text = f"deflect {levers['deflect'] * 100:.4g}%"
        if "deflected_cost" in levers:
            text += f" at {levers['deflected_cost']:,.2f} each"
        parts.append(text)
    if "fcr_pp" in levers:
        parts.append(f"first contact resolution +{levers['fcr_pp']:g}pp")
    if "aht_seconds" in levers:
        parts.append(f"handle time {levers['aht_seconds']:+g}s per contact")
    if "aht_share" in levers:
        parts.append(f"handle time {levers['aht_share'] * 100:+.4g}% per contact")
    if "automate" in levers:
        text = f"automate {levers['automate'] * 100:.4g}%"
        if "automated_cost" in levers:
            text += f" at {levers['automated_cost']:,.2f} each"
        parts.append(text)
    if "per_minute" in levers:
        parts.append(f"telephony {levers['per_minute']:g} per minute")
    scope = [f"{name} {', '.join(levers[key])}" for name, key in
             (("queue", "queues"), ("channel", "channels")) if key in levers]
    text = "; ".join(parts) or "none"
    return text + (f" (only {' and '.join(scope)})" if scope else "")


def whatif(
    settings: Settings,
    rollups: Sequence[Rollup],
    now: datetime,
    period: str,
    window: str,
    levers: Levers,
) -> dict[str, Any]:
    """Baseline, scenario, the change and the levers for one period window as of ``now``."""
    if period not in PERIODS:
        raise LeverError(f"unknown period {period!r} (periods: {', '.join(PERIODS)})")
    local = now.astimezone(settings.tz)
    w = _window(local, settings, period, window)
    index = RollupIndex(rollups, first_day_needed(local), local.date())
    totals = {k: index.totals(k, w.first, w.last) for k in index.keys}
    base = {k: baseline_slice(t) for k, t in totals.items() if t.contacts > 0}
    scen = {k: apply_levers(s, levers) if levers.in_scope(k) else s for k, s in base.items()}
    base_cost, base_unallocated = scenario_costs(settings, index, w, base, base, Levers())
    scen_cost, scen_unallocated = scenario_costs(settings, index, w, base, scen, levers)
    baseline = _summary(base, base_cost, base_unallocated)
    scenario = _summary(scen, scen_cost, scen_unallocated)
    warnings = []
    fcr_note = _fcr_shortfall(base, levers)
    if fcr_note:
        warnings.append(fcr_note)
    a, b = baseline["cost_per_contact"], scenario["cost_per_contact"]
    if a is not None and b is not None and b > a and scenario["cost"] < baseline["cost"]:
        digits = 2 if round(a, 2) != round(b, 2) else 4  # a rise the table rounds away
        warnings.append(
            f"cost per contact rises while total cost falls ({a:,.{digits}f} -> "
            f"{b:,.{digits}f} per contact, total {scenario['cost'] - baseline['cost']:,.2f}): "
            "fixed costs are spread over fewer handled contacts; judge the scenario by its "
            "total cost"
        )
    return {
        "period": period,
        "window": window,
        "first": w.first.isoformat(),
        "last": w.last.isoformat(),
        "at": local.isoformat(),
        "currency": settings.currency,
        "levers": levers_data(levers),
        "baseline": baseline,
        "scenario": scenario,
        "change": _change(baseline, scenario),
        "warnings": warnings,
    }



def whatif_from_store(
    store: Store,
    settings: Settings,
    now: datetime,
    period: str,
    window: str,
    levers: Levers,
) -> dict[str, Any]:
    """:func:`whatif` over the rollups it needs, read from ``store`` as of ``now``."""
    local = now.astimezone(settings.tz)
    rollups = store.rollups_as_of(first_day_needed(local), local)
    return whatif(settings, rollups, local, period, window, levers)


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    text = f"{value:,.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.,") else text  # no "-0.00"


def render_whatif(data: dict[str, Any], fmt: str = "table") -> str:
    """The what-if as a table (baseline, scenario, change side by side) or JSON."""
    if fmt == "json":
        return json.dumps(data, indent=2, allow_nan=False) + "\n"
    base, scen, change = data["baseline"], data["scenario"], data["change"]
    lever_text = describe_levers(data["levers"])
    rows: list[tuple[str, str, str, str]] = [
        ("handled contacts", _fmt(base["contacts"], 1), _fmt(scen["contacts"], 1),
         _fmt(change["contacts"], 1)),
        ("handle hours", _fmt(base["handle_hours"], 1), _fmt(scen["handle_hours"], 1),
         _fmt(change["handle_hours"], 1)),
    ]
    components = [c for c in COMPONENTS
                  if c in base["cost_by_component"] or c in scen["cost_by_component"]]
    for c in components:
        a = base["cost_by_component"].get(c, 0.0)
        b = scen["cost_by_component"].get(c, 0.0)
        rows.append((f"  cost {c}", _fmt(a), _fmt(b), _fmt(b - a)))
    for label, name in (("total cost", "cost"), ("cost per contact", "cost_per_contact"),
                        ("cost per resolution", "cost_per_resolution")):
        rows.append((label, _fmt(base[name]), _fmt(scen[name]), _fmt(change[name])))
    width = max(len(r[0]) for r in rows)
    lines = [
        f"What-if, {data['period']} {data['window']} ({data['first']} to {data['last']}), "
        f"as of {data['at']}, in {data['currency']}",
        f"levers: {lever_text}",
        "",
        f"{'':<{width}}  {'baseline':>14}  {'scenario':>14}  {'change':>14}",
    ]
    lines += [f"{r[0]:<{width}}  {r[1]:>14}  {r[2]:>14}  {r[3]:>14}" for r in rows]
    for warning in data["warnings"]:
        lines += ["", f"note: {warning}"]
    return "\n".join(lines) + "\n"
