"""HTTP surface in-process: /metrics is the snapshot's bytes, /healthz, landing page, limits."""

from __future__ import annotations

import gzip
import http.client
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.config import Settings
from collector.runtime import Exporter, LoadedConfig
from collector.server import ExporterHTTPServer, parse_listen_address

from .conftest import parse_exposition, served, wait_for


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Exporter]:
    settings = Settings(store=tmp_path / "s.db", timezone="Europe/Oslo")
    exp = Exporter(LoadedConfig(settings, (), "test"), clock=lambda: 1_700_000_000.0)
    yield exp
    exp.close()


@pytest.fixture
def server(exporter: Exporter) -> Iterator[ExporterHTTPServer]:
    with served(exporter, max_connections=4, request_timeout=2) as srv:
        yield srv


def request(srv: ExporterHTTPServer, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def test_listen_address_parsing() -> None:
    assert parse_listen_address("127.0.0.1:9878") == ("127.0.0.1", 9878)
    assert parse_listen_address("[::1]:9878") == ("::1", 9878)
    assert parse_listen_address(":9878") == ("", 9878)
    with pytest.raises(ValueError):
        parse_listen_address("localhost")


def test_healthz_waits_for_first_recompute(server: ExporterHTTPServer, exporter: Exporter) -> None:
    assert request(server, "GET", "/healthz")[0] == 503
    exporter.recompute(datetime(2026, 11, 26, 12, tzinfo=UTC))
    assert request(server, "GET", "/healthz")[0] == 200


def test_metrics_serves_rendered_snapshot(server: ExporterHTTPServer, exporter: Exporter) -> None:
    snapshot = exporter.recompute(datetime(2026, 11, 26, 12, tzinfo=UTC))
    status, headers, body = request(server, "GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert body == snapshot.body + exporter.health.body
    text = body.decode()
    assert 'contactcenter_info{currency="USD",timezone="Europe/Oslo",version="0.1.0"} 1.0' in text
    assert "contactcenter_last_recompute_timestamp_seconds 1.7e+09" in text
    assert "Recomputed every interval from the store, not at scrape time." in text
    # Benchmark series exist even with no contacts: the default band.
    assert 'contactcenter_benchmark_high{channel="default"} 5.6' in text
    # gzip is offered and is the same bytes.
    status, headers, packed = request(server, "GET", "/metrics", headers={"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed) == body


def test_metrics_body_only_reads_the_snapshot(exporter: Exporter) -> None:
    def values() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return parse_exposition(exporter.metrics_body().decode())

    low = ("contactcenter_benchmark_low", frozenset({"channel": "default"}.items()))
    assert low not in values()  # no recompute yet: only the health block
    exporter.recompute(datetime(2026, 11, 26, 12, tzinfo=UTC))
    assert values()[low] == 2.7
    assert ("contactcenter_recompute_duration_seconds", frozenset()) in values()


def test_landing_page_and_security_headers(server: ExporterHTTPServer) -> None:
    status, headers, body = request(server, "GET", "/")
    assert status == 200
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert b'<a href="/metrics">Metrics</a>' in body
    assert b"Version 0.1.0" in body


def test_unknown_paths_and_oversized_bodies(server: ExporterHTTPServer) -> None:
    assert request(server, "GET", "/../etc/passwd")[0] == 404
    assert request(server, "POST", "/metrics", b"x")[0] == 404
    server.webhooks = object()  # type: ignore[assignment]  # route exists; the body is refused first
    status, _, _ = request(
        server, "POST", "/webhooks/generic/x", b"", {"Content-Length": str(2 * 1024 * 1024)}
    )
    assert status == 413


def test_connection_cap_answers_503(server: ExporterHTTPServer) -> None:
    # Four idle connections hold every slot; the fifth is refused at once, not queued.
    idle = [socket.create_connection(server.server_address[:2], timeout=5) for _ in range(4)]
    try:
        def capped() -> bool:
            return request(server, "GET", "/")[0] == 503

        wait_for(capped, timeout=5, what="connection cap")
    finally:
        for sock in idle:
            sock.close()
    wait_for(lambda: request(server, "GET", "/")[0] == 200, timeout=5, what="slots released")
