"""Text from input is logged on one line with its control characters escaped (issue 10, 12)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.base import Adapter, Batch, Contact, FieldError, WebhookRefused, WebhookRequest
from adapters.generic_webhook import GenericWebhookSettings
from collector.config import Settings
from collector.health import HealthState
from collector.logsafe import printable
from collector.server import ExporterHTTPServer
from collector.webhooks import WebhookReceiver
from tests.conftest import wait_for
from tests.vendor_support import CONTEXT, new_store


def test_control_characters_are_escaped() -> None:
    # A disposition from a hostile export: clear-screen, carriage return, NUL, a forged line.
    raw = "\x1b[2J\rANSWERED\x00\nts=2026 level=info msg=forged\x7f\x9b"
    assert printable(raw) == (
        "\\x1b[2J\\rANSWERED\\x00\\nts=2026 level=info msg=forged\\x7f\\x9b"
    )


def test_unicode_separators_and_bidi_overrides_are_escaped() -> None:
    # U+2028 (line separator) splits a line in some viewers; U+202E reverses what follows.
    assert printable("a\u2028b\u202ec") == "a\\u2028b\\u202ec"


def test_printable_text_is_unchanged_and_bounded() -> None:
    assert printable("Køen «salg», 12 € — ok") == "Køen «salg», 12 € — ok"
    assert printable("x" * 500) == "x" * 297 + "..."
    # The limit counts the escaped text: 9 characters (two \x00 escapes and a backslash),
    # then "...": 12 in all, and still no raw control character.
    assert printable("\x00" * 10, limit=12) == "\\x00\\x00\\..."
    assert len(printable("\x00" * 10, limit=12)) == 12
    assert printable(ValueError("bad\rvalue")) == "bad\\rvalue"


# -- the log lines that carry text from a request ---------------------------------------------
def _receiver(tmp_path: Path, adapter: Adapter) -> WebhookReceiver:
    health = HealthState()
    health.configure({adapter.name: 60})
    return WebhookReceiver(Settings(), [adapter], new_store(tmp_path), health, clock=lambda: 0.0)


class _Hostile(Adapter):
    """A plug-in whose refusal and rejection texts carry the sender's bytes."""

    settings_model = GenericWebhookSettings
    webhook_kind = "hostile"

    def pull(self, position: str | None) -> Iterator[Batch]:
        return iter(())

    def receive(self, request: WebhookRequest, now: float) -> Contact | None:
        text = request.body.decode()
        if request.headers.get("X-Refuse"):
            raise WebhookRefused(401, "unauthorized", f"bad signature {text}")
        raise FieldError("date", f"start {text}")


def test_webhook_refusals_and_rejections_are_logged_escaped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = _Hostile(GenericWebhookSettings(name="crm", adapter="x", webhook_secret="s"),
                       CONTEXT)
    receiver = _receiver(tmp_path, adapter)
    body = b"\x1b[2J\rlevel=error msg=forged"
    with caplog.at_level(logging.WARNING, logger="collector.webhooks"):
        assert receiver.handle("POST", "/webhooks/hostile/crm", {}, body, "u")[0] == 400
        assert receiver.handle("POST", "/webhooks/hostile/crm", {"X-Refuse": "1"}, body,
                               "u")[0] == 401
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "webhook hostile/crm: rejected record (date): start \\x1b[2J\\rlevel=error msg=forged",
        "webhook hostile/crm: bad signature \\x1b[2J\\rlevel=error msg=forged",
    ]


def test_the_server_debug_log_escapes_the_request_line(
    empty_exporter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    srv = ExporterHTTPServer(("127.0.0.1", 0), empty_exporter)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="collector.server"), \
                socket.create_connection(srv.server_address[:2], timeout=5) as sock:
            sock.sendall(b"GET /\x1b[2J\rforged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass
            wait_for(lambda: any("forged" in r.getMessage() for r in caplog.records) or None,
                     timeout=5, what="the request's log line")
    finally:
        srv.shutdown()
        srv.server_close()
    lines = [r.getMessage() for r in caplog.records if "forged" in r.getMessage()]
    assert lines and all("\x1b" not in m and "\r" not in m for m in lines)
    assert "GET /\\x1b[2J\\rforged HTTP/1.1" in lines[0]
