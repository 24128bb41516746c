"""Backtest of the end-of-period projection (collector.projection) on stored history.

Usage: python bench/forecast.py [--seed 7] [--markdown]

For every complete month of a data set it takes the projection the exporter would have
shown at 25%, 50% and 75% of the month's open time (figures_at at that moment, the same
pipeline the exporter runs) and compares it with what the month really came to (the
previous-month figures on the 1st of the next month). It reports the mean absolute
percentage error over the months, per point, of the center's handled contacts, cost and
cost per contact.

Data sets:

- ``sample``: the committed samples (config/samples, config/example.toml), Oct-Nov 2026.
  Only October is complete and the store has no week before it, so its projection uses
  the fallback (the month so far per open second).
- ``generated``: a year (2025) of voice contacts written straight into a store: a weekly
  pattern by weekday and hour (mornings and Mondays busy, Saturdays short), Norway's
  public holidays closed (no contacts), a trend of +20% over the year, Poisson noise;
  service hours mon-fri 08-20, sat 09-16. Months from February on (four profile weeks).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from statistics import mean
from zoneinfo import ZoneInfo

from collector.config import Settings
from collector.metrics import Sample
from collector.model import Contact
from collector.periods import add_months
from collector.pipeline import figures_at
from collector.projection import moment_at_open_share
from collector.store import SqliteStore, Store

ROOT = Path(__file__).resolve().parent.parent

POINTS = (0.25, 0.50, 0.75)
GENERATED_SETTINGS = {
    "timezone": "Europe/Oslo",
    "currency": "NOK",
    "hours": {"mon-fri": "08:00-20:00", "sat": "09:00-16:00", "holidays": "NO"},
    "costs": [
        {"name": "agents", "component": "salaries", "amount": 900000, "per": "month"},
        {"name": "rent", "component": "facilities", "amount": 60000, "per": "month"},
        {"name": "carrier", "component": "telephony", "per_minute": 0.25},
    ],
}
# Contacts per open hour by weekday (Mon..Sat) and the hour's weight across the day.
DAY_LEVEL = (70.0, 55.0, 50.0, 50.0, 45.0, 30.0, 0.0)
HOUR_SHAPE = {8: 0.8, 9: 1.3, 10: 1.4, 11: 1.3, 12: 1.0, 13: 1.1, 14: 1.2, 15: 1.1,
              16: 0.9, 17: 0.7, 18: 0.5, 19: 0.4}


def poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method for small means, a rounded normal for large ones."""
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def generate_year(store: Store, settings: Settings, seed: int) -> int:
    """Write 2025's generated contacts into ``store``; returns how many."""
    rng = random.Random(seed)
    hours = settings.open_hours
    assert hours is not None
    tz = settings.tz
    day, n = date(2025, 1, 1), 0
    while day.year == 2025:
        trend = 1.0 + 0.20 * (day.timetuple().tm_yday - 1) / 364
        batch: list[Contact] = []
        for t0, t1 in hours.intervals(day):
            t = t0
            while t < t1:
                hour = datetime.fromtimestamp(t, tz).hour
                lam = DAY_LEVEL[day.weekday()] * HOUR_SHAPE.get(hour, 0.3) * trend
                span = min(3600.0, t1 - t)
                for _ in range(poisson(rng, lam * span / 3600)):
                    start = t + rng.random() * span
                    handled = rng.random() < 0.93
                    handle = rng.uniform(120, 480) if handled else 0.0
                    batch.append(Contact(f"g{n}", "voice", "inbound", "support", start,
                                         handled, handle, handle * 0.85,
                                         handle * 0.85 if handled else 0.0))
                    n += 1
                t += span
        if batch:
            store.commit("generated", batch, None)
        day += timedelta(days=1)
    return n


def center(samples: Iterable[Sample], period: str, window: str, contacts: str, cost: str
           ) -> tuple[float, float]:
    """Sum of a period window's contacts and cost over all label sets."""
    total_contacts = total_cost = 0.0
    for name, labels, value in samples:
        if labels.get("period") != period or labels.get("window") != window:
            continue
        if name == contacts:
            total_contacts += value
        elif name == cost:
            total_cost += value
    return total_contacts, total_cost


def backtest(store: Store, settings: Settings, months: list[date]) -> list[dict[str, float]]:
    """Per month and point: projected and actual contacts and cost."""
    rows: list[dict[str, float]] = []
    tz, hours = settings.tz, settings.open_hours
    for first in months:
        end = datetime.combine(add_months(first, 1), datetime.min.time(), tz)
        actual = figures_at(store, settings, end + timedelta(minutes=1)).samples
        real_contacts, real_cost = center(actual, "month", "previous", "contactcenter_contacts",
                                          "contactcenter_cost")
        for share in POINTS:
            moment = moment_at_open_share("month", first, share, tz, hours)
            samples = figures_at(store, settings, moment).samples
            contacts, cost = center(samples, "month", "current",
                                    "contactcenter_contacts_projected",
                                    "contactcenter_cost_projected")
            rows.append({"month": first.month, "share": share, "contacts": contacts,
                         "cost": cost, "real_contacts": real_contacts, "real_cost": real_cost})
    return rows


def ape(projected: float, real: float) -> float:
    return abs(projected - real) / real * 100 if real else 0.0


def summary(name: str, rows: list[dict[str, float]]) -> list[str]:
    lines = []
    for share in POINTS:
        at = [r for r in rows if r["share"] == share]
        contacts = mean(ape(r["contacts"], r["real_contacts"]) for r in at)
        cost = mean(ape(r["cost"], r["real_cost"]) for r in at)
        cpc = mean(ape(r["cost"] / r["contacts"], r["real_cost"] / r["real_contacts"])
                   for r in at if r["contacts"] and r["real_contacts"])
        lines.append(f"| {name} | {len(at)} | {share:.0%} | {contacts:.2f}% | {cost:.2f}% | "
                     f"{cpc:.2f}% |")
    return lines


def load_samples(tmp: Path) -> tuple[Store, Settings]:
    from collector.runtime import Exporter, load_config

    text = (ROOT / "config" / "example.toml").read_text()
    text = text.replace('"config/samples/', f'"{ROOT}/config/samples/')
    text = text.replace('"state/contact-cost.db"', f'"{tmp}/samples.db"')
    (tmp / "samples.toml").write_text(text)
    exporter = Exporter(load_config(str(tmp / "samples.toml")))
    for name in exporter.adapters:
        exporter.ingest(name)
    return exporter.store, exporter.config.settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    header = ["| data | months | at open time | contacts MAPE | cost MAPE | cost per contact "
              "MAPE |", "|---|---|---|---|---|---|"]
    lines = list(header)
    with tempfile.TemporaryDirectory() as tmp:
        store, settings = load_samples(Path(tmp))
        lines += summary("samples (Oct 2026)", backtest(store, settings, [date(2026, 10, 1)]))
        generated = Settings.model_validate(GENERATED_SETTINGS)
        gstore = SqliteStore(Path(tmp) / "generated.db", ZoneInfo(generated.timezone))
        count = generate_year(gstore, generated, args.seed)
        months = [date(2025, m, 1) for m in range(2, 13)]
        rows = backtest(gstore, generated, months)
        lines += summary(f"generated 2025 ({count:,} contacts)", rows)
        gstore.close()
        store.close()
    print("\n".join(lines))
    half = [r for r in rows if r["share"] == 0.5]
    worst = mean(ape(r["cost"] / r["contacts"], r["real_cost"] / r["real_contacts"])
                 for r in half)
    return 0 if worst < 3.0 else 1


if __name__ == "__main__":
    sys.exit(main())
