"""The HTTP surface: landing page, /metrics, /healthz, the report API, webhooks and reload."""

from __future__ import annotations

import contextlib
import http.client
import io
import ipaddress
import logging
import re
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from collector import __version__
from collector.landing import LandingPage
from collector.landing import landing_page as landing_page  # tests import it from here
from collector.logsafe import printable
from collector.report import ReportEndpoint
from collector.runtime import Exporter
from collector.webconfig import WebConfig
from collector.whatif_api import WhatifEndpoint

log = logging.getLogger(__name__)

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
MAX_BODY_BYTES = 1_048_576
# The whole header section (every header line and the blank line that ends it), checked as it is
# read: http.client alone allows 100 lines of 64 KiB each, 6.4 MB per request before any auth.
MAX_HEADER_BYTES = 65_536
# RFC 9110 section 8.6: Content-Length = 1*DIGIT, and DIGIT is ASCII 0-9 only (str.isdigit()
# also accepts "²" and "٣", which int() then refuses or reads as a number).
_CONTENT_LENGTH = re.compile(r"[0-9]+")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# What Go's net/http answers to plain HTTP on a TLS port.
PLAIN_HTTP_ON_TLS = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
_TLS_HANDSHAKE_RECORD = 0x16


class WebhookHandler(Protocol):
    def handle(
        self, method: str, path: str, headers: Any, body: bytes, url: str
    ) -> tuple[int, str, bytes]: ...


def parse_listen_address(address: str) -> tuple[str, int]:
    """'127.0.0.1:9878', '[::1]:9878' or ':9878' (all interfaces) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port")
    host = host.strip("[]")
    return host, int(port)


class _DeadlineReader(io.RawIOBase):
    """Socket reads that share one deadline per request, so trickled bytes cannot extend it.

    A plain socket timeout restarts with every byte received; a slowloris client sending one
    byte every few seconds would hold its thread for ever.
    """

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.sock = sock
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def restart(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request not received within the request timeout")
        self.sock.settimeout(remaining)
        return self.sock.recv_into(buffer)


class _RequestReader(io.BufferedReader):
    """The request stream; while `header_budget` is set, readline() spends it (the headers)."""

    header_budget: int | None = None

    def readline(self, size: int | None = -1, /) -> bytes:
        budget = self.header_budget
        if budget is None:
            return super().readline(size)
        limit = budget + 1 if size is None or size < 0 else min(size, budget + 1)
        line = super().readline(limit)
        self.header_budget = budget - len(line)
        if self.header_budget < 0:
            # parse_request answers 431 to this, as to one header line that is too long.
            raise http.client.LineTooLong(f"header section over {MAX_HEADER_BYTES} bytes")
        return line


def client_key(host: str) -> str:
    """What the per-client limit counts by: the address, or its /64 for IPv6 (one host)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


