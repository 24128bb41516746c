"""Webhook receiver: verifies vendor pushes (Twilio, Aircall, generic); stores each once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from adapters.aircall import AircallSettings
from adapters.aircall import parse_webhook as parse_aircall
from adapters.base import Adapter
from adapters.generic_webhook import GenericWebhookSettings, parse_event
from adapters.http import ITEM_ERRORS, FieldError, ShapeError
from adapters.twilio import TwilioSettings, parse_status_callback
from collector.config import Settings
from collector.health import HealthState
from collector.model import Contact, Rejection
from collector.store import Store

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
TWILIO_SIGNATURE = "X-Twilio-Signature"
GENERIC_SIGNATURE = "X-Contact-Cost-Signature"
GENERIC_TIMESTAMP = "X-Contact-Cost-Timestamp"
_DEFAULT_PORTS = {"https": 443, "http": 80}


# -- signatures (pure) -----------------------------------------------------------------------
def twilio_signature(auth_token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """Twilio's X-Twilio-Signature: base64 HMAC-SHA1 of the URL + sorted name/value pairs."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _url_variants(url: str) -> list[str]:
    """The URL as given, and with the default port added or dropped (proxies differ)."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    host = parts.hostname or ""
    variants = [url]
    if default is None:
        return variants
    if parts.port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{host}:{default}")))
    elif parts.port == default:
        variants.append(urlunsplit(parts._replace(netloc=host)))
    return variants


def twilio_signature_valid(
    auth_token: str, url: str, params: Sequence[tuple[str, str]], signature: str | None
) -> bool:
    if not signature:
        return False
    given = signature.encode()
    ok = False
    for candidate in _url_variants(url):
        expected = twilio_signature(auth_token, candidate, params).encode()
        ok |= hmac.compare_digest(expected, given)
    return ok


def generic_signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex, as sent in X-Contact-Cost-Signature."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


class _Refused(Exception):
    def __init__(self, status: int, health_status: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.health_status = health_status


class WebhookReceiver:
    """Routes POST /webhooks/<kind>/<source> to the source's verifier and parser.

    Unknown sources and sources without `webhook = true` (and their secret) are 404. A bad
    or missing signature is 401 and counted, never stored. Events are stored by id through
    the store's (source, id) uniqueness, so a redelivery is 200 and counted as duplicate.
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
            kind = webhook_kind(adapter)
            if kind:
                self.routes[(kind, adapter.name)] = adapter

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, url: str
    ) -> tuple[int, str, bytes]:
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "webhooks" or (parts[2], parts[3]) not in self.routes:
            return 404, TEXT, b"no such webhook\n"
        kind, source = parts[2], parts[3]
        adapter = self.routes[(kind, source)]
        if method != "POST":
            return 405, TEXT, b"use POST\n"
        length = _header(headers, "Content-Length")
        too_big = len(body) > self.max_body_bytes or (
            length is not None and length.isdigit() and int(length) > self.max_body_bytes
        )
        try:
            if too_big:
                raise _Refused(413, "too_large", "request body too large")
            contact = self._verify_and_parse(kind, adapter, headers, body, url)
        except _Refused as refused:
            self.health.record_webhook(source, refused.health_status)
            log.warning("webhook %s/%s: %s", kind, source, refused)
            return refused.status, TEXT, f"{refused}\n".encode()
        except (*ITEM_ERRORS, ShapeError) as exc:
            reason = exc.reason if isinstance(exc, FieldError) else "shape"
            self.health.record_batch(source, 0, [Rejection(reason, 0, str(exc))])
            self.health.record_webhook(source, "rejected")
            log.warning("webhook %s/%s: rejected: %s", kind, source, exc)
            return 400, TEXT, f"rejected: {reason}\n".encode()
        if contact is None:
            self.health.record_webhook(source, "ignored")
            return 200, TEXT, b"ignored\n"
        try:
            inserted = self.store.commit(source, [contact], None)
        except Exception:  # the vendor retries a 503; the exporter keeps serving
            log.exception("webhook %s/%s: could not store event %s", kind, source, contact.id)
            self.health.record_webhook(source, "error")
            return 503, TEXT, b"try again later\n"
        if inserted:
            self.health.record_batch(source, inserted, [])
            self.health.record_webhook(source, "accepted")
            return 200, TEXT, b"accepted\n"
        self.health.record_webhook(source, "duplicate")
        return 200, TEXT, b"duplicate\n"

    # -- per vendor --------------------------------------------------------------------------
    def _verify_and_parse(
        self, kind: str, adapter: Adapter, headers: Mapping[str, str], body: bytes, url: str
    ) -> Contact | None:
        settings = adapter.settings
        if kind == "twilio":
            assert isinstance(settings, TwilioSettings)
            try:
                params = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                   strict_parsing=False)
            except UnicodeDecodeError:
                raise _Refused(401, "unauthorized", "invalid signature") from None
            signed_url = settings.public_url or url
            token = settings.auth_token.get_secret_value()
            if not twilio_signature_valid(token, signed_url, params,
                                          _header(headers, TWILIO_SIGNATURE)):
                raise _Refused(401, "unauthorized", "invalid signature")
            return parse_status_callback(dict(params), settings)
        if kind == "aircall":
            assert isinstance(settings, AircallSettings) and settings.webhook_token
            payload = _json(body)
            given_token = payload.get("token") if isinstance(payload, dict) else None
            wanted = settings.webhook_token.get_secret_value().encode()
            if not isinstance(given_token, str) or not hmac.compare_digest(
                given_token.encode(), wanted
            ):
                raise _Refused(401, "unauthorized", "invalid token")
            return parse_aircall(payload, settings)
        assert isinstance(settings, GenericWebhookSettings)
        stamp = _header(headers, GENERIC_TIMESTAMP) or ""
        given = (_header(headers, GENERIC_SIGNATURE) or "").encode()
        signature = generic_signature(settings.webhook_secret.get_secret_value(), stamp, body)
        if not stamp.isdigit() or not hmac.compare_digest(signature.encode(), given):
            raise _Refused(401, "unauthorized", "invalid signature")
        if abs(self.clock() - int(stamp)) > settings.tolerance.total_seconds():
            raise _Refused(401, "stale", "timestamp outside the allowed window")
        return parse_event(_json(body), settings)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def webhook_kind(adapter: Adapter) -> str | None:
    """Which webhook route a source answers on, or None when it has none enabled."""
    settings = adapter.settings
    if isinstance(settings, TwilioSettings) and settings.webhook:
        return "twilio"
    if isinstance(settings, AircallSettings) and settings.webhook and settings.webhook_token:
        return "aircall"
    if isinstance(settings, GenericWebhookSettings) and settings.webhook:
        return "generic"
    return None
