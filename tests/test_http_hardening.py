"""Issue 10, HTTP surface: strict Content-Length, per-client connection limits, a cap on the
header section, request bodies never left in the stream, and basic auth that costs the same
for unknown users. Each test talks to the real server on 127.0.0.1 over raw sockets."""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from collector.server import ExporterHTTPServer, client_key
from collector.webconfig import BasicAuth, WebConfig, load_web_config

from .conftest import ExporterProcess, wait_for
from .pki import Pki, make_pki

# The scraper's own loopback address: Linux routes all of 127.0.0.0/8 to lo, so a socket bound
# to 127.0.0.2 reaches the server on 127.0.0.1 as a second client address.
SCRAPER = "127.0.0.2"


def connect(srv: ExporterHTTPServer, source: str = "127.0.0.1", timeout: float = 5.0
            ) -> socket.socket:
    host, port = srv.server_address[:2]
    return socket.create_connection((str(host), port), timeout=timeout,
                                    source_address=(source, 0))


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes, or until 3 s pass without a byte."""
    sock.settimeout(3)
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def exchange(srv: ExporterHTTPServer, data: bytes, source: str = "127.0.0.1") -> bytes:
    with connect(srv, source) as sock:
        sock.sendall(data)
        return read_all(sock)


def statuses(answer: bytes) -> list[int]:
    """Status codes of every response in a byte stream (a status line starts each response;
    the bodies here are plain text or metrics, which never hold "HTTP/1.1 " and a code)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)]


# -- 4. Content-Length is ASCII digits, on every route ------------------------------------------
@pytest.mark.parametrize("length", ["\u00b2", "\u0663", "+5", "-1", " 5 5", "5,5", "0x10", "1e3",
                                    ""])
@pytest.mark.parametrize(("method", "path"), [("GET", "/metrics"), ("GET", "/"),
                                               ("POST", "/webhooks/generic/x"),
                                               ("POST", "/-/reload"), ("HEAD", "/healthz")])
def test_a_content_length_that_is_not_ascii_digits_is_400(
    serve: Callable[..., ExporterHTTPServer], caplog: pytest.LogCaptureFixture,
    length: str, method: str, path: str,
) -> None:
    # "²" (U+00B2) and "٣" (Arabic-Indic three) pass str.isdigit() but int() refuses the first;
    # "+5" and " 5 5" pass int() but are not the 1*DIGIT of RFC 9110 section 8.6.
    srv = serve()
    srv.webhooks = type("Hooks", (), {"handle": lambda *a: (200, "text/plain", b"ok\n")})()
    srv.reload = lambda: None
    caplog.set_level(logging.DEBUG, logger="collector.server")
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
    answer = exchange(srv, head.encode("latin-1", "replace") if length.isascii()
                      else head.encode("utf-8"))
    assert statuses(answer) == [400], answer[:300]
    assert b"Connection: close" in answer
    assert "Traceback" not in caplog.text and "request failed" not in caplog.text


def test_two_different_content_lengths_are_400(serve: Callable[..., ExporterHTTPServer]) -> None:
    srv = serve()
    answer = exchange(srv, b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                           b"Content-Length: 40\r\n\r\nabc")
    assert statuses(answer) == [400]


# -- 9. A body is read or refused, never parsed as the next request ------------------------------
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_a_body_on_a_route_that_reads_none_is_not_a_second_request(
    serve: Callable[..., ExporterHTTPServer], method: str
) -> None:
    srv = serve()
    path = "/healthz" if method != "POST" else "/not-here"
    smuggled = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = exchange(srv, f"{method} {path} HTTP/1.1\r\nHost: x\r\n".encode()
                      + b"Content-Length: %d\r\n\r\n" % len(smuggled) + smuggled)
    # Before the fix a GET answered 200 for /healthz and then 200 for the smuggled /metrics.
    assert len(statuses(answer)) == 1, answer[:500]
    assert b"contactcenter_info" not in answer


def test_a_small_body_on_a_get_is_discarded_and_the_connection_kept(
    serve: Callable[..., ExporterHTTPServer]
) -> None:
    srv = serve()
    with connect(srv) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = read_all(sock)
    # Two requests on the wire, two answers: the 5 body bytes were skipped, not parsed.
    assert statuses(answer) == [200, 200], answer
    assert b"hello" not in answer