class ExporterHTTPServer(ThreadingHTTPServer):
    """A threading server with caps on concurrent connections and a per-request deadline.

    At most `max_connections` connections at once, and at most `max_connections_per_client`
    from one client address (an IPv6 client: its /64), so one client cannot take every slot.
    The last slots (an eighth, at least one) go only to an address holding no connection yet,
    so a scraper still gets in while a few addresses hold the rest. A connection over a limit
    gets 503 at once (on a TLS port: closed), never a queue.

    With TLS configured the accept loop only accepts: the handshake runs in the connection's
    own thread, under the same deadline and inside the same limits, so a slow client cannot
    hold up anyone else.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        exporter: Exporter,
        telemetry_path: str = "/metrics",
        webhooks: WebhookHandler | None = None,
        reload: Callable[[], str | None] | None = None,
        max_connections: int = 64,
        request_timeout: float = 10.0,
        web: WebConfig | None = None,
        max_connections_per_client: int = 8,
    ) -> None:
        host = address[0]
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.exporter = exporter
        self.web = web or WebConfig()  # replaced as a whole on reload
        self.telemetry_path = telemetry_path
        self.webhooks = webhooks
        self.reload = reload
        self.landing = LandingPage()  # rendered once per new snapshot or health change
        self.report_api = ReportEndpoint()  # GET /api/v1/report, one at a time
        self.whatif_api = WhatifEndpoint()  # GET /api/v1/whatif, one at a time
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.reserved_slots = max(1, max_connections // 8)
        self._slots_lock = threading.Lock()
        self._in_use = 0
        self._per_client: dict[str, int] = {}  # only clients holding a connection: bounded
        self._last_refusal_log = 0.0
        super().__init__(address, ExporterRequestHandler)

    def connections_of(self, host: str) -> int:
        """Connections the client at `host` holds now."""
        with self._slots_lock:
            return self._per_client.get(client_key(host), 0)

    def _admit(self, key: str) -> str | None:
        """Take a slot for the client `key`; None if taken, else why not."""
        with self._slots_lock:
            held = self._per_client.get(key, 0)
            if held >= self.max_connections_per_client:
                return f"it holds {held} connections (--web.max-connections-per-client)"
            if self._in_use >= self.max_connections:
                return f"all {self.max_connections} connections are in use"
            if held and self._in_use >= self.max_connections - self.reserved_slots:
                return (f"it holds {held} and the last {self.reserved_slots} connection(s) "
                        "are kept for other clients")
            self._in_use += 1
            self._per_client[key] = held + 1
            return None

    def _release(self, key: str) -> None:
        with self._slots_lock:
            self._in_use -= 1
            left = self._per_client.get(key, 1) - 1
            if left > 0:
                self._per_client[key] = left
            else:
                self._per_client.pop(key, None)

    def process_request(self, request: Any, client_address: Any) -> None:
        key = client_key(client_address[0])
        refused = self._admit(key)
        if refused is not None:
            self._log_refusal(client_address[0], refused)
            if not self.tls:  # on a TLS port a plain-text answer would only be garbage
                with contextlib.suppress(OSError):
                    request.sendall(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                        b"Retry-After: 1\r\nConnection: close\r\n\r\n"
                    )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, (*client_address[:2], key))
        except BaseException:
            self._release(key)
            raise

    def _log_refusal(self, host: str, why: str) -> None:
        """At most one warning a minute (a flood must not flood the log too), else debug."""
        now = time.monotonic()
        if now - self._last_refusal_log >= 60:
            self._last_refusal_log = now
            log.warning("connection from %s refused: %s; further refusals this minute are "
                        "logged at debug level", host, why)
        else:
            log.debug("connection from %s refused: %s", host, why)

    @property
    def tls(self) -> bool:
        return self.web.tls

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        key = client_address[2]  # added by process_request: the slot to give back
        client_address = client_address[:2]
        try:
            context = self.web.ssl_context
            if context is not None:
                secured = self._handshake(context, request, client_address)
                if secured is None:
                    return
                request = secured
            super().process_request_thread(request, client_address)
        finally:
            self._release(key)

    def _handshake(
        self, context: ssl.SSLContext, sock: socket.socket, client_address: Any
    ) -> ssl.SSLSocket | None:
        """TLS handshake within the request timeout; None (socket closed) if it fails."""
        deadline = time.monotonic() + self.request_timeout
        secured: ssl.SSLSocket | None = None
        try:
            sock.settimeout(self.request_timeout)
            first = sock.recv(1, socket.MSG_PEEK)
            if first and first[0] != _TLS_HANDSHAKE_RECORD:
                log.debug("%s: plain HTTP on the TLS port", client_address[0])
                sock.sendall(PLAIN_HTTP_ON_TLS)
                raise ConnectionAbortedError("plain HTTP")
            sock.setblocking(False)
            secured = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            while True:
                try:
                    secured.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    wait: tuple[list[Any], list[Any]] = ([secured], [])
                except ssl.SSLWantWriteError:
                    wait = ([], [secured])
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not any(select.select(*wait, [], remaining)[:2]):
                    raise TimeoutError("TLS handshake not finished within the request timeout")
            secured.settimeout(self.request_timeout)
            return secured
        except (OSError, ValueError) as exc:
            log.debug("%s: TLS handshake failed: %s", client_address[0], exc)
            self.shutdown_request(sock)
            if secured is not None:
                self.shutdown_request(secured)
            return None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Dropped connections and timeouts are the client's business: one debug line."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("%s: connection ended: %s", client_address[0], exc)
        else:
            log.error("%s: request failed", client_address[0], exc_info=True)


class ExporterRequestHandler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    server_version = f"contact-cost-exporter/{__version__}"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive scrape can stall
    # 40 ms on the client's delayed ACK.
    disable_nagle_algorithm = True

    rfile: _RequestReader

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # type: ignore[misc]  # per connection
        super().setup()
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection, self.server.request_timeout)
        self.rfile = _RequestReader(self._reader)
        self._body_left = 0

    def handle_one_request(self) -> None:
        # The deadline covers the wait for the request line, the headers and the body.
        self._reader.restart()
        self._body_left = 0
        super().handle_one_request()
        if self._body_left and not self.close_connection:
            # A route answered without reading the body: the stream is out of step, so the
            # rest of it is never parsed as another request.
            self.close_connection = True

    def parse_request(self) -> bool:
        """The stock parser, with the header section capped and the body's framing checked."""
        self._framing_checked = False
        self.rfile.header_budget = MAX_HEADER_BYTES
        try:
            ok = super().parse_request()
        finally:
            self.rfile.header_budget = None
        if ok and not self._framing_checked:
            ok = self._check_framing()
        return ok

    def handle_expect_100(self) -> bool:
        # Refuse a body we would not take before the client is told to send it.
        return self._check_framing() and super().handle_expect_100()

    def _check_framing(self) -> bool:
        """Content-Length is one run of ASCII digits within the cap, and no Transfer-Encoding:
        else a 400, 411 or 413 that closes the connection. Sets the body length to read."""
        self._framing_checked = True
        if "Transfer-Encoding" in self.headers:
            self.send_error(HTTPStatus.LENGTH_REQUIRED, "Content-Length required; "
                            "Transfer-Encoding is not accepted")
            return False
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return True
        value = values[0].strip(" \t")
        if len(values) > 1 or not _CONTENT_LENGTH.fullmatch(value):
            self.send_error(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
            return False
        if len(value) > 18 or int(value) > MAX_BODY_BYTES:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            return False
        self._body_left = int(value)
        return True

    def _discard_body(self) -> None:
        """Read and drop a body the route has no use for (within the cap and the deadline)."""
        while self._body_left > 0:
            chunk = self.rfile.read(min(self._body_left, 65_536))
            if not chunk:  # the client went away mid-body
                self.close_connection = True
                return
            self._body_left -= len(chunk)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), printable(format % args))  # request line

    # -- helpers ---------------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.connection.settimeout(self.server.request_timeout)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        merged = {"X-Content-Type-Options": "nosniff", **(headers or {}), **self.server.web.headers}
        for key, value in merged.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors (400, 414, 431, 501) as short plain text, never the stock HTML page."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # the request line was not understood
            self.request_version = "HTTP/1.0"  # so answer with a status line and headers
        reason = self.responses.get(code, ("error", ""))[0]
        body = f"{code} {message or reason}\n".encode("utf-8", "replace")
        self._send(code, body, headers=SECURITY_HEADERS)

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def _authorized(self) -> bool:
        """Basic auth, when users are configured; else answer 401 and return False."""
        auth = self.server.web.auth
        if not auth or auth.check(self.headers.get("Authorization")):
            return True
        self.close_connection = True  # a request body, if any, is left unread
        self._send(
            HTTPStatus.UNAUTHORIZED,
            b"Unauthorized\n",
            headers={"WWW-Authenticate": 'Basic realm="contact-cost-exporter", charset="UTF-8"'},
        )
        return False

    # -- routes ----------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._discard_body()
        if not self._authorized():
            return
        path = self._path()
        exporter = self.server.exporter
        if path == self.server.telemetry_path:
            gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
            body = exporter.metrics_body(gzipped)
            extra = {"Content-Encoding": "gzip"} if gzipped else {}
            self._send(HTTPStatus.OK, body, CONTENT_TYPE_METRICS, extra)
        elif path == "/healthz":
            if exporter.ready:
                self._send(HTTPStatus.OK, b"OK\n")
            else:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"waiting for the first recompute\n")
        elif path == "/":
            self._send(
                HTTPStatus.OK,
                self.server.landing.body(exporter, self.server.telemetry_path),
                "text/html; charset=utf-8",
                SECURITY_HEADERS,
            )
        elif path == "/api/v1/report":
            # An explicit request: it reads the store, in this request's thread, one at a time.
            moment = datetime.fromtimestamp(exporter.clock(), UTC)
            status, body = self.server.report_api.answer(
                self.path.partition("?")[2], exporter.store, exporter.settings, moment
            )
            self._send(status, body, "application/json", SECURITY_HEADERS)
        elif path == "/api/v1/whatif":
            moment = datetime.fromtimestamp(exporter.clock(), UTC)
            status, body = self.server.whatif_api.answer(
                self.path.partition("?")[2], exporter.store, exporter.settings, moment
            )
            self._send(status, body, "application/json", SECURITY_HEADERS)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n")

    def _read_body(self) -> bytes | None:
        """The body, its length already checked by _check_framing; None if answered."""
        if "Content-Length" not in self.headers:
            self.close_connection = True
            self._send(HTTPStatus.LENGTH_REQUIRED, b"Content-Length required\n")
            return None
        expected, self._body_left = self._body_left, 0
        body = self.rfile.read(expected)
        if len(body) < expected:  # the client closed the connection mid-body
            self.close_connection = True
            return None
        return body

    def do_POST(self) -> None:
        path = self._path()
        # Webhooks carry the vendor's signature instead of our basic auth.
        if not path.startswith("/webhooks/") and not self._authorized():
            return
        if path.startswith("/webhooks/") and self.server.webhooks is not None:
            body = self._read_body()
            if body is None:
                return
            host = self.headers.get("Host", "{}:{}".format(*self.server.server_address[:2]))
            scheme = "https" if self.server.tls else "http"
            url = f"{scheme}://{host}{self.path}"
            status, content_type, answer = self.server.webhooks.handle(
                "POST", path, self.headers, body, url
            )
            self._send(status, answer, content_type)
            return
        self._discard_body()
        if path == "/-/reload" and self.server.reload is not None:
            error = self.server.reload()
            if error is None:
                self._send(HTTPStatus.OK, b"config reloaded\n")
            else:
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"reload failed: {error}\n".encode())
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n")
