"""Every parsed number is finite and bounded; every start time is not too far in the future.

Issue 10, item 2: two CSV prices of 1e308 made contactcenter_cost +Inf, `report --format
json` printed `Infinity`, a signed generic webhook with price Infinity or handle_seconds
1e308 was accepted, and price NaN answered 503 on every retry. Also: rows dated up to the
year 2999 were stored. The bounds are adapters.fields.MAX_SECONDS (7 days) and MAX_PRICE
(10,000 per contact); `future` is a start after now + the source's max_future (1 day).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters.asterisk_cdr import AsteriskCdrAdapter, AsteriskCdrSettings, parse_cdr
from adapters.base import AdapterContext, FieldError
from adapters.csv_export import CsvAdapter, CsvSettings, parse_csv
from adapters.fields import MAX_PRICE, MAX_SECONDS, not_future, price, seconds
from adapters.generic_webhook import (
    GenericWebhookAdapter,
    GenericWebhookSettings,
    generic_signature,
    parse_event,
)
from collector.config import Settings
from collector.health import HealthState
from collector.runtime import Exporter, load_config
from collector.webhooks import WebhookReceiver
from tests.conftest import parse_exposition
from tests.vendor_support import new_store

UTC_ZONE = ZoneInfo("UTC")
CONTEXT = AdapterContext(timezone=UTC_ZONE, currency="EUR")
NOW = 1_796_000_000.0  # 2026-11-30T00:53:20Z; `latest` = NOW + 1 day below
DAY = 86400.0


# -- the shared field parser -------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw", [1e308, float("inf"), float("nan"), "Infinity", "1e999", -1, MAX_SECONDS + 1, True]
)
def test_a_duration_must_be_finite_and_under_seven_days(raw: Any) -> None:
    with pytest.raises(FieldError) as caught:
        seconds(raw, "handle_seconds")
    assert caught.value.reason == "duration"


def test_durations_up_to_the_bound_pass() -> None:
    assert MAX_SECONDS == 7 * 86400  # 604800: the documented bound
    assert seconds(604800, "x") == 604800.0 and seconds("42.5", "x") == 42.5
    assert seconds(None, "x", default=0.0) == 0.0
    with pytest.raises(FieldError):  # a default worked out from two times is bounded too
        seconds(None, "x", default=8 * 86400.0)


@pytest.mark.parametrize(
    "raw", ["1e308", 1e308, float("nan"), float("inf"), "inf", "NaN", -0.01, 10000.01, True, [1]]
)
def test_a_price_must_be_finite_and_under_the_bound(raw: Any) -> None:
    with pytest.raises(FieldError) as caught:
        price(raw)
    assert caught.value.reason == "price"


def test_prices_up_to_the_bound_pass() -> None:
    assert MAX_PRICE == 10_000.0
    assert price("10000") == 10000.0 and price(0) == 0.0 and price(" 0.05 ") == 0.05
    assert price(None) is None and price("") is None


def test_not_future() -> None:
    assert not_future(NOW + DAY, NOW + DAY) == NOW + DAY  # exactly the bound: accepted
    assert not_future(NOW + 10 * DAY, None) == NOW + 10 * DAY  # no clock given: no bound
    with pytest.raises(FieldError) as caught:
        not_future(NOW + DAY + 1, NOW + DAY)
    assert caught.value.reason == "future"


# -- CSV ---------------------------------------------------------------------------------------
def csv_settings(path: Path, **extra: Any) -> CsvSettings:
    return CsvSettings.model_validate({
        "name": "vendor", "adapter": "csv", "path": str(path), "channel": "voice",
        "columns": {"id": "id", "started_at": "start", "handle_seconds": "secs",
                    "price": "price"}, **extra,
    })


def test_csv_huge_prices_and_durations_are_rejected_with_a_reason(tmp_path: Path) -> None:
    data = (
        b"id,start,secs,price\n"
        b"A,2026-11-20T10:00:00,60,1e308\n"  # the two prices of 1e308
        b"B,2026-11-20T10:01:00,60,1e308\n"
        b"C,2026-11-20T10:02:00,60,nan\n"
        b"D,2026-11-20T10:03:00,1e308,0.10\n"
        b"E,2026-11-20T10:04:00,604801,0.10\n"  # one second over 7 days
        b"F,2026-11-20T10:05:00,604800,10000\n"  # exactly the bounds: accepted
    )
    result = parse_csv(data, 1, None, csv_settings(tmp_path / "x.csv"), UTC_ZONE)
    assert [c.id for c in result.contacts] == ["F"]
    assert [(r.reason, r.line) for r in result.rejections] == [
        ("price", 2), ("price", 3), ("price", 4), ("duration", 5), ("duration", 6)
    ]


def test_csv_start_more_than_max_future_ahead_is_future(tmp_path: Path) -> None:
    data = (
        b"id,start,secs,price\n"
        b"A,2999-12-31T23:59:59,60,\n"  # the year 2999
        b"B,2026-11-30T23:53:20,60,\n"  # NOW + 1 day - 1 h
        b"C,2026-12-01T01:53:20,60,\n"  # NOW + 1 day + 1 h
    )
    settings = csv_settings(tmp_path / "x.csv")
    result = parse_csv(data, 1, None, settings, UTC_ZONE, latest=NOW + DAY)
    assert [c.id for c in result.contacts] == ["B"]
    assert [(r.reason, r.line) for r in result.rejections] == [("future", 2), ("future", 4)]


def test_csv_adapter_takes_max_future_from_its_settings(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    soon = datetime.fromtimestamp(time.time() + 2 * 3600, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    path.write_text(f"id,start,secs,price\nA,{soon},60,\n")
    default = list(CsvAdapter(csv_settings(path), CONTEXT).pull(None))
    assert [c.id for b in default for c in b.contacts] == ["A"]  # 2 h ahead: within 1 day
    strict = list(CsvAdapter(csv_settings(path, max_future="1h"), CONTEXT).pull(None))
    assert [r.reason for b in strict for r in b.rejections] == ["future"]


# -- Asterisk CDR ------------------------------------------------------------------------------
def cdr(uniqueid: str, start: str, duration: int, billsec: int) -> bytes:
    """An 18-column cdr_csv row in Asterisk's documented column order."""
    return (
        f'"","5551234","100","support-in","<5551234>","SIP/t-1","SIP/100-1","Dial","SIP/100",'
        f'"{start}","{start}","{start}",{duration},{billsec},"ANSWERED","DOCUMENTATION",'
        f'"{uniqueid}",""\n'
    ).encode()