def test_chunked_bodies_are_refused_on_every_route(
    serve: Callable[..., ExporterHTTPServer]
) -> None:
    srv = serve()
    for path in (b"/metrics", b"/webhooks/generic/x"):
        smuggled = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        answer = exchange(srv, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(smuggled)
                          + smuggled + b"\r\n0\r\n\r\n")
        assert statuses(answer) == [411], answer[:300]


def test_a_body_over_the_cap_on_a_get_is_413_and_closed(
    serve: Callable[..., ExporterHTTPServer]
) -> None:
    srv = serve()
    for length in (b"2000000", b"99999999999999999999"):
        answer = exchange(srv, b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: " + length
                          + b"\r\n\r\n" + b"x" * 1000)
        assert statuses(answer) == [413] and b"Connection: close" in answer


def test_expect_100_continue_is_refused_before_the_body_is_invited(
    serve: Callable[..., ExporterHTTPServer]
) -> None:
    # A client that waits for "100 Continue" must hear the 413 instead, never an invitation
    # to send 2 MB that would then be refused.
    srv = serve()
    answer = exchange(srv, b"POST /webhooks/generic/x HTTP/1.1\r\nHost: x\r\n"
                           b"Expect: 100-continue\r\nContent-Length: 2000000\r\n\r\n")
    assert statuses(answer) == [413], answer[:300]


# -- 7. The header section is capped at 64 KiB: 431 -------------------------------------------
def test_headers_over_64_kib_in_all_are_431(serve: Callable[..., ExporterHTTPServer]) -> None:
    srv = serve()
    # Two headers of 40,000 bytes: each under http.client's 65,536-byte line limit and far
    # under its 100-header limit, so before the fix this 80 kB header section was accepted.
    big = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Big-%d: %s\r\n" % (i, b"a" * 40_000) for i in range(2)) + b"\r\n"
    answer = exchange(srv, big)
    assert statuses(answer) == [431], answer[:300]
    assert b"Connection: close" in answer
    # Just under the cap (60 KiB of headers, 16 lines of 3,840 bytes) still works.
    fine = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"".join(
        b"X-Ok-%02d: %s\r\n" % (i, b"b" * 3828) for i in range(16)) + b"\r\n"
    assert sum(len(line) + 2 for line in fine.split(b"\r\n")[1:]) < 64 * 1024
    assert statuses(exchange(srv, fine)) == [200]


def test_the_header_cap_holds_before_authentication(
    serve: Callable[..., ExporterHTTPServer], tmp_path: Path
) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    srv = serve(web=load_web_config(tmp_path / "web.yml"))
    flood = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-F-%02d: %s\r\n" % (i, b"c" * 60_000) for i in range(5)) + b"\r\n"
    assert statuses(exchange(srv, flood)) == [431]


# -- 6. Per-client connection limit; a scrape from elsewhere still gets in ----------------------
class Trickler:
    """`count` sockets from one address, each sending a request a byte every 0.2 s."""

    def __init__(self, srv: ExporterHTTPServer, count: int, source: str = "127.0.0.1",
                 payload: bytes = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 200
                 ) -> None:
        self.stop = threading.Event()
        self.socks = [connect(srv, source) for _ in range(count)]
        self.payload = payload
        self.thread = threading.Thread(target=self._drip, daemon=True)
        self.thread.start()

    def _drip(self) -> None:
        for byte in self.payload:
            for sock in self.socks:
                with contextlib.suppress(OSError):
                    sock.send(bytes([byte]))
            if self.stop.wait(0.2):  # pacing the attacker, not waiting for the server
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.socks:
            sock.close()


def scrape(srv: ExporterHTTPServer, source: str = SCRAPER,
           context: ssl.SSLContext | None = None) -> tuple[int, float]:
    """One GET /metrics from `source`: (status, seconds). Status 0 if no answer came."""
    started = time.monotonic()
    sock = connect(srv, source, timeout=8)
    try:
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = read_all(sock)
    except (OSError, ssl.SSLError):
        answer = b""
    finally:
        sock.close()
    found = statuses(answer)
    return (found[0] if found else 0), time.monotonic() - started


