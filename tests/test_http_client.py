"""The shared vendor HTTP client against a real server on loopback: retries, 429, auth, quota."""

from __future__ import annotations

import socket
import time

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from adapters.base import SourceError
from adapters.fields import label
from adapters.http import ApiClient, ApiSourceSettings, RateLimiter
from tests.vendor_support import FAST, FakeClock, fast_limiter


def settings(base_url: str, **extra: object) -> ApiSourceSettings:
    return ApiSourceSettings(name="vendor", adapter="test", base_url=base_url, **{**FAST, **extra})


def client(httpserver: HTTPServer, **extra: object) -> ApiClient:
    return ApiClient(
        "vendor", settings(httpserver.url_for("/"), **extra), auth=("user", "s3cret-token"),
        limiter=fast_limiter(),
    )


def test_429_with_retry_after_waits_then_succeeds(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/v1/items").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "1"}
    )
    httpserver.expect_ordered_request("/v1/items").respond_with_json({"items": [1]})
    started = time.monotonic()
    page = client(httpserver).get("v1/items")
    assert page.data == {"items": [1]}
    assert time.monotonic() - started >= 0.95  # Retry-After was honoured, not the tiny backoff
    httpserver.check_assertions()


def test_500_500_then_success(httpserver: HTTPServer) -> None:
    for _ in range(2):
        httpserver.expect_ordered_request("/v1/items").respond_with_data("oops", status=500)
    httpserver.expect_ordered_request("/v1/items").respond_with_json({"items": []})
    assert client(httpserver).get("/v1/items").data == {"items": []}
    assert len(httpserver.log) == 3


def test_persistent_5xx_is_a_source_error_after_the_configured_retries(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/v1/items").respond_with_data("down", status=503)
    with pytest.raises(SourceError) as caught:
        client(httpserver, retries=2).get("/v1/items")
    assert caught.value.reason == "server_error"
    assert "503" in str(caught.value)
    assert len(httpserver.log) == 3  # the first try and two retries


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_names_the_endpoint_never_the_secret(
    httpserver: HTTPServer, status: int
) -> None:
    httpserver.expect_request("/v1/items").respond_with_data("no", status=status)
    with pytest.raises(SourceError) as caught:
        client(httpserver).get("/v1/items", {"cursor": "abc"})
    message = str(caught.value)
    assert caught.value.reason == "auth"
    assert httpserver.url_for("/v1/items") in message
    assert "s3cret-token" not in message and "cursor" not in message
    assert len(httpserver.log) == 1  # an auth failure is not retried


def test_basic_auth_and_headers_are_sent(httpserver: HTTPServer) -> None:
    httpserver.expect_request(
        "/v1/items", headers={"Authorization": "Basic dXNlcjpzM2NyZXQtdG9rZW4="}
    ).respond_with_json({})
    client(httpserver).get("/v1/items")
    assert httpserver.log[0][0].headers["User-Agent"] == "contact-cost-exporter"


def test_a_body_that_is_not_json_gives_no_data_and_no_exception(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/items").respond_with_data("<html>maintenance</html>")
    page = client(httpserver).get("/v1/items")
    assert page.data is None


def test_connection_refused_is_a_source_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = ApiClient("vendor", settings(f"http://127.0.0.1:{port}/", retries=1),
                    limiter=fast_limiter())
    with pytest.raises(SourceError) as caught:
        api.get("/v1/items")
    assert caught.value.reason in {"connection", "http_error"}
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_read_timeout_is_a_source_error(httpserver: HTTPServer) -> None:
    def slow(_request: Request) -> Response:
        time.sleep(0.5)
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/v1/slow").respond_with_handler(slow)
    api = client(httpserver, retries=0, read_timeout=0.1)
    with pytest.raises(SourceError) as caught:
        api.get("/v1/slow")
    assert caught.value.reason in {"timeout", "connection", "http_error"}


def test_token_bucket_spaces_requests_at_the_vendor_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, burst=2, clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(5)]
    assert waits[:2] == [0.0, 0.0]  # the burst
    assert waits[2:] == pytest.approx([6.0, 6.0, 6.0])  # then 10 a minute
    clock.now += 60
    assert limiter.acquire() == 0.0


def test_quota_header_at_zero_makes_the_next_request_wait(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/items").respond_with_json(
        {}, headers={"X-Ratelimit-Remaining": "0"}
    )
    clock = FakeClock()
    limiter = RateLimiter(60, burst=5, clock=clock, sleep=clock.sleep)
    api = ApiClient("vendor", settings(httpserver.url_for("/")), limiter=limiter)
    api.get("/v1/items")
    api.get("/v1/items")
    assert clock.slept == [pytest.approx(1.0)]


def test_label_maps_bounded_values() -> None:
    assert label({"12": "support"}, 12) == "support"
    assert label({"12": "support"}, "free text from a customer") == "other"
    assert label({}, None) == "other"


def test_label_map_values_are_validated() -> None:
    with pytest.raises(ValueError, match="label value"):
        settings("http://127.0.0.1:1/", queues={"12": "Support Team!"})
