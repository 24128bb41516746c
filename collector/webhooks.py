"""Webhook router: POST /webhooks/<kind>/<source> to the source's adapter; stores each event once.

The router knows no vendor. It finds the source by route, caps the body, hands the request
to the adapter's `receive` (which verifies the sender and decodes the content), stores the
contact by (source, id) and counts the outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from adapters.base import (
    Adapter,
    FieldError,
    Headers,
    Rejection,
    WebhookRefused,
    WebhookRequest,
)
from collector import storelog
from collector.config import Settings
from collector.health import HealthState
from collector.logsafe import printable
from collector.store import Store
from collector.stores import STORE_ERRORS

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
MAX_DETAIL = 200


def content_length(value: str | None) -> int | None:
    """A Content-Length header as a number; ValueError unless it is ASCII digits only.

    str.isdigit() and int() accept digits such as '²' or '٣'; a header is ASCII or wrong.
    """
    if value is None:
        return None
    text = value.strip(" \t")
    if not (text.isascii() and text.isdigit()):
        raise ValueError("Content-Length is not a number")
    return int(text)


class WebhookReceiver:
    """Routes POST /webhooks/<kind>/<source> to the adapter of that source.

    A route exists for each adapter with a `webhook_kind` whose source sets `webhook = true`;
    anything else is 404. A refused request (bad signature, stale) is counted by its reason
    and never stored; a verified sender's unusable content is 400 and one rejected record.
    Events are stored through the store's (source, id) uniqueness, so a redelivery is 200
    and counted as duplicate. A commit that fails on storage is 503 (the sender retries),
    counted as a failed store commit with contactcenter_store_up 0, and logged once per
    outage (collector.storelog), as the jobs' are.
    """

    def __init__(
        self,
        settings: Settings,
        adapters: Sequence[Adapter],
        store: Store,
        health: HealthState,
        max_body_bytes: int = 1_048_576,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.health = health
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.routes: dict[tuple[str, str], Adapter] = {}
        for adapter in adapters:
            if adapter.webhook_enabled and adapter.webhook_kind:
                self.routes[(adapter.webhook_kind, adapter.name)] = adapter

    def handle(
        self, method: str, path: str, headers: Any, body: bytes, url: str
    ) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request; `headers` is anything with items()."""
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "webhooks" or (parts[2], parts[3]) not in self.routes:
            return 404, TEXT, b"no such webhook\n"
        kind, source = parts[2], parts[3]
        adapter = self.routes[(kind, source)]
        if method != "POST":
            return 405, TEXT, b"use POST\n"
        request = WebhookRequest(method, path, url, Headers(list(headers.items())), body)
        try:
            length = content_length(request.headers.get("Content-Length"))
        except ValueError:
            return self._refused(kind, source, WebhookRefused(400, "bad_request",
                                                              "invalid Content-Length"))
        if len(body) > self.max_body_bytes or (length is not None and
                                               length > self.max_body_bytes):
            return self._refused(kind, source, WebhookRefused(413, "too_large",
                                                              "request body too large"))
        try:
            contact = adapter.receive(request, self.clock())
        except WebhookRefused as refused:
            return self._refused(kind, source, refused)
        except FieldError as exc:
            detail = str(exc)[:MAX_DETAIL]
            self.health.record_batch(source, 0, [Rejection(exc.reason, 0, detail)])
            self.health.record_webhook(source, "rejected")
            log.warning("webhook %s/%s: rejected record (%s): %s", kind, source, exc.reason,
                        printable(detail))
            return 400, TEXT, f"rejected: {exc.reason}\n".encode()
        except Exception:  # an adapter's bug: the exporter keeps serving, the vendor retries
            log.exception("webhook %s/%s: the adapter failed on a request", kind, source)
            self.health.record_webhook(source, "error")
            return 500, TEXT, b"internal error\n"
        if contact is None:
            self.health.record_webhook(source, "ignored")
            return 200, TEXT, b"ignored\n"
        try:
            inserted = self.store.commit(source, [contact], None)
        except STORE_ERRORS as exc:  # storage failed: counted as the jobs' store calls are
            first = self.health.record_store_error("commit")
            self.health.record_webhook(source, "error")
            if first:  # an outage's later 503s are counted, not logged
                log.warning("webhook %s/%s: could not store event %s, answered 503 (the "
                            "sender retries)", kind, source, printable(contact.id))
            storelog.store_failed(exc, "commit", first)
            return 503, TEXT, b"try again later\n"
        except Exception:  # a bug: the vendor retries a 503; the exporter keeps serving
            log.exception("webhook %s/%s: could not store event %r", kind, source, contact.id)
            self.health.record_webhook(source, "error")
            return 503, TEXT, b"try again later\n"
        if self.health.set_store_up(True):
            storelog.store_back()
        if inserted:
            self.health.record_batch(source, inserted, [], newest=contact.start)
            self.health.record_webhook(source, "accepted")
            return 200, TEXT, b"accepted\n"
        self.health.record_batch(source, 0, [], duplicates=1)  # a redelivery, stored once
        self.health.record_webhook(source, "duplicate")
        return 200, TEXT, b"duplicate\n"

    def _refused(self, kind: str, source: str, refused: WebhookRefused) -> tuple[int, str, bytes]:
        self.health.record_webhook(source, refused.reason)
        log.warning("webhook %s/%s: %s", kind, source, printable(refused))  # a plug-in's text
        return refused.status, TEXT, f"{refused}\n".encode()