def test_cdr_durations_over_seven_days_and_future_starts_are_rejected() -> None:
    settings = AsteriskCdrSettings(name="pbx", adapter="asterisk_cdr", path=Path("M.csv"),
                                   usegmtime=True)
    data = (
        cdr("1.1", "2026-11-20 10:00:00", 604801, 60)  # duration one second over the bound
        + cdr("1.2", "2026-11-20 10:00:00", 65, 604801)  # billsec over the bound
        + cdr("1.3", "2999-01-01 00:00:00", 65, 60)  # far future
        + cdr("1.4", "2026-11-20 10:00:00", 604800, 604800)  # the bound itself: accepted
    )
    parsed = parse_cdr(data, 1, settings, UTC_ZONE, latest=NOW + DAY)
    assert [leg.call for leg in parsed.legs] == ["1.4"]
    assert [(r.reason, r.line) for r in parsed.rejections] == [
        ("duration", 1), ("duration", 2), ("future", 3)
    ]


def test_cdr_adapter_rejects_future_rows(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(cdr("1.1", "2999-01-01 00:00:00", 65, 60) + cdr("1.2", "2026-11-20 10:00:00", 65, 60))
    settings = AsteriskCdrSettings(name="pbx", adapter="asterisk_cdr", path=path, usegmtime=True)
    batches = list(AsteriskCdrAdapter(settings, CONTEXT).pull(None))
    assert [r.reason for b in batches for r in b.rejections] == ["future"]
    assert [leg.call for b in batches for leg in b.legs] == ["1.2"]


# -- the signed generic webhook ----------------------------------------------------------------
SECRET = "generic-shared-secret"
EVENT = {"id": "evt-1", "channel": "chat", "start": "2026-11-30T00:00:00Z",
         "handle_seconds": 300, "price": 0.05}


@pytest.fixture
def receiver(tmp_path: Path) -> WebhookReceiver:
    health = HealthState()
    health.configure({"crm": 60})
    adapter = GenericWebhookAdapter(
        GenericWebhookSettings(name="crm", adapter="generic_webhook", webhook_secret=SECRET),
        CONTEXT,
    )
    return WebhookReceiver(Settings(), [adapter], new_store(tmp_path), health,
                           max_body_bytes=4096, clock=lambda: NOW)


def post(receiver: WebhookReceiver, body: bytes) -> tuple[int, bytes]:
    stamp = str(int(NOW))
    headers = {"X-Contact-Cost-Timestamp": stamp,
               "X-Contact-Cost-Signature": generic_signature(SECRET, stamp, body)}
    status, _, answer = receiver.handle("POST", "/webhooks/generic/crm", headers, body,
                                        "http://127.0.0.1/webhooks/generic/crm")
    return status, answer


def event_body(**changes: str) -> bytes:
    """EVENT as JSON with raw JSON text for the changed fields (Python's json reads the
    non-standard Infinity and NaN, as the receiver does)."""
    text = json.dumps({k: v for k, v in EVENT.items() if k not in changes})[:-1]
    return (text + "".join(f', "{k}": {v}' for k, v in changes.items()) + "}").encode()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"price": "Infinity"}, b"price"),
        ({"price": "NaN"}, b"price"),  # was 503 on every retry (IntegrityError in the store)
        ({"price": "1e308"}, b"price"),
        ({"price": '"0.05"'}, b"price"),  # a string where a JSON number belongs
        ({"handle_seconds": "1e308"}, b"duration"),
        ({"talk_seconds": "Infinity"}, b"duration"),
        ({"start": '"2999-01-01T00:00:00Z"'}, b"future"),
    ],
)
def test_webhook_with_an_unusable_number_is_a_rejected_record(
    receiver: WebhookReceiver, changes: dict[str, str], reason: bytes
) -> None:
    status, answer = post(receiver, event_body(**changes))
    assert (status, answer) == (400, b"rejected: " + reason + b"\n")
    # Once more, as a sender retries: the same answer, never a 503.
    assert post(receiver, event_body(**changes))[0] == 400
    values = parse_exposition(receiver.health.body.decode())
    key = ("contactcenter_webhook_requests_total", frozenset({"source": "crm",
                                                              "status": "rejected"}.items()))
    assert values[key] == 2.0


