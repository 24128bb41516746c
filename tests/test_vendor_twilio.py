"""Twilio Calls list against a real loopback server: paging, watermark, prices, restarts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from adapters.base import SourceError
from adapters.twilio import TwilioAdapter, TwilioSettings, parse_status_callback
from tests.vendor_support import (
    CONTEXT,
    FAST,
    crash_after,
    drain,
    fixture,
    new_store,
    stored_ids,
)

SID = "AC00000000000000000000000000000001"
CALLS = f"/2010-04-01/Accounts/{SID}/Calls.json"
NOW = datetime(2026, 3, 12, tzinfo=UTC).timestamp()
PAGE1_IDS = [f"CA0000000000000000000000000000000{i}" for i in (3, 4, 5)]
PAGE2_IDS = [f"CA0000000000000000000000000000000{i}" for i in (1, 2)]  # the <Dial> leg is skipped


def adapter(httpserver: HTTPServer, **extra: object) -> TwilioAdapter:
    settings = TwilioSettings(
        name="twilio-main", adapter="twilio", base_url=httpserver.url_for("/"),
        account_sid=SID, auth_token="tok3n", page_size=3,
        queues={"+14155550199": "support", "+14155550188": "telesales"}, **{**FAST, **extra},
    )
    return TwilioAdapter(settings, CONTEXT, clock=lambda: NOW)


def serve_two_pages(httpserver: HTTPServer) -> None:
    httpserver.expect_request(CALLS, query_string={"PageSize": "3"}).respond_with_json(
        fixture("twilio", "calls_page1.json")
    )
    httpserver.expect_request(
        CALLS, query_string={"PageSize": "3", "Page": "1",
                             "PageToken": "PACA00000000000000000000000000000003"}
    ).respond_with_json(fixture("twilio", "calls_page2.json"))


def test_follows_next_page_uri_to_the_end_and_maps_fields(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve_two_pages(httpserver)
    store = new_store(tmp_path)
    batches = drain(adapter(httpserver), store)
    assert len(batches) == 2
    assert stored_ids(store, "twilio-main") == sorted(PAGE1_IDS + PAGE2_IDS)
    by_id = {c.id: c for b in batches for c in b.contacts}
    answered = by_id["CA00000000000000000000000000000005"]
    assert answered.direction == "inbound" and answered.queue == "support"
    assert answered.handled and answered.handle_seconds == 437 and answered.price == 0.0175
    assert answered.start == datetime(2026, 3, 10, 14, 2, 12, tzinfo=UTC).timestamp()
    assert answered.customer and "555" not in answered.customer
    missed = by_id["CA00000000000000000000000000000004"]
    assert not missed.handled and missed.reason == "no_answer" and missed.price is None
    outbound = by_id["CA00000000000000000000000000000003"]
    assert outbound.direction == "outbound" and outbound.queue == "telesales"
    assert by_id["CA00000000000000000000000000000001"].reason == "busy"
    # the next run starts from the newest final call's day (overlap, deduplicated by id)
    assert json.loads(store.position("twilio-main") or "") == {"since": "2026-03-10"}
    request = httpserver.log[0][0]
    assert request.authorization is not None and request.authorization.username == SID


def test_next_run_filters_on_start_time_from_the_watermark(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    store = new_store(tmp_path)
    store.commit("twilio-main", [], json.dumps({"since": "2026-03-10"}))
    httpserver.expect_request(
        CALLS, query_string={"PageSize": "3", "StartTime>=": "2026-03-10"}
    ).respond_with_json(fixture("twilio", "calls_page1.json") | {"next_page_uri": None})
    drain(adapter(httpserver), store)
    drain(adapter(httpserver), store)  # the same page again: nothing counts twice
    assert stored_ids(store, "twilio-main") == PAGE1_IDS


def test_crash_between_pages_resumes_with_no_gap_and_no_duplicate(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve_two_pages(httpserver)
    store = new_store(tmp_path)
    # The process dies after page 1 is committed, before page 2 is asked for.
    crash_after(adapter(httpserver), store, "twilio-main", position=store.position("twilio-main"))
    assert len(httpserver.log) == 1
    restarted = adapter(httpserver)
    drain(restarted, store)
    assert stored_ids(store, "twilio-main") == sorted(PAGE1_IDS + PAGE2_IDS)
    assert store.counts()["twilio-main"] == 5
    assert "PageToken" in httpserver.log[1][0].query_string.decode()  # resumed at page 2


def test_price_in_another_currency_bad_duration_and_pending_calls(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request(CALLS).respond_with_json(fixture("twilio", "calls_eur_and_bad.json"))
    store = new_store(tmp_path)
    (batch,) = drain(adapter(httpserver), store)
    assert batch.contacts == []
    assert sorted(r.reason for r in batch.rejections) == ["currency", "duration", "shape"]
    assert all("tok3n" not in r.detail for r in batch.rejections)
    # the in-progress call holds the watermark at its own day
    assert json.loads(store.position("twilio-main") or "") == {"since": "2026-03-11"}


def test_unbilled_call_waits_for_its_price_within_the_grace(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    page = fixture("twilio", "calls_page2.json")
    httpserver.expect_request(CALLS).respond_with_json(page)
    settings = adapter(httpserver).settings
    just_after = datetime(2026, 3, 10, 11, 10, tzinfo=UTC).timestamp()
    early = TwilioAdapter(settings, CONTEXT, clock=lambda: just_after)
    store = new_store(tmp_path)
    drain(early, store)
    # CA..02 ended 11:03 with no price yet: held back, and it holds the watermark
    assert stored_ids(store, "twilio-main") == ["CA00000000000000000000000000000001"]
    assert json.loads(store.position("twilio-main") or "") == {"since": "2026-03-10"}


def test_401_is_a_clear_source_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request(CALLS).respond_with_json(
        {"code": 20003, "message": "Authenticate", "status": 401}, status=401
    )
    with pytest.raises(SourceError) as caught:
        list(adapter(httpserver).pull(None))
    assert caught.value.reason == "auth"
    assert "Calls.json" in str(caught.value) and "tok3n" not in str(caught.value)


def test_malformed_page_is_a_counted_rejection_and_the_position_stays(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request(CALLS).respond_with_json({"calls": "oops"})
    store = new_store(tmp_path)
    store.commit("twilio-main", [], json.dumps({"since": "2026-03-01"}))
    (batch,) = drain(adapter(httpserver), store)
    assert [r.reason for r in batch.rejections] == ["shape"]
    assert batch.position is None
    assert json.loads(store.position("twilio-main") or "") == {"since": "2026-03-01"}


def test_stale_page_link_restarts_from_the_watermark(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    stale = f"{CALLS}?PageSize=3&Page=4&PageToken=PAgone"
    httpserver.expect_request(CALLS, query_string={"PageSize": "3", "Page": "4",
                                                   "PageToken": "PAgone"}).respond_with_json(
        {"code": 20404, "status": 404}, status=404
    )
    httpserver.expect_request(
        CALLS, query_string={"PageSize": "3", "StartTime>=": "2026-03-09"}
    ).respond_with_json(fixture("twilio", "calls_page2.json"))
    store = new_store(tmp_path)
    store.commit("twilio-main", [], json.dumps({"since": "2026-03-09", "next": stale}))
    drain(adapter(httpserver), store)
    assert stored_ids(store, "twilio-main") == PAGE2_IDS


def test_stale_page_link_is_logged_with_control_characters_escaped(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stale = f"{CALLS}\x1b[2J\u202e?PageSize=3&Page=4&PageToken=PAgone"
    httpserver.expect_request(
        CALLS, query_string={"PageSize": "3", "StartTime>=": "2026-03-09"}
    ).respond_with_json(fixture("twilio", "calls_page2.json"))
    store = new_store(tmp_path)
    store.commit("twilio-main", [], json.dumps({"since": "2026-03-09", "next": stale}))
    source = adapter(httpserver)
    real_get = source.client.get

    def get(url: str, params: object = None) -> object:
        if url == stale:
            raise SourceError(f"{url.split('?')[0]} answered 404", "http_error")
        return real_get(url, params)  # type: ignore[arg-type]

    monkeypatch.setattr(source.client, "get", get)
    with caplog.at_level("WARNING", logger="adapters.twilio"):
        drain(source, store)
    assert stored_ids(store, "twilio-main") == PAGE2_IDS
    (line,) = [r.getMessage() for r in caplog.records if "restarting from" in r.getMessage()]
    assert "\x1b" not in line and "\u202e" not in line
    assert "\\x1b[2J\\u202e answered 404" in line


def test_status_callback_parameters_become_a_contact() -> None:
    settings = TwilioSettings(name="t", adapter="twilio", account_sid=SID, auth_token="x",
                              queues={"+14155550199": "support"})
    params = {
        "AccountSid": SID, "CallSid": "CA00000000000000000000000000000077",
        "CallStatus": "completed", "CallDuration": "42", "Direction": "inbound",
        "From": "+14155550123", "To": "+14155550199", "ApiVersion": "2010-04-01",
        "Timestamp": "Tue, 10 Mar 2026 14:00:42 +0000", "SequenceNumber": "3",
    }
    contact = parse_status_callback(params, settings)
    assert contact is not None and contact.handled and contact.queue == "support"
    assert contact.start == datetime(2026, 3, 10, 14, 0, 0, tzinfo=UTC).timestamp()
    assert parse_status_callback({**params, "CallStatus": "ringing"}, settings) is None
