"""LiveAgent API v3 calls and tickets against a real loopback server.

The call bodies are shaped exactly as the vendor's published OpenAPI `CallListItem`
(QualityUnit/LiveAgent-api-python, liveagent_api/models/call_list_item.py: the JSON keys of
its attribute_map, camelCase; `type` I incoming, O outgoing, T internal), and /calls pages
as documented: `_perPage`, `_filters`, `_sortField`, `_sortDir` and `_cursor`
(docs/CallsApi.md, get_calls_list), the next cursor in the `next_page_cursor` response
header ("How to work with _cursor parameter", support.liveagent.com/865654). Tickets keep
their snake_case fields and `_page` paging (docs/TicketsApi.md, get_tickets_list).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from adapters.base import SourceError
from adapters.liveagent import LiveAgentAdapter, LiveAgentSettings, parse_call, parse_page
from collector.health import HealthState
from tests.vendor_support import (
    CONTEXT,
    FAST,
    crash_after,
    drain,
    fixture,
    new_store,
    stored_ids,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()
START = "2026-03-01 00:00:00"
EXPECTED = ["call:c8f2a1b3", "call:c8f2a1b4", "ticket:t1a2b3c4", "ticket:t1a2b3c5"]


def adapter(httpserver: HTTPServer, **extra: object) -> LiveAgentAdapter:
    settings = LiveAgentSettings(
        name="liveagent", adapter="liveagent", base_url=httpserver.url_for("/api/v3/"),
        api_key="la-api-key", start=START, per_page=2,
        queues={"dep_support": "support", "dep_sales": "sales",  # tickets: departmentid
                "+421250000000": "support", "+421250000001": "sales"},  # calls: viaNumber
        outcomes={"fqr2": "resolved"},
        **{**FAST, **extra},
    )
    return LiveAgentAdapter(settings, CONTEXT, clock=lambda: NOW)


# Every key of the published CallListItem schema, and nothing else.
CALL_LIST_ITEM = {"id", "ticketId", "type", "fromNumber", "fromName", "toNumber", "toName",
                  "viaNumber", "dateCreated", "dateAnswered", "dateFinished", "callDuration"}


def cursor_after(call_id: str) -> str:
    """The vendor's cursor: base64 of a JSON object with the last loaded record's id."""
    return base64.b64encode(json.dumps({"id": call_id}).encode()).decode()


def query(page: int, since: str = START) -> dict[str, str]:
    return {"_page": str(page), "_perPage": "2", "_sortField": "date_created", "_sortDir": "ASC",
            "_filters": json.dumps([["date_created", "D>=", since]])}


def calls_query(cursor: str | None = None, since: str = START) -> dict[str, str]:
    params = {"_perPage": "2", "_sortField": "dateCreated", "_sortDir": "ASC",
              "_filters": json.dumps([["dateCreated", "D>=", since]])}
    return {**params, "_cursor": cursor} if cursor else params


def serve_calls(httpserver: HTTPServer) -> None:
    """Page 1 (no cursor) -> cursor after c8f2a1b4 -> page 2 -> cursor after c8f2a1b6 -> []."""
    pages = [(None, fixture("liveagent", "calls_page1.json"), cursor_after("c8f2a1b4")),
             (cursor_after("c8f2a1b4"), fixture("liveagent", "calls_page2.json"),
              cursor_after("c8f2a1b6")),
             (cursor_after("c8f2a1b6"), [], None)]
    for cursor, body, following in pages:
        headers = {NEXT: following} if following else {}
        httpserver.expect_request(
            "/api/v3/calls", query_string=calls_query(cursor), headers={"apikey": "la-api-key"}
        ).respond_with_json(body, headers=headers)


NEXT = "next_page_cursor"


def serve(httpserver: HTTPServer) -> None:
    serve_calls(httpserver)
    tickets = fixture("liveagent", "tickets_page1.json")
    for number, body in enumerate([tickets[:2], tickets[2:], []], start=1):
        httpserver.expect_request("/api/v3/tickets", query_string=query(number),
                                  headers={"apikey": "la-api-key"}).respond_with_json(body)


def test_call_fixtures_are_shaped_as_the_published_schema() -> None:
    for name in ("calls_page1.json", "calls_page2.json"):
        for call in fixture("liveagent", name):
            assert set(call) == CALL_LIST_ITEM, name


def test_reads_calls_then_tickets_and_maps_them(httpserver: HTTPServer, tmp_path: Path) -> None:
    serve(httpserver)
    store = new_store(tmp_path)
    batches = drain(adapter(httpserver), store)
    assert stored_ids(store, "liveagent") == EXPECTED
    by_id = {c.id: c for b in batches for c in b.contacts}
    inbound = by_id["call:c8f2a1b3"]
    # talk = dateFinished - dateAnswered = 08:05:15 - 08:00:15 = 300 s; billable =
    # callDuration "315"; queue from viaNumber +421250000000 -> support
    assert (inbound.direction, inbound.queue, inbound.handled, inbound.talk_seconds,
            inbound.billable_seconds) == ("inbound", "support", True, 300.0, 315.0)
    assert inbound.start == datetime(2026, 3, 9, 8, 0, tzinfo=UTC).timestamp()
    outbound = by_id["call:c8f2a1b4"]  # type O, never answered: missed, nothing billed
    assert (outbound.direction, outbound.queue, outbound.handled, outbound.reason,
            outbound.billable_seconds) == ("outbound", "sales", False, "missed", 0.0)
    assert all(not b.rejections for b in batches)  # every call is read, none rejected
    email = by_id["ticket:t1a2b3c4"]
    assert (email.channel, email.queue, email.outcome) == ("email", "support", "resolved")
    old_chat = by_id["ticket:t1a2b3c5"]
    assert (old_chat.channel, old_chat.handled, old_chat.reason) == ("chat", False, "unanswered")
    state = json.loads(store.position("liveagent") or "")
    assert state == {"calls": {"since": "2026-03-09 10:00:00"},  # the call still running
                     "tickets": {"since": "2026-03-09 08:30:00"}}


def test_crash_between_pages_resumes_with_no_gap_and_no_duplicate(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve(httpserver)
    store = new_store(tmp_path)
    # Three call pages and the first ticket page, then the process dies.
    crash_after(adapter(httpserver), store, "liveagent", batches=4)
    # the calls stream had finished: the restart reads it again from its watermark
    httpserver.expect_request(
        "/api/v3/calls", query_string=calls_query(since="2026-03-09 10:00:00")
    ).respond_with_json(fixture("liveagent", "calls_page2.json")[1:])
    drain(adapter(httpserver), store)
    assert stored_ids(store, "liveagent") == EXPECTED
    assert store.counts()["liveagent"] == 4
    resumed = next(r for r, _ in httpserver.log[4:] if r.path == "/api/v3/tickets")
    assert resumed.args["_page"] == "2"


def test_crash_between_call_pages_resumes_at_the_saved_cursor(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve(httpserver)
    store = new_store(tmp_path)
    crash_after(adapter(httpserver, read_tickets=False), store, "liveagent", batches=1)
    state = json.loads(store.position("liveagent") or "")
    assert state["calls"]["cursor"] == cursor_after("c8f2a1b4")
    drain(adapter(httpserver, read_tickets=False), store)
    assert stored_ids(store, "liveagent") == ["call:c8f2a1b3", "call:c8f2a1b4"]
    calls = [r.args.get("_cursor") for r, _ in httpserver.log if r.path == "/api/v3/calls"]
    # first run: page 1; the restart: page 2 by its cursor, then the empty page 3
    assert calls == [None, cursor_after("c8f2a1b4"), cursor_after("c8f2a1b6")]


def test_a_page_without_next_cursor_is_the_last(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/api/v3/calls", query_string=calls_query()).respond_with_json(
        fixture("liveagent", "calls_page1.json"))  # full page, but no next_page_cursor
    store = new_store(tmp_path)
    drain(adapter(httpserver, read_tickets=False), store)
    assert stored_ids(store, "liveagent") == ["call:c8f2a1b3", "call:c8f2a1b4"]
    assert len(httpserver.log) == 1


def test_a_bad_call_reread_in_the_overlap_is_counted_once() -> None:
    """The calls stream re-reads from its watermark on every poll; one bad record, one count."""
    bad = {**fixture("liveagent", "calls_page1.json")[0], "dateFinished": "yesterday"}
    settings = LiveAgentSettings(name="la", adapter="liveagent", subdomain="a", api_key="k")
    health = HealthState()
    health.configure({"la": 60.0})
    for poll in range(3):  # the same page, three polls
        page = parse_page([bad], parse_call, settings, NOW + 60 * poll, "dateCreated")
        assert [r.reason for r in page.rejections] == ["date"]
        health.record_batch("la", 0, page.rejections)
    assert health.sources()["la"].rejected == {"date": 1}
    # a different bad record (another id) is a new rejection
    other = {**bad, "id": "c8f2a1c0"}
    health.record_batch("la", 0, parse_page([other], parse_call, settings, NOW).rejections)
    assert health.sources()["la"].rejected == {"date": 2}


def test_the_exporter_counts_a_bad_call_once_across_polls(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """Through the real ingest path: the bad call holds no watermark, so each poll reads it
    again from the same `since`; the rejected-records counter stays at 1."""
    from collector.config import Settings
    from collector.runtime import Exporter, LoadedConfig

    from .conftest import parse_exposition

    bad = {**fixture("liveagent", "calls_page1.json")[0], "dateFinished": "yesterday"}
    httpserver.expect_request("/api/v3/calls").respond_with_json([bad])
    source = adapter(httpserver, read_tickets=False)
    exporter = Exporter(LoadedConfig(Settings(store=tmp_path / "s.db"), (source,), "test"),
                        clock=lambda: NOW)
    for _ in range(3):
        exporter.ingest("liveagent")
    assert len(httpserver.log) == 3  # three polls, each read the bad call
    values = parse_exposition(exporter.health.body.decode())
    key = ("contactcenter_source_rejected_records_total",
           frozenset({("source", "liveagent"), ("reason", "date")}))
    assert values[key] == 1.0
    exporter.close()


def test_iso_times_and_internal_calls() -> None:
    settings = LiveAgentSettings(name="la", adapter="liveagent", subdomain="a", api_key="k",
                                 api_timezone="Europe/Bratislava")
    call = {**fixture("liveagent", "calls_page1.json")[0],
            "dateCreated": "2026-03-09T08:00:00+01:00", "dateAnswered": "2026-03-09 08:00:15",
            "dateFinished": "2026-03-09 08:05:15"}
    contact = parse_call(call, settings, NOW)
    # both forms read in Bratislava time (UTC+1 in March): 07:00:00 UTC; talk 300 s
    assert contact is not None and contact.start == datetime(2026, 3, 9, 7, tzinfo=UTC).timestamp()
    assert contact.talk_seconds == 300.0
    assert parse_call({**call, "type": "T"}, settings, NOW) is None


def test_401_is_a_clear_source_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v3/calls").respond_with_json(
        {"message": "Invalid API key"}, status=401)
    with pytest.raises(SourceError) as caught:
        list(adapter(httpserver).pull(None))
    assert caught.value.reason == "auth" and "la-api-key" not in str(caught.value)


def test_malformed_page_is_counted_and_the_position_stays(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/api/v3/calls").respond_with_json({"error": "oops"})
    store = new_store(tmp_path)
    (batch,) = drain(adapter(httpserver), store)
    assert [r.reason for r in batch.rejections] == ["shape"] and batch.position is None
    assert store.position("liveagent") is None


def test_subdomain_builds_the_vendor_url() -> None:
    settings = LiveAgentSettings(name="l", adapter="liveagent", subdomain="acme", api_key="k")
    assert settings.base_url == "https://acme.ladesk.com/api/v3/"
