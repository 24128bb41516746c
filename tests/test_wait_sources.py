"""Which sources know the wait (issue 11 item 4): Aircall answered_at - started_at, a csv
`wait_seconds` column; Twilio's Calls resource has none (its queue_time is the CPS wait
before an API-created call is placed, not time in a contact-center queue)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from adapters.aircall import AircallSettings, parse_call
from adapters.csv_export import CsvSettings, parse_csv
from adapters.twilio import TwilioSettings
from adapters.twilio import parse_call as parse_twilio_call
from tests.vendor_support import fixture

UTC = ZoneInfo("UTC")


def test_aircall_wait_is_answered_minus_started_for_inbound_calls() -> None:
    settings = AircallSettings(name="a", adapter="aircall", api_id="id", api_token="t")
    calls = {c["id"]: c for page in ("calls_page1.json", "calls_page2.json")
             for c in fixture("aircall", page)["calls"] if c["status"] == "done"}
    waits = {}
    for call_id, call in calls.items():
        contact = parse_call(call, settings)
        assert contact is not None
        waits[call_id] = (contact.handled, contact.wait_seconds)
    assert waits == {
        812345001: (True, 20.0),  # answered_at 1773133220 - started_at 1773133200
        812345002: (False, 25.0),  # missed: ended_at 1773135025 - started_at 1773135000
        812345003: (True, None),  # outbound: the callee's ring is no queue wait
    }


def test_csv_wait_seconds_column() -> None:
    settings = CsvSettings.model_validate({
        "name": "c", "adapter": "csv", "path": "x.csv", "channel": "voice",
        "columns": {"id": "id", "started_at": "start", "talk_seconds": "talk",
                    "handled": "status", "wait_seconds": "wait"},
        "handled_values": {"done": True, "missed": False},
    })
    data = (b"id,start,talk,status,wait\n"
            b"1,2026-11-02 09:00:00,120,done,18\n"
            b"2,2026-11-02 09:05:00,0,missed,3.5\n"
            b"3,2026-11-02 09:10:00,60,done,\n"  # empty: not known
            b"4,2026-11-02 09:15:00,60,done,-4\n")  # not a duration: rejected
    result = parse_csv(data, 1, None, settings, UTC)
    assert [(c.id, c.wait_seconds) for c in result.contacts] == [
        ("1", 18.0), ("2", 3.5), ("3", None)]
    assert [(r.reason, r.line) for r in result.rejections] == [("duration", 5)]


def test_twilio_calls_carry_no_wait() -> None:
    page = fixture("twilio", "calls_page1.json")
    settings = TwilioSettings(name="t", adapter="twilio", account_sid="AC" + "0" * 32,
                              auth_token="secret")
    calls = [c for c in page["calls"] if c.get("status") in ("completed", "no-answer", "busy")]
    assert calls
    for call in calls:
        contact = parse_twilio_call(call, settings, "USD", now=2e9)
        assert contact is None or contact.wait_seconds is None
