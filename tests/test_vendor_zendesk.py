"""Zendesk incremental cursor export against a real loopback server."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from adapters.base import SourceError
from adapters.zendesk import ZendeskAdapter, ZendeskSettings
from tests.vendor_support import (
    CONTEXT,
    FAST,
    crash_after,
    drain,
    fixture,
    new_store,
    stored_ids,
)

EXPORT = "/api/v2/incremental/tickets/cursor.json"
CURSOR1 = "MTc3MzA1NDAwMC4wfHw0NTAzfA=="
CURSOR2 = "MTc3MzA2MTgwMC4wfHw0NDAwfA=="
SOLVED = ["4501", "4503", "4505"]  # 4502 is open, 4504 has a bad handle time, 4400 deleted


def adapter(httpserver: HTTPServer, **extra: object) -> ZendeskAdapter:
    settings = ZendeskSettings(
        name="zendesk", adapter="zendesk", base_url=httpserver.url_for("/"),
        email="api@example.com", api_token="zd-secret", start_date=date(2026, 3, 9),
        per_page=3, handle_time="custom_field", handle_time_field=360011112222,
        queues={"360001": "billing", "360002": "sales"}, outcomes={"upgrade_sold": "sale"},
        **{**FAST, **extra},
    )
    return ZendeskAdapter(settings, CONTEXT)


def serve(httpserver: HTTPServer) -> None:
    httpserver.expect_request(EXPORT, query_string={"per_page": "3", "start_time": "1773014400"}
                              ).respond_with_json(fixture("zendesk", "export_page1.json"))
    httpserver.expect_request(EXPORT, query_string={"per_page": "3", "cursor": CURSOR1}
                              ).respond_with_json(fixture("zendesk", "export_page2.json"))


def test_follows_after_cursor_until_end_of_stream(httpserver: HTTPServer, tmp_path: Path) -> None:
    serve(httpserver)
    store = new_store(tmp_path)
    batches = drain(adapter(httpserver), store)
    assert len(batches) == 2
    assert stored_ids(store, "zendesk") == SOLVED
    by_id = {c.id: c for b in batches for c in b.contacts}
    assert (by_id["4501"].channel, by_id["4501"].queue, by_id["4501"].handle_seconds) == (
        "email", "billing", 540.0)
    assert (by_id["4503"].channel, by_id["4503"].outcome) == ("chat", "sale")
    assert (by_id["4505"].channel, by_id["4505"].queue) == ("other", "other")
    assert [r.reason for r in batches[1].rejections] == ["duration"]
    assert json.loads(store.position("zendesk") or "") == {"cursor": CURSOR2}
    request = httpserver.log[0][0]
    assert request.authorization is not None
    assert request.authorization.username == "api@example.com/token"


def test_crash_between_pages_resumes_at_the_committed_cursor(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve(httpserver)
    store = new_store(tmp_path)
    crash_after(adapter(httpserver), store, "zendesk")
    drain(adapter(httpserver), store)
    assert stored_ids(store, "zendesk") == SOLVED
    assert httpserver.log[1][0].args["cursor"] == CURSOR1


def test_a_ticket_solved_later_is_counted_when_it_is_exported_again(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve(httpserver)
    store = new_store(tmp_path)
    drain(adapter(httpserver), store)
    page = fixture("zendesk", "export_page1.json")
    page["tickets"] = [page["tickets"][1] | {"status": "solved"}, page["tickets"][0]]
    page |= {"end_of_stream": True}
    httpserver.expect_request(EXPORT, query_string={"per_page": "3", "cursor": CURSOR2}
                              ).respond_with_json(page)
    drain(adapter(httpserver), store)
    assert stored_ids(store, "zendesk") == ["4501", "4502", "4503", "4505"]


def test_429_retry_after_then_success(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_ordered_request(EXPORT).respond_with_data(
        "", status=429, headers={"Retry-After": "1"})
    httpserver.expect_ordered_request(EXPORT).respond_with_json(
        fixture("zendesk", "export_page2.json"))
    store = new_store(tmp_path)
    drain(adapter(httpserver), store)
    assert stored_ids(store, "zendesk") == ["4505"]


def test_401_is_a_clear_source_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request(EXPORT).respond_with_json({"error": "Couldn't authenticate you"},
                                                        status=401)
    with pytest.raises(SourceError) as caught:
        list(adapter(httpserver).pull(None))
    assert caught.value.reason == "auth" and "zd-secret" not in str(caught.value)


def test_malformed_page_is_counted_and_the_cursor_stays(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request(EXPORT).respond_with_json({"tickets": []})  # no end_of_stream
    store = new_store(tmp_path)
    store.commit("zendesk", [], json.dumps({"cursor": CURSOR1}))
    (batch,) = drain(adapter(httpserver), store)
    assert [r.reason for r in batch.rejections] == ["shape"]
    assert json.loads(store.position("zendesk") or "") == {"cursor": CURSOR1}


def test_subdomain_builds_the_vendor_url_and_custom_field_is_required() -> None:
    settings = ZendeskSettings(name="z", adapter="zendesk", subdomain="acme",
                               email="a@b.c", api_token="t")
    assert settings.base_url == "https://acme.zendesk.com/"
    with pytest.raises(ValueError, match="handle_time_field"):
        ZendeskSettings(name="z", adapter="zendesk", subdomain="acme", email="a@b.c",
                        api_token="t", handle_time="custom_field")
