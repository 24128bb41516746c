"""The HTTP surface: landing page, /metrics, /healthz, webhooks and the reload endpoint."""

from __future__ import annotations

import html
import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from collector import __version__
from collector.runtime import Exporter

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


class ExporterHTTPServer(ThreadingHTTPServer):
    """A threading server with a cap on concurrent connections and a per-request timeout."""

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
    ) -> None:
        host = address[0]
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.exporter = exporter
        self.telemetry_path = telemetry_path
        self.webhooks = webhooks
        self.reload = reload
        self.request_timeout = request_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, ExporterRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class ExporterRequestHandler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    server_version = f"contact-cost-exporter/{__version__}"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.timeout = self.server.request_timeout
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)

    # -- helpers ---------------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    # -- routes ----------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
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
            self._send(HTTPStatus.LENGTH_REQUIRED, b"Content-Length required\n")
            return None
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"request body too large\n")
            return None
        return self.rfile.read(int(length))

    def do_POST(self) -> None:  # noqa: N802
        path = self._path()
        if path.startswith("/webhooks/") and self.server.webhooks is not None:
            body = self._read_body()
            if body is None:
                return
            host = self.headers.get("Host", "%s:%s" % self.server.server_address[:2])
            scheme = "https" if getattr(self.server, "tls", False) else "http"
            url = f"{scheme}://{host}{self.path}"
            status, content_type, answer = self.server.webhooks.handle(
                "POST", path, self.headers, body, url
            )
            self._send(status, answer, content_type)
        elif path == "/-/reload" and self.server.reload is not None:
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
