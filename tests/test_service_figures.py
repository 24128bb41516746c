"""The service figures of the cost model, from rollups, with their parts and absences."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from collector.allocation import compute_figures
from collector.config import Settings
from collector.model import Rollup

OSLO = ZoneInfo("Europe/Oslo")
NOW = datetime(2026, 11, 4, 12, tzinfo=OSLO)  # Wednesday
DAY = date(2026, 11, 4)


def figures(rollups: list[Rollup], settings: Settings | None = None) -> dict[tuple[str, str, str], float]:
    """(name, channel, queue) -> value for period=day, window=current."""
    out = {}
    for s in compute_figures(settings or Settings(timezone="Europe/Oslo"), rollups, NOW):
        if s.labels.get("period") == "day" and s.labels.get("window") == "current" \
                and "channel" in s.labels:
            out[(s.name, s.labels["channel"], s.labels["queue"])] = s.value
    return out


def test_voice_queue_with_waits_and_email_without() -> None:
    rollups = [
        # voice/support: 100 contacts, 80 handled, 20 abandoned of which 4 short; waits
        # known for all 100; wait of handled 2,400 s; 60 answered within 20 s;
        # 70 handled with a customer key, 14 of them repeats.
        Rollup(DAY, "voice", "inbound", "support", "", 100, 80, 24000.0, 24000.0, 0.0, 0.0,
               100, 2400.0, 60, 4, 70, 14),
        # email/support: 10 tickets, 8 handled, no wait known, 8 with a key, no repeat.
        Rollup(DAY, "email", "inbound", "support", "", 10, 8, 8000.0, 8000.0, 0.0, 0.0,
               0, 0.0, 0, 0, 8, 0),
    ]
    got = figures(rollups)
    voice = {name: v for (name, ch, _), v in got.items() if ch == "voice"}
    # service level = 60 / (80 + 20 - 4) = 60 / 96 = 0.625
    assert voice["contactcenter_service_level_ratio"] == 0.625
    # abandonment = (20 - 4) / 96 = 1/6
    assert voice["contactcenter_abandonment_ratio"] == 16 / 96
    # ASA = 2400 / 80 = 30 s
    assert voice["contactcenter_average_speed_of_answer_seconds"] == 30.0
    assert voice["contactcenter_wait_seconds"] == 2400.0
    assert voice["contactcenter_contacts_answered_in_threshold"] == 60
    assert voice["contactcenter_contacts_abandoned_short"] == 4
    # FCR = 1 - 14 / 70 = 0.8
    assert voice["contactcenter_first_contact_resolution_ratio"] == 1 - 14 / 70
    assert (voice["contactcenter_contacts_identified"], voice["contactcenter_contacts_repeat"]) == (
        70, 14)
    email = {name: v for (name, ch, _), v in got.items() if ch == "email"}
    # No wait known: no service-level, speed-of-answer or wait series at all.
    for name in ("contactcenter_service_level_ratio", "contactcenter_wait_seconds",
                 "contactcenter_average_speed_of_answer_seconds",
                 "contactcenter_contacts_answered_in_threshold"):
        assert name not in email
    # Abandonment counts every unhandled ticket: 2 / 10; short abandons 0.
    assert email["contactcenter_abandonment_ratio"] == 0.2
    assert email["contactcenter_contacts_abandoned_short"] == 0
    assert email["contactcenter_first_contact_resolution_ratio"] == 1.0


def test_ratios_are_absent_when_their_denominator_is_zero() -> None:
    # 3 contacts, none handled, all short abandons: offered = 0 + 3 - 3 = 0; no key.
    rollups = [Rollup(DAY, "voice", "inbound", "sales", "", 3, 0, 0.0, 0.0, 0.0, 0.0,
                      3, 0.0, 0, 3, 0, 0)]
    got = {name for (name, _, _) in figures(rollups)}
    for name in ("contactcenter_service_level_ratio", "contactcenter_abandonment_ratio",
                 "contactcenter_average_speed_of_answer_seconds",
                 "contactcenter_first_contact_resolution_ratio",
                 "contactcenter_cost_per_resolution"):
        assert name not in got
    # The parts are there.
    assert {"contactcenter_contacts_abandoned_short", "contactcenter_contacts_identified",
            "contactcenter_contacts_repeat", "contactcenter_wait_seconds"} <= got


def test_cost_per_resolution_and_thresholds_per_queue() -> None:
    settings = Settings.model_validate({
        "timezone": "Europe/Oslo",
        "service_level": {"threshold": "20s", "queues": {"sales": {"threshold": "30s"}}},
        "fcr": {"window": "3d"},
        "costs": [{"name": "agents", "component": "salaries", "per_contact": 5.0}],
    })
    rollups = [Rollup(DAY, "voice", "inbound", "sales", "", 12, 10, 3000.0, 3000.0, 0.0, 0.0,
                      12, 100.0, 9, 0, 10, 2)]
    got = figures(rollups, settings)
    # cost = 5 x 10 handled = 50; resolutions = 10 - 2 = 8: 6.25
    assert got[("contactcenter_cost_per_resolution", "voice", "sales")] == 6.25
    samples = compute_figures(settings, rollups, NOW)
    thresholds = {s.labels["queue"]: s.value for s in samples
                  if s.name == "contactcenter_service_level_threshold_seconds"}
    assert thresholds == {"default": 20.0, "sales": 30.0}
    window = [s.value for s in samples if s.name == "contactcenter_fcr_window_seconds"]
    assert window == [3 * 86400.0]


def test_the_customer_key_is_never_shown() -> None:
    secret = "a-very-secret-site-key-42"
    settings = Settings.model_validate({"fcr": {"customer_key": secret}})
    assert settings.customer_key == secret.encode()
    assert secret not in repr(settings) and secret not in settings.model_dump_json()
