"""Aircall /v1/calls against a real loopback server: windows, paging, the 10,000 cap, restarts."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer

from adapters.aircall import AircallAdapter, AircallSettings, parse_call, parse_calls_page
from adapters.base import SourceError
from tests.vendor_support import (
    CONTEXT,
    FAST,
    crash_after,
    drain,
    fixture,
    new_store,
    stored_ids,
)

DAY0 = 1773100800  # 2026-03-10 00:00 UTC
DAY1 = DAY0 + 86400
NOW = datetime(2026, 3, 10, 23, 0, tzinfo=UTC).timestamp()
HORIZON = int(NOW - 300)
DONE = ["812345001", "812345002", "812345003"]


def adapter(httpserver: HTTPServer, **extra: object) -> AircallAdapter:
    settings = AircallSettings(
        name="aircall-eu", adapter="aircall", base_url=httpserver.url_for("/"),
        api_id="aircall-id", api_token="aircall-secret", start_date=date(2026, 3, 10),
        per_page=2, queues={"Support FR": "support", "Sales UK": "sales"},
        outcomes={"Sale": "sale", "Lead": "lead"}, **{**FAST, **extra},
    )
    return AircallAdapter(settings, CONTEXT, clock=lambda: NOW)


def query(frm: int, to: int, page: int) -> dict[str, str]:
    return {"from": str(frm), "to": str(to), "per_page": "2", "page": str(page), "order": "asc"}


def empty() -> dict[str, object]:
    return {"meta": {"count": 0, "total": 0, "current_page": 1, "per_page": 2,
                     "next_page_link": None, "previous_page_link": None}, "calls": []}


def serve_day(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/calls", query_string=query(DAY0, HORIZON, 1)).respond_with_json(
        fixture("aircall", "calls_page1.json"))
    httpserver.expect_request("/v1/calls", query_string=query(DAY0, HORIZON, 2)).respond_with_json(
        fixture("aircall", "calls_page2.json"))
    httpserver.expect_request("/v1/calls").respond_with_json(empty())


def test_pages_through_a_window_and_maps_the_call_fields(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve_day(httpserver)
    store = new_store(tmp_path)
    batches = drain(adapter(httpserver), store)
    assert stored_ids(store, "aircall-eu") == DONE  # the call still in progress waits
    by_id = {c.id: c for b in batches for c in b.contacts}
    answered = by_id["812345001"]
    assert answered.handled and answered.queue == "support" and answered.outcome == "sale"
    # talk = ended_at - answered_at = 1773133600 - 1773133220 = 380 s. The user's
    # `wrap_up_time` (30) is not added: Aircall documents it as the user's pre-set wrap-up
    # timer, "triggered after a call has ended, during which the user can't receive any
    # calls" (Call object, developer.aircall.io; reproduced in Monta's partner DWH docs,
    # docs.partner-dwh.monta.com/docs/aircall-calls), i.e. a setting, not measured work.
    assert answered.talk_seconds == 380 and answered.handle_seconds == 380
    assert answered.billable_seconds == 400 and answered.start == 1773133200
    missed = by_id["812345002"]
    assert not missed.handled and missed.reason == "no_available_agent"
    outbound = by_id["812345003"]
    assert outbound.direction == "outbound" and outbound.outcome == "lead"
    assert outbound.queue == "sales"
    # the unfinished call (started 11:45) holds the next window's start
    assert json.loads(store.position("aircall-eu") or "") == {"from": 1773143100}
    first = httpserver.log[0][0]
    assert first.authorization is not None and first.authorization.username == "aircall-id"


def test_next_run_overlaps_from_the_watermark_and_counts_nothing_twice(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve_day(httpserver)
    store = new_store(tmp_path)
    drain(adapter(httpserver), store)
    httpserver.clear()
    page2 = fixture("aircall", "calls_page2.json")
    page2["calls"][1].update(status="done", ended_at=1773143400, duration=300)
    page2["meta"].update(next_page_link=None, current_page=1)
    httpserver.expect_request("/v1/calls", query_string=query(1773143100, HORIZON, 1)
                              ).respond_with_json(page2)
    drain(adapter(httpserver), store)
    assert stored_ids(store, "aircall-eu") == [*DONE, "812345004"]
    assert store.counts()["aircall-eu"] == 4


def test_crash_between_pages_resumes_with_no_gap_and_no_duplicate(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve_day(httpserver)
    store = new_store(tmp_path)
    crash_after(adapter(httpserver), store, "aircall-eu")
    assert json.loads(store.position("aircall-eu") or "")["page"] == 2
    drain(adapter(httpserver), store)
    assert stored_ids(store, "aircall-eu") == DONE
    assert parse_qs(httpserver.log[1][0].query_string.decode())["page"] == ["2"]


def test_a_window_over_the_10000_cap_is_halved_before_reading(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    crowded = empty()
    crowded["meta"]["total"] = 12_000  # type: ignore[index]
    httpserver.expect_request("/v1/calls", query_string=query(DAY0, HORIZON, 1)
                              ).respond_with_json(crowded)
    httpserver.expect_request("/v1/calls").respond_with_json(empty())
    drain(adapter(httpserver), new_store(tmp_path))
    second = parse_qs(httpserver.log[1][0].query_string.decode())
    assert second["from"] == [str(DAY0)]
    assert int(second["to"][0]) == DAY0 + (HORIZON - DAY0) // 2


def test_windows_walk_forward_to_the_horizon(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/v1/calls").respond_with_json(empty())
    settings = adapter(httpserver).settings
    later = datetime(2026, 3, 12, 12, 0, tzinfo=UTC).timestamp()
    store = new_store(tmp_path)
    drain(AircallAdapter(settings, CONTEXT, clock=lambda: later), store)
    windows = [parse_qs(r.query_string.decode()) for r, _ in httpserver.log]
    assert [(w["from"][0], w["to"][0]) for w in windows] == [
        (str(DAY0), str(DAY1)), (str(DAY1), str(DAY1 + 86400)),
        (str(DAY1 + 86400), str(int(later - 300))),
    ]
    assert json.loads(store.position("aircall-eu") or "") == {"from": later - 300}


def test_401_is_a_clear_source_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/calls").respond_with_json({"error": "Unauthorized"},
                                                             status=401)
    with pytest.raises(SourceError) as caught:
        list(adapter(httpserver).pull(None))
    assert caught.value.reason == "auth" and "/v1/calls" in str(caught.value)
    assert "aircall-secret" not in str(caught.value)


def test_malformed_page_is_counted_and_the_position_stays(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/v1/calls").respond_with_json({"calls": [], "meta": None})
    store = new_store(tmp_path)
    (batch,) = drain(adapter(httpserver), store)
    assert [r.reason for r in batch.rejections] == ["shape"] and batch.position is None
    assert store.position("aircall-eu") is None


def test_wrap_up_time_is_the_configured_allowance_not_measured_work() -> None:
    """The same call, once with the user's timer at 30 s and once at 300 s: same handle.

    `user.wrap_up_time` is part of the user object, present before the call has ended, so
    it cannot be a measurement of this call's after-call work.
    """
    call = fixture("aircall", "calls_page1.json")["calls"][0]
    settings = AircallSettings(name="a", adapter="aircall", api_id="id", api_token="t")
    short = parse_call({**call, "user": {**call["user"], "wrap_up_time": 30}}, settings)
    long = parse_call({**call, "user": {**call["user"], "wrap_up_time": 300}}, settings)
    assert short is not None and long is not None
    assert short.handle_seconds == long.handle_seconds == 380.0  # talk only


def test_a_reread_bad_call_carries_one_fingerprint() -> None:
    """A bad call read twice (Aircall windows overlap) is the same record both times."""
    call = {**fixture("aircall", "calls_page1.json")["calls"][0], "direction": "sideways"}
    page = {"meta": {"total": 1, "next_page_link": None}, "calls": [call]}
    settings = AircallSettings(name="a", adapter="aircall", api_id="id", api_token="t")
    first = parse_calls_page(page, settings, now=1773190000).rejections
    again = parse_calls_page(page, settings, now=1773190600).rejections
    assert [r.reason for r in first] == ["direction"]
    assert first[0].record and first[0].record == again[0].record
