"""The HTTP surface under attack: secrets never shown, no file serving, limits, slow clients."""

from __future__ import annotations

import base64
import contextlib
import http.client
import inspect
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
from pytest_httpserver import HTTPServer

from collector import server as server_module
from collector.server import ExporterHTTPServer

from .conftest import ExporterProcess, http_get, wait_for

# Distinctive values, so a hit in any output can only be a leak.
TWILIO_TOKEN = "tw-token-7f3a9c1e5b"
AIRCALL_TOKEN = "ac-token-2d8e4f6a0c"
WEBHOOK_SECRET = "wh-secret-91b7d3e5f2"
SCRAPE_PASSWORD = "scrape-pass-5c2e8a4f"
SECRETS = (TWILIO_TOKEN, AIRCALL_TOKEN, WEBHOOK_SECRET, SCRAPE_PASSWORD)
SECRET_ENV = {
    "CONTACT_COST_SOURCES__CALLS__AUTH_TOKEN": TWILIO_TOKEN,
    "CONTACT_COST_SOURCES__AIR__API_TOKEN": AIRCALL_TOKEN,
}
ACCOUNT = "AC" + "0123456789abcdef" * 2

CONFIG = """
interval = "1s"
store = "{store}"

[[sources]]
name = "calls"
adapter = "twilio"
account_sid = "{account}"
base_url = "{api}"
retries = 0
interval = "1s"

[[sources]]
name = "air"
adapter = "aircall"
api_id = "my-api-id"
base_url = "{api}"
retries = 0
interval = "1s"

[[sources]]
name = "hooks"
adapter = "generic_webhook"
webhook_secret = "{webhook_secret}"
"""


def leaked(text: str) -> list[str]:
    """Secrets found in `text`, as given or as they travel in a Basic auth header."""
    found = []
    for secret in SECRETS:
        encoded = [base64.b64encode(f"{user}:{secret}".encode()).decode()
                   for user in (ACCOUNT, "my-api-id", "prometheus")]
        if secret in text or any(e in text for e in encoded):
            found.append(secret)
    return found


def write_config(tmp_path: Path, api: str, extra: str = "") -> Path:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(store=tmp_path / "s.db", account=ACCOUNT, api=api,
                                    webhook_secret=WEBHOOK_SECRET) + extra)
    return config


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *args], cwd=tmp_path,
                          env={**os.environ, **SECRET_ENV, **(env or {})},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.e2e
def test_no_secret_in_metrics_pages_logs_or_config_output(
    tmp_path: Path, httpserver: HTTPServer, start_exporter: Callable[..., ExporterProcess]
) -> None:
    # The vendor refuses the token, as Twilio does, so the failure path is logged too.
    httpserver.expect_request(re.compile(".*")).respond_with_json(
        {"code": 20003, "message": "Authenticate", "status": 401}, status=401)
    api = httpserver.url_for("/")
    config = write_config(tmp_path, api)
    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(SCRAPE_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")

    check = run_cli(tmp_path, "--config.file", str(config), "--config.check",
                    "--web.config.file", str(web))
    assert check.returncode == 0, check.stderr
    assert "calls: adapter twilio" in check.stdout
    assert leaked(check.stdout + check.stderr) == []
    assert hashed not in check.stdout

    exporter = start_exporter(
        config, ["--log.level", "debug", "--web.config.file", str(web)],
        env=SECRET_ENV, ready=False,
    )
    auth = {"Authorization": "Basic " + base64.b64encode(
        f"prometheus:{SCRAPE_PASSWORD}".encode()).decode()}

    def get(path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=5)
        try:
            conn.request("GET", path, headers=auth)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def both_failed() -> str | None:
        if exporter.proc.poll() is not None:
            raise AssertionError(exporter.log.read_text())
        status, text = get("/metrics")
        down = ('contactcenter_source_up{source="calls"} 0.0' in text
                and 'contactcenter_source_up{source="air"} 0.0' in text
                and 'contactcenter_source_last_success_timestamp_seconds{source="calls"}' in text)
        return text if status == 200 and down and "contactcenter_info" in text else None

    metrics = wait_for(both_failed, what="both API sources tried and refused")
    assert len(httpserver.log) >= 2  # the vendor really was called, with the token
    status, page = get("/")
    assert status == 200 and "calls" in page
    # The webhook's secret is checked, and never echoed in the refusal.
    conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=5)
    conn.request("POST", "/webhooks/generic/hooks", body=b"{}",
                 headers={"X-Contact-Cost-Timestamp": "1", "X-Contact-Cost-Signature": "x"})
    refusal = conn.getresponse().read().decode()
    conn.close()
    exporter.stop()
    log = exporter.log.read_text()
    assert "level=DEBUG" in log
    for name, text in (("metrics", metrics), ("landing page", page), ("log", log),
                       ("webhook answer", refusal)):
        assert leaked(text) == [], f"secret in the {name}"
    assert hashed not in log

    # Config errors name the field, never its value, even when the secret is the bad field.
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.format(store=tmp_path / "s.db", account=ACCOUNT, api=api,
                                 webhook_secret=WEBHOOK_SECRET)
                   .replace('retries = 0\ninterval', 'retries = 99\ninterval', 1))
    for env in ({}, {"CONTACT_COST_SOURCES__CALLS__AUTH_TOKEN": f'["{TWILIO_TOKEN}"]'},
                {"CONTACT_COST_SOURCES__HOOKS__WEBHOOK_SECRET": f'{{"x": "{WEBHOOK_SECRET}"}}'}):
        for path in (bad, config):
            done = run_cli(tmp_path, "--config.file", str(path), "--config.check", env=env)
            if path is config and not env:
                continue
            assert done.returncode == 1, (path, env, done.stdout)
            assert "invalid configuration" in done.stderr
            assert leaked(done.stdout + done.stderr) == [], (path, env, done.stderr)


