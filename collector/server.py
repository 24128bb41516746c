"""The HTTP surface: landing page, /metrics, /healthz, webhooks and the reload endpoint."""

from __future__ import annotations

import contextlib
import html
import io
import logging
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from collector import __version__
from collector.runtime import Exporter
from collector.webconfig import WebConfig

log = logging.getLogger(__name__)

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
MAX_BODY_BYTES = 1_048_576
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


class ExporterHTTPServer(ThreadingHTTPServer):
    """A threading server with a cap on concurrent connections and a per-request deadline.

    With TLS configured the accept loop only accepts: the handshake runs in the connection's
    own thread, under the same deadline, so a slow client cannot hold up anyone else.
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
    ) -> None:
        host = address[0]
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.exporter = exporter
        self.web = web or WebConfig()  # replaced as a whole on reload
        self.telemetry_path = telemetry_path
        self.webhooks = webhooks
        self.reload = reload
        self.request_timeout = request_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, ExporterRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    @property
    def tls(self) -> bool:
        return self.web.tls

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            context = self.web.ssl_context
            if context is not None:
                secured = self._handshake(context, request, client_address)
                if secured is None:
                    return
                request = secured
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _handshake(
        self, context: ssl.SSLContext, sock: socket.socket, client_address: Any
    ) -> ssl.SSLSocket | None:
        """TLS handshake within the request timeout; None (socket closed) if it fails."""
        deadline = time.monotonic() + self.request_timeout
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
            if "secured" in locals():
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

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # type: ignore[misc]  # per connection
        super().setup()
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection, self.server.request_timeout)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        # The deadline covers the wait for the request line, the headers and the body.
        self._reader.restart()
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

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
                landing_page(exporter, self.server.telemetry_path).encode(),
                "text/html; charset=utf-8",
                SECURITY_HEADERS,
            )
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n")

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._send(HTTPStatus.LENGTH_REQUIRED, b"Content-Length required\n")
            return None
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"request body too large\n")
            return None
        return self.rfile.read(int(length))

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
        self.close_connection = True  # bodies other than a webhook's are never read
        if path == "/-/reload" and self.server.reload is not None:
            error = self.server.reload()
            if error is None:
                self._send(HTTPStatus.OK, b"config reloaded\n")
            else:
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"reload failed: {error}\n".encode())
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n")


def landing_page(exporter: Exporter, telemetry_path: str) -> str:
    """The HTML landing page: version, each source's status, a link to the metrics."""
    snapshot = exporter.snapshots.current
    rows = []
    for name, state in sorted(exporter.health.sources().items()):
        adapter = exporter.adapters.get(name)
        status = "up" if state.up else ("down" if state.last_run else "not read yet")
        rows.append(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
                html.escape(name),
                html.escape(adapter.settings.adapter if adapter else ""),
                status,
                state.records,
                sum(state.rejected.values()),
                html.escape(state.last_error),
            )
        )
    if snapshot:
        figures = f"{snapshot.series} series, recomputed in {snapshot.duration * 1000:.1f} ms"
    else:
        figures = "waiting for the first recompute"
    path = html.escape(telemetry_path)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>contact-cost-exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}</style>
</head><body>
<h1>contact-cost-exporter</h1>
<p>Version {__version__}. Cost per contact, recomputed every
{exporter.settings.interval.total_seconds():g}s. Figures: {html.escape(figures)}.</p>
<p><a href="{path}">Metrics</a> &middot; <a href="/healthz">Health</a></p>
<h2>Sources</h2>
<table><tr><th>source</th><th>adapter</th><th>status</th><th>records</th>
<th>rejected</th><th>last error</th></tr>
{"".join(rows)}
</table>
</body></html>
"""
