"""The example configuration's band and costs fit its own sample data, hour by hour.

Over every open hour of the sample months, for every (period, window) pair the band alerts
watch (config/prometheus/thresholds.yml) whose window lies inside the samples (the samples
start on a Thursday: the week before it has costs but, in the samples, no contacts), and
every channel with at least the alert's minimum of handled contacts, cost per contact = sum(cost) / sum(contacts) (as the recording
rule period_window_channel:contactcenter_cost_per_contact:ratio computes it) must lie inside
the channel's band: `make run` on the samples pages nobody.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from collector.periods import report_windows
from collector.pipeline import figures_at
from collector.runtime import Exporter, load_config

from .conftest import REPO
from .prom_helpers import PROMETHEUS_DIR, require_yaml

MIN_CONTACTS = "period_window:contactcenter_band_alert_min_contacts:threshold"


def watched_pairs() -> dict[tuple[str, str], float]:
    """(period, window) -> minimum handled contacts, from thresholds.yml."""
    rules = require_yaml().safe_load((PROMETHEUS_DIR / "thresholds.yml").read_text())
    pairs: dict[tuple[str, str], float] = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("record") == MIN_CONTACTS:
                number = re.fullmatch(r"vector\((\d+(?:\.\d+)?)\)", rule["expr"].strip())
                assert number, rule["expr"]
                labels = rule["labels"]
                pairs[(labels["period"], labels["window"])] = float(number.group(1))
    assert pairs, "no watched pairs in thresholds.yml"
    return pairs


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Exporter:
    """The example config as `make run` uses it, on the committed samples, in a temp dir."""
    work = tmp_path_factory.mktemp("example")
    (work / "config").mkdir()
    shutil.copy(REPO / "config" / "example.toml", work / "config" / "example.toml")
    shutil.copytree(REPO / "config" / "samples", work / "config" / "samples")
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("CONTACT_COST_")}
    cwd = Path.cwd()
    os.chdir(work)
    try:
        exporter = Exporter(load_config("config/example.toml"))
        for source in exporter.adapters:
            while exporter.ingest(source):
                pass
    finally:
        os.chdir(cwd)
        os.environ.update(saved)
    return exporter


def sample_days(exporter: Exporter) -> tuple[datetime, datetime]:
    """First and last local day with a stored contact."""
    db = exporter.store._db  # type: ignore[attr-defined]  # tests read the table directly
    low, high = db.execute("SELECT min(start), max(start) FROM contacts").fetchone()
    tz = exporter.settings.tz
    first = datetime.fromtimestamp(low, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    last = datetime.fromtimestamp(high, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    return first, last


def test_example_band_fits_its_samples_in_every_open_hour(example: Exporter) -> None:
    settings = example.settings
    hours = settings.open_hours
    assert hours is not None, "the example has [hours]"
    pairs = watched_pairs()
    first, last = sample_days(example)
    outside: list[str] = []
    checked = 0
    day = first
    while day <= last:
        for hour in range(24):
            moment = day.replace(hour=hour)
            if not hours.is_open(moment):
                continue
            cost: dict[tuple[str, str, str], float] = defaultdict(float)
            contacts: dict[tuple[str, str, str], float] = defaultdict(float)
            for sample in figures_at(example.store, settings, moment).samples:
                labels = sample.labels
                if sample.name == "contactcenter_cost":
                    cost[(labels["period"], labels["window"], labels["channel"])] += sample.value
                elif sample.name == "contactcenter_contacts":
                    key = (labels["period"], labels["window"], labels["channel"])
                    contacts[key] += sample.value
            covered = {
                (w.period, w.window) for w in report_windows(moment, settings.tz)
                if w.first >= first.date()
            }
            for (period, window, channel), handled in contacts.items():
                minimum = pairs.get((period, window))
                if minimum is None or handled < minimum or (period, window) not in covered:
                    continue
                checked += 1
                ratio = cost[(period, window, channel)] / handled
                band = settings.benchmark.band_for(channel)
                if not band.low <= ratio <= band.high:
                    outside.append(
                        f"{moment:%Y-%m-%d %H:%M} {period}/{window} {channel}: {ratio:.2f} "
                        f"not in {band.low:g}-{band.high:g} ({handled:g} contacts)"
                    )
        day = (day + timedelta(days=1, hours=2)).replace(hour=0)  # DST-proof next day
    assert checked > 1000, checked  # the test saw real figures, not an empty store
    assert outside == [], f"{len(outside)} of {checked} outside, e.g.:\n" + "\n".join(
        outside[:20]
    )