def test_webhook_within_the_bounds_is_stored(receiver: WebhookReceiver) -> None:
    assert post(receiver, event_body(price="10000", handle_seconds="604800"))[0] == 200


def test_parse_event_without_a_clock_has_no_future_bound() -> None:
    settings = GenericWebhookSettings(name="crm", adapter="generic_webhook", webhook_secret=SECRET)
    far = {**EVENT, "start": "2999-01-01T00:00:00Z"}
    assert parse_event(far, settings).start > NOW
    with pytest.raises(FieldError):
        parse_event(far, settings, latest=NOW + DAY)


# -- figures and the JSON report stay finite ---------------------------------------------------
CONFIG = """
timezone = "UTC"
store = "{store}"

[[sources]]
name = "vendor"
adapter = "csv"
path = "{csv}"
channel = "voice"
columns = {{ id = "id", started_at = "start", handle_seconds = "secs", price = "price" }}

[[costs]]
name = "Outsourced handling"
component = "other"
per_contact = 2.0
"""


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_two_prices_of_1e308_make_no_infinite_figure(tmp_path: Path) -> None:
    csv_path = tmp_path / "calls.csv"
    csv_path.write_text(
        "id,start,secs,price\n"
        "A,2026-11-02T10:00:00,60,1e308\n"
        "B,2026-11-02T11:00:00,60,1e308\n"
        "C,2026-11-02T12:00:00,60,0.25\n"
    )
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(store=tmp_path / "state.db", csv=csv_path))
    exporter = Exporter(load_config(config))
    try:
        exporter.ingest("vendor")
        snapshot = exporter.recompute(datetime(2026, 11, 10, tzinfo=UTC))
        values = parse_exposition(snapshot.body.decode())
    finally:
        exporter.close()
    assert values and all(math.isfinite(v) for v in values.values())
    month = {"period": "month", "window": "current", "channel": "voice",
             "direction": "inbound", "queue": "other"}
    # Only C is stored: 1 contact; telephony is its price 0.25, other 2.00 per contact.
    assert values[("contactcenter_contacts", frozenset(month.items()))] == 1.0
    assert values[("contactcenter_cost", frozenset({**month, "component": "telephony"}.items()))] == 0.25
    result = subprocess.run(
        [sys.executable, "-m", "collector", "report", "--config.file", str(config),
         "--at", "2026-11-10T00:00:00+00:00", "--period", "month", "--format", "json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    strict_json(result.stdout)  # no Infinity or NaN anywhere


def test_allocation_of_a_huge_amount_does_not_overflow() -> None:
    from datetime import date

    from collector.allocation import compute_figures
    from collector.config import CostItem
    from collector.model import Rollup

    settings = Settings(costs=[CostItem.model_validate(
        {"name": "big", "component": "other", "amount": 1e306, "per": "month"})])
    # Two label sets with handle times 4e5 and 2e5 s: 1e306 * 4e5 alone would be +Inf.
    day = date(2026, 11, 2)
    rollups = [
        Rollup(day, "voice", "inbound", "a", "", 10, 10, 4e5, 4e5, 0.0, 0.0),
        Rollup(day, "voice", "inbound", "b", "", 10, 10, 2e5, 2e5, 0.0, 0.0),
    ]
    figures = compute_figures(settings, rollups, datetime(2026, 11, 30, 23, 59, tzinfo=UTC))
    assert figures and all(math.isfinite(s.value) for s in figures)


# -- vendor parsers: the same bounds and the same `future` -------------------------------------
def test_twilio_price_of_infinity_is_rejected_and_a_future_call_too() -> None:
    from adapters.twilio import TwilioSettings, parse_call

    settings = TwilioSettings(name="tw", adapter="twilio", account_sid="AC" + "0" * 32,
                              auth_token="t")
    # A Calls-list resource (Twilio API 2010-04-01): RFC 2822 times, price negative.
    call = {"sid": "CA1", "status": "completed", "direction": "inbound",
            "start_time": "Mon, 30 Nov 2026 00:00:00 +0000", "duration": "60",
            "price": "-0.0085", "price_unit": "EUR"}
    contact = parse_call(call, settings, "EUR", NOW)
    assert contact is not None and contact.price == 0.0085
    for raw in ("-Infinity", "NaN", "-1e308"):
        with pytest.raises(FieldError) as caught:
            parse_call({**call, "price": raw}, settings, "EUR", NOW)
        assert caught.value.reason == "price", raw
    with pytest.raises(FieldError) as caught:
        parse_call({**call, "start_time": "Tue, 01 Jan 2999 00:00:00 +0000"}, settings, "EUR", NOW)
    assert caught.value.reason == "future"


def test_aircall_infinite_duration_and_future_start_are_rejected() -> None:
    from adapters.aircall import AircallSettings, parse_call

    settings = AircallSettings(name="ac", adapter="aircall", api_id="i", api_token="t")
    # An Aircall call object: UNIX seconds; `duration` in seconds.
    call = {"id": 1, "status": "done", "direction": "inbound", "started_at": NOW - 600,
            "answered_at": NOW - 590, "ended_at": NOW - 500, "duration": 100}
    assert parse_call(call, settings, NOW + DAY) is not None
    with pytest.raises(FieldError) as caught:
        parse_call({**call, "duration": float("inf")}, settings, NOW + DAY)
    assert caught.value.reason == "duration"
    later = {**call, "started_at": NOW + 2 * DAY, "answered_at": NOW + 2 * DAY,
             "ended_at": NOW + 2 * DAY + 60}
    with pytest.raises(FieldError) as caught:
        parse_call(later, settings, NOW + DAY)
    assert caught.value.reason == "future"


def test_liveagent_future_call_is_rejected() -> None:
    from adapters.liveagent import LiveAgentSettings, parse_call

    settings = LiveAgentSettings(name="la", adapter="liveagent", subdomain="x", api_key="k")
    # A LiveAgent /calls item (CallListItem, camelCase): "YYYY-MM-DD HH:MM:SS" in
    # api_timezone (UTC here).
    call = {"id": "c1", "type": "I", "dateCreated": "2026-11-30 00:00:00",
            "dateAnswered": "2026-11-30 00:00:10", "dateFinished": "2026-11-30 00:01:10"}
    assert parse_call(call, settings, NOW) is not None
    with pytest.raises(FieldError) as caught:
        parse_call({**call, "dateCreated": "9999-12-31 23:59:59"}, settings, NOW)
    assert caught.value.reason == "future"


def test_zendesk_and_freshdesk_tickets_created_in_the_future_are_rejected() -> None:
    from adapters import freshdesk, zendesk

    z_settings = zendesk.ZendeskSettings(name="z", adapter="zendesk", subdomain="acme",
                                         email="a@b.c", api_token="t")
    # Zendesk incremental export ticket: ISO 8601 created_at, status solved.
    ticket = {"id": 7, "status": "solved", "created_at": "2026-11-29T10:00:00Z"}
    assert zendesk.parse_ticket(ticket, z_settings, None, NOW + DAY) is not None
    with pytest.raises(FieldError) as caught:
        zendesk.parse_ticket({**ticket, "created_at": "2999-01-01T00:00:00Z"}, z_settings,
                             None, NOW + DAY)
    assert caught.value.reason == "future"
    f_settings = freshdesk.FreshdeskSettings(name="f", adapter="freshdesk", domain="acme",
                                             api_key="k")
    # Freshdesk ticket: ISO 8601 created_at, status 4 (resolved).
    ticket = {"id": 8, "status": 4, "created_at": "2026-11-29T10:00:00Z", "source": 1}
    assert freshdesk.parse_ticket(ticket, f_settings, NOW + DAY) is not None
    with pytest.raises(FieldError) as caught:
        freshdesk.parse_ticket({**ticket, "created_at": "2999-01-01T00:00:00Z"}, f_settings,
                               NOW + DAY)
    assert caught.value.reason == "future"


def test_twilio_status_callback_from_the_future_is_rejected() -> None:
    from adapters.twilio import TwilioSettings, parse_status_callback

    settings = TwilioSettings(name="tw", adapter="twilio", account_sid="AC" + "0" * 32,
                              auth_token="t")
    # Twilio's status callback parameters (form-encoded): Timestamp is RFC 2822.
    params = {"CallSid": "CA2", "CallStatus": "completed", "Direction": "inbound",
              "CallDuration": "30", "Timestamp": "Mon, 30 Nov 2026 00:10:00 +0000"}
    assert parse_status_callback(params, settings, NOW + DAY) is not None
    with pytest.raises(FieldError) as caught:
        parse_status_callback({**params, "Timestamp": "Tue, 01 Jan 2999 00:00:00 +0000"},
                              settings, NOW + DAY)
    assert caught.value.reason == "future"
