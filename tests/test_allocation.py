"""Allocation and figures: handle time vs contacts, scope, usage, unallocated, outcomes, AHT."""

from __future__ import annotations

import math
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.config import CostItem, Settings, load_settings
from collector.costing import Sample, compute_figures
from collector.metrics import FIGURES
from collector.model import Rollup

OSLO = ZoneInfo("Europe/Oslo")
MONDAY = date(2026, 10, 12)
TUESDAY_NOON = datetime(2026, 10, 13, 12, tzinfo=OSLO)

# The declared families (collector.metrics) are the one list; the order is the exposition's.
LABELS = {f.name: set(f.labels) for f in FIGURES}



def rollup(
    day: date,
    channel: str,
    direction: str,
    queue: str,
    *,
    outcome: str = "",
    contacts: int,
    handled: int,
    handle: float = 0,
    billable: float = 0,
    price: float = 0,
) -> Rollup:
    return Rollup(
        day, channel, direction, queue, outcome, contacts, handled, handle, handle, billable, price
    )


def cost(**fields: Any) -> CostItem:
    fields.setdefault("name", fields["component"])
    return CostItem.model_validate(fields)


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The one sample with exactly these labels, or None when the series is absent."""
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) <= 1, f"{name}{labels} emitted {len(found)} times"
    return found[0] if found else None


def day_prev(**labels: str) -> dict[str, str]:
    return {"period": "day", "window": "previous", **labels}


VOICE = {"channel": "voice", "direction": "inbound", "queue": "support"}
EMAIL = {"channel": "email", "direction": "inbound", "queue": "support"}
OUTBOUND = {"channel": "voice", "direction": "outbound", "queue": "telesales"}
CHAT = {"channel": "chat", "direction": "inbound", "queue": "sales"}


def test_handle_time_versus_contact_count(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        """
timezone = "Europe/Oslo"
[[costs]]
name = "Agent salaries"
component = "salaries"
amount = 31000
per = "month"
[[costs]]
name = "Office rent"
component = "facilities"
amount = 3100
per = "month"
allocate = "contacts"
""",
        encoding="utf-8",
    )
    settings = load_settings(config)
    rollups = [
        rollup(MONDAY, **VOICE, contacts=4, handled=3, handle=300),
        rollup(MONDAY, **EMAIL, contacts=1, handled=1, handle=500),
    ]
    samples = compute_figures(settings, rollups, TUESDAY_NOON)
    salaries = {**day_prev(**VOICE), "component": "salaries"}
    # Salaries: 31000/31 = 1000 on Monday, by handle time 300 : 500 of 800 s.
    # voice 1000 x 300/800 = 375, email 1000 x 500/800 = 625.
    assert value(samples, "contactcenter_cost", **salaries) == pytest.approx(375)
    assert value(
        samples, "contactcenter_cost", **day_prev(**EMAIL), component="salaries"
    ) == pytest.approx(625)
    # Rent: 3100/31 = 100 on Monday, by handled contacts 3 : 1. voice 75, email 25.
    rent = {**day_prev(**VOICE), "component": "facilities"}
    assert value(samples, "contactcenter_cost", **rent) == pytest.approx(75)
    assert value(
        samples, "contactcenter_cost", **day_prev(**EMAIL), component="facilities"
    ) == pytest.approx(25)
    # Cost per contact: voice (375 + 75) / 3 = 150; email (625 + 25) / 1 = 650.
    assert value(samples, "contactcenter_cost_per_contact", **day_prev(**VOICE)) == pytest.approx(
        150
    )
    assert value(samples, "contactcenter_cost_per_contact", **day_prev(**EMAIL)) == pytest.approx(
        650
    )
    # Contacts: voice 3 handled, 4 - 3 = 1 abandoned.
    assert value(samples, "contactcenter_contacts", **day_prev(**VOICE)) == 3
    assert value(samples, "contactcenter_contacts_abandoned", **day_prev(**VOICE)) == 1
    # AHT: voice 300 s / 3 = 100 s; email 500 s / 1 = 500 s.
    assert value(samples, "contactcenter_handle_time_seconds", **day_prev(**VOICE)) == 300
    assert value(
        samples, "contactcenter_average_handle_time_seconds", **day_prev(**VOICE)
    ) == pytest.approx(100)
    assert value(
        samples, "contactcenter_average_handle_time_seconds", **day_prev(**EMAIL)
    ) == pytest.approx(500)
    # Everything Monday accrued found a contact: nothing unallocated.
    assert value(
        samples, "contactcenter_cost_unallocated", **day_prev(component="salaries")
    ) == pytest.approx(0)


def test_handle_time_zero_falls_back_to_contact_count() -> None:
    settings = Settings(
        timezone="Europe/Oslo", costs=[cost(component="salaries", amount=31000, per="month")]
    )
    rollups = [
        rollup(MONDAY, **VOICE, contacts=3, handled=3, handle=0),
        rollup(MONDAY, **EMAIL, contacts=1, handled=1, handle=0),
    ]
    samples = compute_figures(settings, rollups, TUESDAY_NOON)
    # No handle time at all in scope: 1000 split by contacts 3 : 1 -> 750 and 250.
    assert value(
        samples, "contactcenter_cost", **day_prev(**VOICE), component="salaries"
    ) == pytest.approx(750)
    assert value(
        samples, "contactcenter_cost", **day_prev(**EMAIL), component="salaries"
    ) == pytest.approx(250)
    # AHT with 0 handle seconds is a real 0, not absent: the denominator (3) is not 0.
    assert value(samples, "contactcenter_average_handle_time_seconds", **day_prev(**VOICE)) == 0


def scoped_scenario() -> list[Sample]:
    settings = Settings(
        timezone="Europe/Oslo",
        costs=[
            # 3100/31 = 100 a day in October, support queue only, by handle time.
            cost(
                name="Pay rise", component="salaries", amount=3100, per="month", queues=["support"]
            ),
            # 310/31 = 10 a day for a queue with no contacts at all.
            cost(name="Billing", component="salaries", amount=310, per="month", queues=["billing"]),
            cost(name="Carrier", component="telephony", per_minute=0.012, channels=["voice"]),
            cost(name="Dialler", component="software", per_contact=0.5, directions=["outbound"]),
            cost(name="Chat vendor", component="software", per_minute=1.0, channels=["chat"]),
        ],
    )
    rollups = [
        rollup(MONDAY, **VOICE, contacts=4, handled=3, handle=300, billable=600),
        rollup(MONDAY, **OUTBOUND, contacts=6, handled=2, handle=400, billable=300, price=0.12),
        rollup(
            MONDAY,
            **OUTBOUND,
            outcome="sale",
            contacts=2,
            handled=2,
            handle=200,
            billable=240,
            price=0.08,
        ),
        rollup(
            MONDAY,
            **OUTBOUND,
            outcome="lead",
            contacts=1,
            handled=1,
            handle=100,
            billable=60,
            price=0.02,
        ),
        rollup(MONDAY, **EMAIL, contacts=2, handled=2, handle=1000),
        rollup(MONDAY, **CHAT, contacts=3, handled=0, billable=90),
    ]
    return compute_figures(settings, rollups, TUESDAY_NOON)


def test_scope_filters_and_usage_costs() -> None:
    samples = scoped_scenario()

    def c(labels: dict[str, str], component: str) -> float | None:
        return value(samples, "contactcenter_cost", **day_prev(**labels), component=component)

    # Pay rise (support only) 100 by handle time 300 : 1000 of 1300 s:
    # voice 100 x 300/1300 = 23.08, email 100 x 1000/1300 = 76.92, telesales 0.
    assert c(VOICE, "salaries") == pytest.approx(23.076923)
    assert c(EMAIL, "salaries") == pytest.approx(76.923077)
    assert c(OUTBOUND, "salaries") == 0
    # Carrier (voice only): voice/support 600 s / 60 x 0.012 = 0.12;
    # telesales (300 + 240 + 60) s / 60 x 0.012 = 0.12, plus the export's own prices
    # 0.12 + 0.08 + 0.02 = 0.22 -> telephony 0.34.
    assert c(VOICE, "telephony") == pytest.approx(0.12)
    assert c(OUTBOUND, "telephony") == pytest.approx(0.34)
    assert c(EMAIL, "telephony") == 0
    # Dialler (outbound only): 2 + 2 + 1 = 5 handled x 0.5 = 2.5.
    assert c(OUTBOUND, "software") == pytest.approx(2.5)
    assert c(VOICE, "software") == 0
    # Billing found no contact: its 10 for Monday is unallocated, never dropped.
    assert value(
        samples, "contactcenter_cost_unallocated", **day_prev(component="salaries")
    ) == pytest.approx(10)
    # Cost per contact: voice (23.08 + 0.12) / 3 = 7.73; email 76.92 / 2 = 38.46;
    # telesales (0.34 + 2.5) / 5 = 0.568.
    assert value(samples, "contactcenter_cost_per_contact", **day_prev(**VOICE)) == pytest.approx(
        7.732308
    )
    assert value(samples, "contactcenter_cost_per_contact", **day_prev(**EMAIL)) == pytest.approx(
        38.461538
    )
    assert value(
        samples, "contactcenter_cost_per_contact", **day_prev(**OUTBOUND)
    ) == pytest.approx(0.568)


def test_unhandled_only_label_set_keeps_usage_cost_but_no_ratios() -> None:
    samples = scoped_scenario()
    # Chat: 3 contacts, none handled. Chat vendor 90 s / 60 x 1.0 = 1.5 still counts.
    assert value(
        samples, "contactcenter_cost", **day_prev(**CHAT), component="software"
    ) == pytest.approx(1.5)
    assert value(samples, "contactcenter_contacts", **day_prev(**CHAT)) == 0
    assert value(samples, "contactcenter_contacts_abandoned", **day_prev(**CHAT)) == 3
    # Denominator 0: the ratios are absent, not NaN.
    assert value(samples, "contactcenter_cost_per_contact", **day_prev(**CHAT)) is None
    assert value(samples, "contactcenter_average_handle_time_seconds", **day_prev(**CHAT)) is None


def test_outbound_cost_per_outcome() -> None:
    samples = scoped_scenario()
    telesales = {"queue": "telesales"}
    # Outcomes of handled telesales contacts: 2 sales, 1 lead.
    assert value(samples, "contactcenter_outcomes", **day_prev(**telesales, outcome="sale")) == 2
    assert value(samples, "contactcenter_outcomes", **day_prev(**telesales, outcome="lead")) == 1
    # The queue's cost 0.34 + 2.5 = 2.84: per sale 2.84 / 2 = 1.42, per lead 2.84 / 1 = 2.84.
    assert value(
        samples, "contactcenter_cost_per_outcome", **day_prev(**telesales, outcome="sale")
    ) == pytest.approx(1.42)
    assert value(
        samples, "contactcenter_cost_per_outcome", **day_prev(**telesales, outcome="lead")
    ) == pytest.approx(2.84)
    # No empty outcome series, no outcome series for queues without outcomes.
    assert not [
        s for s in samples if s.name == "contactcenter_outcomes" and not s.labels["outcome"]
    ]
    assert not [
        s
        for s in samples
        if s.name == "contactcenter_outcomes" and s.labels["queue"] != "telesales"
    ]


def test_empty_day_is_unallocated_but_the_month_carries_it() -> None:
    settings = Settings(
        timezone="Europe/Oslo",
        costs=[cost(component="facilities", amount=31000, per="month", allocate="contacts")],
    )
    # Calls only on Friday 2026-10-09; now is Sunday 2026-10-11 12:00.
    rollups = [rollup(date(2026, 10, 9), **VOICE, contacts=2, handled=2, handle=400)]
    samples = compute_figures(settings, rollups, datetime(2026, 10, 11, 12, tzinfo=OSLO))

    def unallocated(period: str, window: str) -> float | None:
        labels = {"period": period, "window": window, "component": "facilities"}
        return value(samples, "contactcenter_cost_unallocated", **labels)

    # Saturday's rent, 31000/31 = 1000, has no contact that day: unallocated.
    assert unallocated("day", "previous") == pytest.approx(1000)
    assert value(samples, "contactcenter_contacts", **day_prev(**VOICE)) is None
    # Sunday to noon: 0.5 x 1000 = 500, unallocated.
    assert unallocated("day", "current") == pytest.approx(500)
    # The week (Mon 5th .. Sun 12:00) carries 6.5 x 1000 = 6500, all on Friday's calls.
    week = {"period": "week", "window": "current", **VOICE}
    assert unallocated("week", "current") == pytest.approx(0)
    assert value(samples, "contactcenter_cost", **week, component="facilities") == pytest.approx(
        6500
    )
    assert value(samples, "contactcenter_cost_per_contact", **week) == pytest.approx(3250)
    # The month to date: 10.5 x 1000 = 10500 on 2 contacts = 5250 each.
    month = {"period": "month", "window": "current", **VOICE}
    assert value(samples, "contactcenter_cost", **month, component="facilities") == pytest.approx(
        10500
    )
    assert value(samples, "contactcenter_cost_per_contact", **month) == pytest.approx(5250)
    # September had no calls at all: its 31000/30 x 30 = 31000 rent is unallocated.
    assert unallocated("month", "previous") == pytest.approx(31000)


def test_iso_week_and_previous_quarter_and_year_across_new_year() -> None:
    settings = Settings(timezone="Europe/Oslo", costs=[cost(component="other", per_contact=1.0)])
    rollups = [
        rollup(date(2025, 6, 1), **VOICE, contacts=9, handled=9),  # before first_day_needed
        rollup(date(2026, 11, 15), **VOICE, contacts=5, handled=5, handle=500),
        rollup(date(2026, 12, 30), **VOICE, contacts=1, handled=1, handle=100),
        rollup(date(2027, 1, 2), **VOICE, contacts=3, handled=2, handle=300),
    ]
    samples = compute_figures(settings, rollups, datetime(2027, 1, 2, 12, tzinfo=OSLO))

    def handled(period: str, window: str) -> float | None:
        labels = {"period": period, "window": window, **VOICE}
        return value(samples, "contactcenter_contacts", **labels)

    def other(period: str, window: str) -> float | None:
        labels = {"period": period, "window": window, **VOICE, "component": "other"}
        return value(samples, "contactcenter_cost", **labels)

    # ISO week 53 of 2026 runs 2026-12-28 .. 2027-01-03: Dec 30 (1) + Jan 2 (2) = 3 handled.
    assert handled("week", "current") == 3
    assert other("week", "current") == pytest.approx(3)  # 3 x 1.0 per handled contact
    assert (
        value(samples, "contactcenter_contacts_abandoned", period="week", window="current", **VOICE)
        == 1
    )
    # AHT for the week: (100 + 300) / 3 = 133.33 s.
    assert value(
        samples,
        "contactcenter_average_handle_time_seconds",
        period="week",
        window="current",
        **VOICE,
    ) == pytest.approx(133.333333)
    # The year 2027 so far: only Jan 2, 2 handled.
    assert handled("year", "current") == 2
    # Previous year 2026: Nov 15 (5) + Dec 30 (1) = 6; the 2025 row is outside every window.
    assert handled("year", "previous") == 6
    assert other("year", "previous") == pytest.approx(6)
    # Previous quarter Q4 2026: the same 6; previous month December: 1.
    assert handled("quarter", "previous") == 6
    assert handled("month", "previous") == 1
    # Previous day, 1 January: no contacts, so no series.
    assert handled("day", "previous") is None
    assert handled("day", "current") == 2


def test_benchmark_series_include_default_and_every_channel() -> None:
    settings = Settings.model_validate(
        {
            "timezone": "Europe/Oslo",
            "benchmark": {
                "low": 2.7,
                "high": 5.6,
                "channels": {"email": {"low": 1.5, "high": 4.0}, "social": {"low": 1, "high": 2}},
            },
        }
    )
    rollups = [
        rollup(MONDAY, **VOICE, contacts=1, handled=1),
        rollup(MONDAY, **EMAIL, contacts=1, handled=1),
    ]
    samples = compute_figures(settings, rollups, TUESDAY_NOON)
    low = {s.labels["channel"]: s.value for s in samples if s.name == "contactcenter_benchmark_low"}
    high = {
        s.labels["channel"]: s.value for s in samples if s.name == "contactcenter_benchmark_high"
    }
    # default and voice use the default band; email and social (no contacts) their own.
    assert low == {"default": 2.7, "email": 1.5, "social": 1.0, "voice": 2.7}
    assert high == {"default": 5.6, "email": 4.0, "social": 2.0, "voice": 5.6}


def test_output_contract() -> None:
    samples = scoped_scenario()
    for s in samples:
        assert set(s.labels) == LABELS[s.name], s
        assert math.isfinite(s.value), s
        assert "total" not in s.labels.values(), s
        assert s.labels.get("period", "day") in {"day", "week", "month", "quarter", "year"}
        assert s.labels.get("window", "current") in {"current", "previous"}
    # Samples come grouped by metric name, so an exporter can build one family per name.
    names = [s.name for s in samples]
    assert names == sorted(names, key=list(LABELS).index)
    # Every series appears once.
    keys = [(s.name, tuple(sorted(s.labels.items()))) for s in samples]
    assert len(keys) == len(set(keys))


def test_no_rollups_and_no_costs() -> None:
    samples = compute_figures(Settings(), [], datetime(2026, 10, 13, 12, tzinfo=OSLO))
    # Only the default benchmark band and the service definitions remain.
    assert [(s.name, s.labels, s.value) for s in samples] == [
        ("contactcenter_benchmark_low", {"channel": "default"}, 2.70),
        ("contactcenter_benchmark_high", {"channel": "default"}, 5.60),
        ("contactcenter_service_level_threshold_seconds", {"queue": "default"}, 20.0),
        ("contactcenter_fcr_window_seconds", {}, 604800.0),  # 7 d = 7 x 86,400 s
    ]


def test_usage_cost_outside_its_dates_is_zero_not_negative() -> None:
    # A per-contact fee in force from Wednesday. For Monday's window the fee's run of days is
    # empty (from Wednesday to Monday); Tuesday's calls lie between the two, so a careless
    # difference of running totals would give Monday -2 x 1.00.
    settings = Settings(
        timezone="Europe/Oslo",
        costs=[cost(component="other", per_contact=1.0, **{"from": date(2026, 10, 14)})],
    )
    rollups = [
        rollup(MONDAY, **VOICE, contacts=3, handled=3, handle=300),
        rollup(date(2026, 10, 13), **VOICE, contacts=2, handled=2, handle=200),
    ]
    samples = compute_figures(settings, rollups, TUESDAY_NOON)
    # from = Wednesday 14 Oct: neither Monday nor Tuesday-to-noon carries the fee.
    assert value(samples, "contactcenter_cost", **day_prev(**VOICE), component="other") == 0
    current = {"period": "day", "window": "current", **VOICE}
    assert value(samples, "contactcenter_cost", **current, component="other") == 0
    assert value(samples, "contactcenter_cost_per_contact", **day_prev(**VOICE)) == 0