def test_one_address_cannot_take_every_slot_from_a_scrape(
    serve: Callable[..., ExporterHTTPServer]
) -> None:
    # 16 slots, at most 4 per address. The attacker opens 30 slow sockets from 127.0.0.1;
    # before the fix the first 16 took every slot for the whole 5 s request timeout and a
    # scrape from 127.0.0.2 got 503. Now 4 are held, 26 are refused at once, and 12 stay free.
    srv = serve(max_connections=16, max_connections_per_client=4, request_timeout=5)
    attacker = Trickler(srv, 30)
    try:
        wait_for(lambda: srv.connections_of("127.0.0.1") == 4, timeout=5,
                 what="the attacker holding its 4 slots")
        for _ in range(3):
            status, took = scrape(srv)
            assert status == 200
            assert took < 2.0  # well inside the 5 s request timeout the attacker holds
        assert closed_count(attacker.socks, 26) == 26
    finally:
        attacker.close()


def test_the_last_slots_are_kept_for_an_address_with_no_connection(
    serve: Callable[..., ExporterHTTPServer]
) -> None:
    # 8 slots, 4 per address, the last one (8 // 8) kept for an address holding none:
    # attackers from 127.0.0.1 and 127.0.0.3 hold 4 + 3 = 7 (127.0.0.3's 4th would take the
    # kept slot), so a scraper from 127.0.0.2 still finds one. Without the kept slot 127.0.0.3
    # would hold 4 and the scrape would get 503.
    srv = serve(max_connections=8, max_connections_per_client=4, request_timeout=5)
    first = Trickler(srv, 4, "127.0.0.1")
    wait_for(lambda: srv.connections_of("127.0.0.1") == 4, timeout=5, what="first attacker in")
    second = Trickler(srv, 4, "127.0.0.3")
    try:
        wait_for(lambda: srv.connections_of("127.0.0.3") == 3, timeout=5,
                 what="second attacker held at 3")
        status, took = scrape(srv)
        assert status == 200 and took < 2.0
    finally:
        first.close()
        second.close()


def _closed(sock: socket.socket) -> bool:
    """True if the server has closed `sock` (it may have sent a 503 first); never waits long."""
    sock.settimeout(0.01)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


def closed_count(socks: list[socket.socket], expected: int) -> int:
    """How many of `socks` the server closed, once `expected` are (or after 2 s): the 5 s
    request timeout that would close the rest is still far off."""
    with contextlib.suppress(AssertionError):
        wait_for(lambda: sum(map(_closed, socks)) >= expected, timeout=2, interval=0.05)
    return sum(map(_closed, socks))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_stalled_tls_handshakes_from_one_address_do_not_block_a_scrape(
    serve: Callable[..., ExporterHTTPServer], pki: Pki, tmp_path: Path
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki.server_cert}\n"
                   f"  key_file: {pki.server_key}\n")
    srv = serve(web=load_web_config(web), max_connections=16, max_connections_per_client=4,
                request_timeout=5)
    # 20 sockets that send the first byte of a TLS ClientHello record and then nothing: each
    # stalls its handshake until the request timeout. Before the fix they held all 16 slots.
    stalled = [connect(srv) for _ in range(20)]
    try:
        for sock in stalled:
            sock.sendall(b"\x16")
        wait_for(lambda: srv.connections_of("127.0.0.1") == 4, timeout=5,
                 what="the stalled handshakes holding 4 slots")
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        status, took = scrape(srv, context=context)
        assert status == 200 and took < 2.0
        # The 16 beyond the limit were closed without a byte (no plain-text 503 on a TLS port).
        assert closed_count(stalled, 16) == 16
    finally:
        for sock in stalled:
            sock.close()


def test_the_per_client_limit_is_a_cli_flag() -> None:
    from collector.cli import build_parser

    args = build_parser().parse_args(["--web.max-connections-per-client", "3"])
    assert args.max_connections_per_client == 3
    assert build_parser().parse_args([]).max_connections_per_client == 8


