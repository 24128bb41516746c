"""Golden exposition: fixture config + CDR at a fixed moment give exactly tests/golden/exporter.prom.

Regenerate after an intended change with UPDATE_GOLDEN=1 and review the diff line by line.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.runtime import Exporter

from .conftest import golden_exporter, parse_exposition

GOLDEN = Path(__file__).parent / "golden" / "exporter.prom"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=ZoneInfo("Europe/Oslo"))
# Durations are measured, so they are the only values masked before comparing.
_MEASURED = re.compile(
    r"^(contactcenter_(?:recompute|source)_duration_seconds(?:\{[^}]*\})?) .*$", re.M
)


@pytest.fixture
def exporter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Exporter:
    exp = golden_exporter(tmp_path, monkeypatch, NOW)
    yield exp
    exp.close()


def test_exposition_matches_golden_file(exporter: Exporter) -> None:
    body = _MEASURED.sub(r"\1 0.0", exporter.metrics_body().decode())
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(body)
    assert body == GOLDEN.read_text()


def test_golden_figures_by_hand(exporter: Exporter) -> None:
    # Read back from the bytes /metrics serves, with prometheus_client's own parser.
    values = parse_exposition(exporter.metrics_body().decode())

    def value(name: str, **labels: str) -> float | None:
        return values.get((name, frozenset(labels.items())))

    month = {"period": "month", "window": "current", "channel": "voice", "direction": "inbound"}
    # November to 26 Nov 12:00 is 25.5 of 30 days.
    # Salaries 3000/30 x 25.5 = 2550, by handle time: support 300 s, sales 600 s of 900 s.
    assert value("contactcenter_cost", **month, queue="support", component="salaries") == pytest.approx(850.0)
    assert value("contactcenter_cost", **month, queue="sales", component="salaries") == pytest.approx(1700.0)
    # Rent 700/30 x 25.5 = 595, by contacts: one handled contact in each queue.
    assert value("contactcenter_cost", **month, queue="support", component="facilities") == pytest.approx(297.5)
    # Carrier 0.01/min: 300 s -> 0.05, 600 s -> 0.10.
    assert value("contactcenter_cost", **month, queue="sales", component="telephony") == pytest.approx(0.10)
    assert value("contactcenter_cost_per_contact", **month, queue="support") == pytest.approx(1147.55)
    assert value("contactcenter_cost_per_contact", **month, queue="sales") == pytest.approx(1997.60)
    assert value("contactcenter_contacts_abandoned", **month, queue="support") == 1
    # Talk time is billsec of the handled calls: 300 s (26 Nov); the 40 s no-answer has none.
    assert value("contactcenter_talk_time_seconds", **month, queue="support") == 300.0
    assert value("contactcenter_outcomes", period="month", window="current", queue="sales",
                 outcome="sale") == 1
    assert value("contactcenter_cost_per_outcome", period="month", window="current",
                 queue="sales", outcome="sale") == pytest.approx(1997.60)
    # October (previous month): one 120 s call carries all of October's shared cost.
    # 3000 + 700 + 0.01 x 2 = 3700.02.
    october = {**month, "window": "previous", "queue": "support"}
    assert value("contactcenter_cost_per_contact", **october) == pytest.approx(3700.02)
    # Today to 12:00 is half a day: salaries 3000/30/2 = 50 and rent 700/30/2 = 11.67, all
    # on the one call handled today (the sales call was yesterday).
    today = {**month, "period": "day", "queue": "support"}
    assert value("contactcenter_cost", **today, component="salaries") == pytest.approx(50.0)
    assert value("contactcenter_cost", **today, component="facilities") == pytest.approx(700 / 60)
    # Ratios with no handled contact are absent, never NaN: support had no call on 25 Nov.
    assert value("contactcenter_cost_per_contact", **{**today, "window": "previous"}) is None
    assert value("contactcenter_benchmark_high", channel="voice") == 5.6
    assert value("contactcenter_benchmark_high", channel="email") == 4.0
    assert value("contactcenter_benchmark_low", channel="default") == 2.7


def test_worker_process_renders_the_same_bytes(exporter: Exporter) -> None:
    from collector.worker import RecomputeWorker

    in_process = _MEASURED.sub(r"\1 0.0", exporter.metrics_body().decode())
    series = exporter.snapshots.current.series
    exporter.worker = RecomputeWorker()
    try:
        snapshot = exporter.recompute(NOW)
        in_worker = _MEASURED.sub(r"\1 0.0", exporter.metrics_body().decode())
    finally:
        exporter.worker.close()
        exporter.worker = None
    assert in_worker == in_process
    # The worker's bytes parse back to the hand-worked figure.
    values = parse_exposition(exporter.metrics_body().decode())
    assert values[(
        "contactcenter_cost_per_outcome",
        frozenset({"period": "month", "window": "current", "queue": "sales",
                   "outcome": "sale"}.items()),
    )] == pytest.approx(1997.60)
    assert snapshot.series == series == sum(
        1 for line in snapshot.body.decode().splitlines() if not line.startswith("#")
    )


def test_every_family_in_the_exposition_is_declared_once() -> None:
    """HELP and TYPE of the golden file come from collector.metrics, in the declared order."""
    from collector.metrics import ALL

    declared = {f.exposed_name: f for f in ALL}
    order = list(declared)
    text = GOLDEN.read_text()
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M))
    types = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    assert list(helps) == [name for name, _ in types]
    for name, kind in types:
        family = declared[name]  # a KeyError here is an undeclared family
        assert (kind, helps[name]) == (family.type, family.help)
    # Declared order is exposition order (families left out when empty are simply absent).
    assert [n for n, _ in types] == sorted((n for n, _ in types), key=order.index)


def test_golden_projection_by_hand(exporter: Exporter) -> None:
    """The projected families of the golden store (issue 13). No contact lies in the four
    complete weeks before 23 Nov (26 Oct - 22 Nov; the October call is older), so every
    label set projects its period so far per elapsed open second (no [hours]: all seconds)."""
    values = parse_exposition(exporter.metrics_body().decode())

    def value(name: str, **labels: str) -> float | None:
        return values.get((name, frozenset(labels.items())))

    week = {"period": "week", "window": "current", "channel": "voice", "direction": "inbound"}
    # Monday 23 Nov to Thursday 26 Nov 12:00 is 3.5 of 7 days: 1 call each -> 2 projected.
    assert value("contactcenter_contacts_projected", **week, queue="sales") == 2.0
    # The whole week's shared cost, 7 days of November: salaries 3000/30 x 7 = 700 by handle
    # time (sales 2 x 600 s of 2 x 900 s: 466.67), rent 700/30 x 7 = 163.33 by contacts
    # (81.67); carrier 0.01/min x 600 s x 2 = 0.20. 548.53 for 2 calls: 274.27 each.
    assert value("contactcenter_cost_projected", **week, queue="sales") == pytest.approx(548.5333)
    assert value("contactcenter_cost_per_contact_projected", **week, queue="sales") == (
        pytest.approx(274.2667))
    # November: 25.5 of 30 days passed; 1 call -> 1/0.85 per queue.
    month = {**week, "period": "month"}
    assert value("contactcenter_contacts_projected", **month, queue="support") == (
        pytest.approx(1 / 0.85))
    assert value("contactcenter_period_open_elapsed_ratio", period="month") == 0.85
    assert value("contactcenter_period_open_elapsed_ratio", period="week") == 0.5
    # No projection for the day, nor for previous windows.
    assert not any(name.endswith("_projected") and ("period", "day") in labels
                   for name, labels in values)
    assert not any(name.endswith("_projected") and ("window", "previous") in labels
                   for name, labels in values)
