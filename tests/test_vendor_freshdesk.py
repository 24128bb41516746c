"""Freshdesk tickets against a real loopback server: Link paging, watermark, rate limits."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from adapters.base import SourceError
from adapters.freshdesk import FreshdeskAdapter, FreshdeskSettings
from tests.vendor_support import (
    CONTEXT,
    FAST,
    crash_after,
    drain,
    fixture,
    new_store,
    stored_ids,
)

TICKETS = "/api/v2/tickets"
SINCE = "2026-03-09T00:00:00Z"


def adapter(httpserver: HTTPServer, **extra: object) -> FreshdeskAdapter:
    settings = FreshdeskSettings(
        name="freshdesk", adapter="freshdesk", base_url=httpserver.url_for("/"),
        api_key="fd-api-key", start_date=date(2026, 3, 9), per_page=2,
        handle_time_field="cf_handle_time", handle_time_unit="minutes",
        queues={"80000001": "orders", "80000002": "sales"}, outcomes={"won": "sale"},
        **{**FAST, **extra},
    )
    return FreshdeskAdapter(settings, CONTEXT)


def query(page: int, since: str = SINCE) -> dict[str, str]:
    return {"updated_since": since, "order_by": "updated_at", "order_type": "asc",
            "per_page": "2", "page": str(page)}


def serve(httpserver: HTTPServer) -> None:
    link = f'<{httpserver.url_for(TICKETS)}?per_page=2&page=2>; rel="next"'
    httpserver.expect_request(TICKETS, query_string=query(1)).respond_with_json(
        fixture("freshdesk", "tickets_page1.json"),
        headers={"Link": link, "X-Ratelimit-Total": "200", "X-Ratelimit-Remaining": "198",
                 "X-Ratelimit-Used-CurrentRequest": "1"})
    httpserver.expect_request(TICKETS, query_string=query(2)).respond_with_json(
        fixture("freshdesk", "tickets_page2.json"))


def test_pages_by_link_header_and_maps_source_codes(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve(httpserver)
    store = new_store(tmp_path)
    batches = drain(adapter(httpserver), store)
    assert stored_ids(store, "freshdesk") == ["1201", "1203"]  # 1202 open, 1204 bad date
    by_id = {c.id: c for b in batches for c in b.contacts}
    assert (by_id["1201"].channel, by_id["1201"].queue, by_id["1201"].handle_seconds) == (
        "email", "orders", 720.0)
    assert (by_id["1203"].channel, by_id["1203"].outcome) == ("chat", "sale")
    assert [r.reason for r in batches[1].rejections] == ["date"]
    assert json.loads(store.position("freshdesk") or "") == {"since": "2026-03-09T10:00:00Z"}
    request = httpserver.log[0][0]
    assert request.authorization is not None
    assert (request.authorization.username, request.authorization.password) == ("fd-api-key",
                                                                                 "X")


def test_crash_between_pages_resumes_at_the_next_page(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve(httpserver)
    store = new_store(tmp_path)
    crash_after(adapter(httpserver), store, "freshdesk")
    drain(adapter(httpserver), store)
    assert stored_ids(store, "freshdesk") == ["1201", "1203"]
    assert httpserver.log[1][0].args["page"] == "2"


def test_429_with_retry_after_then_success(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_ordered_request(TICKETS).respond_with_json(
        {"code": "rate_limited"}, status=429, headers={"Retry-After": "1"})
    httpserver.expect_ordered_request(TICKETS).respond_with_json(
        fixture("freshdesk", "tickets_page2.json"))
    store = new_store(tmp_path)
    drain(adapter(httpserver), store)
    assert stored_ids(store, "freshdesk") == ["1203"]


def test_500_500_then_success(httpserver: HTTPServer, tmp_path: Path) -> None:
    for _ in range(2):
        httpserver.expect_ordered_request(TICKETS).respond_with_data("", status=500)
    httpserver.expect_ordered_request(TICKETS).respond_with_json([])
    store = new_store(tmp_path)
    (batch,) = drain(adapter(httpserver), store)
    assert batch.contacts == [] and batch.rejections == []


def test_401_and_403_are_clear_source_errors(httpserver: HTTPServer) -> None:
    httpserver.expect_request(TICKETS).respond_with_json(
        {"code": "invalid_credentials", "message": "You have to be logged in"}, status=401)
    with pytest.raises(SourceError) as caught:
        list(adapter(httpserver).pull(None))
    assert caught.value.reason == "auth" and "fd-api-key" not in str(caught.value)


def test_malformed_page_is_counted(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request(TICKETS).respond_with_json({"tickets": []})
    (batch,) = drain(adapter(httpserver), new_store(tmp_path))
    assert [r.reason for r in batch.rejections] == ["shape"] and batch.position is None


def test_domain_builds_the_vendor_url() -> None:
    settings = FreshdeskSettings(name="f", adapter="freshdesk", domain="acme", api_key="k")
    assert settings.base_url == "https://acme.freshdesk.com/"
