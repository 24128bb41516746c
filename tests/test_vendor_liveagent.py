"""LiveAgent API v3 calls and tickets against a real loopback server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from adapters.base import SourceError
from adapters.liveagent import LiveAgentAdapter, LiveAgentSettings
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
        queues={"dep_support": "support", "dep_sales": "sales"}, outcomes={"fqr2": "resolved"},
        **{**FAST, **extra},
    )
    return LiveAgentAdapter(settings, CONTEXT, clock=lambda: NOW)


def query(page: int, since: str = START) -> dict[str, str]:
    return {"_page": str(page), "_perPage": "2", "_sortField": "date_created", "_sortDir": "ASC",
            "_filters": json.dumps([["date_created", "D>=", since]])}


def serve(httpserver: HTTPServer) -> None:
    tickets = fixture("liveagent", "tickets_page1.json")
    pages = {
        "/api/v3/calls": [fixture("liveagent", "calls_page1.json"),
                          fixture("liveagent", "calls_page2.json"), []],
        "/api/v3/tickets": [tickets[:2], tickets[2:], []],
    }
    for path, bodies in pages.items():
        for number, body in enumerate(bodies, start=1):
            httpserver.expect_request(path, query_string=query(number),
                                      headers={"apikey": "la-api-key"}).respond_with_json(body)


def test_reads_calls_then_tickets_and_maps_them(httpserver: HTTPServer, tmp_path: Path) -> None:
    serve(httpserver)
    store = new_store(tmp_path)
    batches = drain(adapter(httpserver), store)
    assert stored_ids(store, "liveagent") == EXPECTED
    by_id = {c.id: c for b in batches for c in b.contacts}
    inbound = by_id["call:c8f2a1b3"]
    assert (inbound.direction, inbound.queue, inbound.handled, inbound.talk_seconds,
            inbound.billable_seconds) == ("inbound", "support", True, 300.0, 315.0)
    assert by_id["call:c8f2a1b4"].reason == "missed"
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
    httpserver.expect_request("/api/v3/calls", query_string=query(1, "2026-03-09 10:00:00")
                              ).respond_with_json(fixture("liveagent", "calls_page2.json")[1:])
    drain(adapter(httpserver), store)
    assert stored_ids(store, "liveagent") == EXPECTED
    assert store.counts()["liveagent"] == 4
    resumed = next(r for r, _ in httpserver.log[4:] if r.path == "/api/v3/tickets")
    assert resumed.args["_page"] == "2"


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