# -- in-process server: traversal, limits, headers, slow clients ---------------------------------
def raw(srv: ExporterHTTPServer, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes or 5 s pass."""
    with socket.create_connection(srv.server_address[:2], timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


@pytest.mark.parametrize(
    "target",
    [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/metrics/../../etc/passwd",
        "/..%2f..%2f..%2fetc/passwd",
        "//etc/passwd",
        "/\\..\\..\\etc\\passwd",
        "http://127.0.0.1/../../etc/passwd",
        "file:///etc/passwd",
        "/etc/passwd%00/metrics",
        "/webhooks/../../etc/passwd",
    ],
)
def test_no_path_reaches_a_file(serve: Callable[..., ExporterHTTPServer], target: str) -> None:
    srv = serve()
    answer = raw(srv, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 404), answer[:200]
    assert b"root:" not in answer
    # POST is no different.
    answer = raw(srv, f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    assert int(answer.split(b" ", 2)[1]) in (400, 404)


def test_the_server_module_has_no_file_serving_route() -> None:
    source = inspect.getsource(server_module)
    for call in ("open(", "read_bytes", "read_text", "sendfile", "SimpleHTTPRequestHandler"):
        assert call not in source


def test_bodies_are_limited_and_never_read_where_unused(
    serve: Callable[..., ExporterHTTPServer]
) -> None:
    srv = serve()
    srv.webhooks = type("Hooks", (), {"handle": lambda *a: (200, "text/plain", b"ok\n")})()
    big = 2 * 1024 * 1024
    # Announced too large: refused before a byte of the body is read, connection closed.
    answer = raw(srv, b"POST /webhooks/generic/x HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: %d\r\n\r\n" % big + b"x" * 4096)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in answer
    # Chunked (no length): 411, closed.
    answer = raw(srv, b"POST /webhooks/generic/x HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 ")
    # A body on a route that reads none cannot smuggle a second request.
    smuggled = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = raw(srv, b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                 % len(smuggled) + smuggled)
    assert answer.count(b"HTTP/1.1 ") == 1 and b"404" in answer.split(b"\r\n")[0]
    # Oversized request lines and header floods get short plain-text errors.
    assert raw(srv, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 414")
    flood = b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n"
    assert raw(srv, flood).startswith(b"HTTP/1.1 431")


def test_security_headers_on_pages_and_errors(serve: Callable[..., ExporterHTTPServer]) -> None:
    srv = serve()
    for request, status in ((b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200),
                            (b"OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
                            (b"GET / HTTP/9.9\r\n\r\n", 505),
                            (b"BREW\r\n\r\n", 400)):
        answer = raw(srv, request)
        head = answer.split(b"\r\n\r\n", 1)[0].decode()
        assert head.startswith(f"HTTP/1.1 {status} ") or head.startswith(f"HTTP/1.0 {status} "), \
            head
        assert "X-Content-Type-Options: nosniff" in head
        assert "X-Frame-Options: DENY" in head
        assert "Content-Security-Policy: default-src 'none'" in head
        if status != 200:
            assert "Content-Type: text/plain" in head  # not the stock HTML error page
    headers = raw(srv, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"X-Content-Type-Options: nosniff" in headers


def trickle(srv: ExporterHTTPServer, count: int, stop: threading.Event) -> list[socket.socket]:
    """`count` connections that send a request one byte at a time, a byte every 0.2 s."""
    socks = [socket.create_connection(srv.server_address[:2], timeout=5) for _ in range(count)]
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"z" * 200

    def drip() -> None:
        for byte in request:
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(bytes([byte]))
            if stop.wait(0.2):  # pacing the attacker, not waiting for the server
                return

    threading.Thread(target=drip, daemon=True).start()
    return socks


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_slow_clients_do_not_block_scrapes(serve: Callable[..., ExporterHTTPServer]) -> None:
    # The slow clients and the scrape share 127.0.0.1 here, so the per-client limit is raised
    # out of the way: this test is about the deadline (tests/test_http_hardening.py has the
    # per-client limit).
    srv = serve(max_connections=16, max_connections_per_client=16, request_timeout=2)
    stop = threading.Event()
    socks = trickle(srv, 10, stop)
    try:
        started = time.monotonic()
        status, body = http_get(f"http://127.0.0.1:{srv.server_address[1]}/metrics", timeout=2)
        assert status == 200 and b"contactcenter_info" in body
        assert time.monotonic() - started < 2
        # Bytes keep trickling in, yet each slow request is cut at the request timeout:
        # the deadline covers the whole request, not each byte.
        wait_for(lambda: all(closed_by_server(s) for s in socks), timeout=8,
                 what="slow connections closed by the server")
        assert time.monotonic() - started < 8
    finally:
        stop.set()
        for sock in socks:
            sock.close()


def test_more_slow_clients_than_slots_only_delay_scrapes_until_the_timeout(
    serve: Callable[..., ExporterHTTPServer],
) -> None:
    srv = serve(max_connections=8, request_timeout=2)
    stop = threading.Event()
    socks = trickle(srv, 8, stop)  # every slot held
    url = f"http://127.0.0.1:{srv.server_address[1]}/metrics"
    try:
        started = time.monotonic()
        assert wait_for(lambda: http_get(url, timeout=2)[0] == 200, timeout=10, interval=0.1,
                        what="a scrape after the slow clients are cut")
        assert time.monotonic() - started < 6  # the request timeout (2 s) plus slack
    finally:
        stop.set()
        for sock in socks:
            sock.close()