@pytest.mark.parametrize(("value", "message"), [
    ("0", "0 is not at least 1"), ("-3", "-3 is not at least 1"),
    ("abc", "'abc' is not a whole number"),
])
def test_a_per_client_limit_below_one_is_a_one_line_error(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # 0 would refuse every connection; a negative number too. argparse's error path: exit 2
    # and one line naming the flag, no traceback.
    from collector.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([f"--web.max-connections-per-client={value}"])
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == ("contact-cost-exporter: error: argument --web.max-connections-per-client: "
                    + message)


def test_clients_are_counted_by_address_and_ipv6_by_its_64() -> None:
    # One IPv6 host picks any address in its /64 at will, so the /64 is the client.
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") \
        == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"  # dual-stack socket, IPv4 client
    assert client_key("192.0.2.7") == "192.0.2.7" != client_key("192.0.2.8")


@pytest.mark.e2e
def test_the_flag_reaches_the_running_exporter(
    tmp_path: Path, start_exporter: Callable[..., ExporterProcess]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'interval = "1s"\nstore = "{tmp_path / "s.db"}"\n')
    exporter = start_exporter(config, ["--web.max-connections-per-client", "2"])
    idle = [socket.create_connection(("127.0.0.1", exporter.port), timeout=5) for _ in range(2)]
    try:
        wait_for(lambda: _answer_from(exporter.port, "127.0.0.1") == 503, timeout=5,
                 what="a third connection from 127.0.0.1 refused")
        assert _answer_from(exporter.port, SCRAPER) == 200
    finally:
        for sock in idle:
            sock.close()


def _answer_from(port: int, source: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5,
                                  source_address=(source, 0)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        found = statuses(read_all(sock))
    return found[0] if found else 0


# -- 8. An unknown user costs the same bcrypt as a wrong password ------------------------------
def _cost(hashed: bytes) -> int:
    return int(hashed.split(b"$")[2])


@pytest.mark.parametrize("cost", [5, 8])
def test_the_dummy_hash_has_the_cost_of_the_configured_hashes(
    monkeypatch: pytest.MonkeyPatch, cost: int
) -> None:
    auth = BasicAuth({"prometheus": bcrypt.hashpw(b"right", bcrypt.gensalt(cost)).decode()})
    used: list[bytes] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        used.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    token = base64.b64encode(b"nobody:guess").decode()
    assert auth.check(f"Basic {token}") is False
    token = base64.b64encode(b"prometheus:wrong").decode()
    assert auth.check(f"Basic {token}") is False
    # One bcrypt each; before the fix the unknown user's was the fixed cost-10 dummy.
    assert [_cost(h) for h in used] == [cost, cost]


def test_mixed_costs_use_the_highest_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="collector.webconfig")
    auth = BasicAuth({"a": bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode(),
                      "b": bcrypt.hashpw(b"y", bcrypt.gensalt(6)).decode()})
    assert _cost(auth.dummy_hash) == 6
    assert "different bcrypt costs" in caplog.text


def test_unknown_user_and_wrong_password_take_about_as_long() -> None:
    # Cost 8 (~15 ms a check): before the fix the unknown user paid the cost-10 dummy, about
    # 4 times as long (2**10 / 2**8). Interleaved medians of 7, and a factor of 2 either way,
    # keep this coarse enough for a shared machine.
    auth = BasicAuth({"prometheus": bcrypt.hashpw(b"right", bcrypt.gensalt(8)).decode()})
    wrong = "Basic " + base64.b64encode(b"prometheus:wrong").decode()
    unknown = "Basic " + base64.b64encode(b"nobody:wrong").decode()
    times: dict[str, list[float]] = {wrong: [], unknown: []}
    for _ in range(7):
        for header in (wrong, unknown):
            started = time.perf_counter()
            assert auth.check(header) is False
            times[header].append(time.perf_counter() - started)
    ratio = statistics.median(times[unknown]) / statistics.median(times[wrong])
    assert 0.5 < ratio < 2.0, ratio


def test_webconfig_keeps_no_fixed_dummy_hash() -> None:
    assert WebConfig().auth.dummy_hash == b""  # no users: nothing to compare against
