"""A push-only source: JSON contact events posted to /webhooks/generic/<source>, HMAC signed."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from pydantic import ConfigDict, Field, SecretStr

from adapters.base import (
    CHANNELS_KNOWN,
    Adapter,
    Batch,
    Contact,
    Duration,
    FieldError,
    LabelMap,
    SourceSettings,
    WebhookRefused,
    WebhookRequest,
    hash_customer,
)
from adapters.fields import (
    ITEM_ERRORS,
    as_field_error,
    decode_json,
    iso8601,
    label,
    not_future,
    price,
    record_id,
    require_object,
    seconds,
    unix_seconds,
)

SIGNATURE_HEADER = "X-Contact-Cost-Signature"
TIMESTAMP_HEADER = "X-Contact-Cost-Timestamp"

_REASON = re.compile(r"^[a-z0-9_]{1,40}$")


class GenericWebhookSettings(SourceSettings):
    model_config = ConfigDict(extra="forbid")
    webhook: bool = True
    webhook_secret: SecretStr  # shared with the sender; signs "<timestamp>.<body>"
    tolerance: Duration = timedelta(minutes=5)  # older (or newer) timestamps are refused
    queues: LabelMap = Field(default_factory=dict)
    outcomes: LabelMap = Field(default_factory=dict)


def parse_event(
    payload: Any, settings: GenericWebhookSettings, latest: float | None = None
) -> Contact:
    """A JSON contact event -> Contact. Raises FieldError or ShapeError.

    {"id": "...", "channel": "chat", "direction": "inbound", "queue": "<raw>", "start":
    ISO 8601 or UNIX seconds, "handled": true, "handle_seconds": 300, "talk_seconds": 240,
    "billable_seconds": 0, "outcome": "<raw>", "customer": "<raw key>", "price": 0.02,
    "reason": "abandoned"}. queue and outcome go through the configured maps. Numbers must
    be finite and within the field parser's bounds; a start after `latest` is `future`.
    """
    event = require_object(payload, "event")
    event_id = record_id(event, "id")
    channel = event.get("channel")
    if channel not in CHANNELS_KNOWN:
        channel = "other"
    direction = event.get("direction", "inbound")
    if direction not in ("inbound", "outbound"):
        raise FieldError("direction", f"{event_id}: direction {direction!r}")
    start_raw = event.get("start")
    if isinstance(start_raw, (int, float)) and not isinstance(start_raw, bool):
        start = unix_seconds(start_raw, "start")
    else:
        start = iso8601(start_raw, "start")
    not_future(start, latest, "start")
    handled = event.get("handled", True)
    if not isinstance(handled, bool):
        raise FieldError("handled", f"{event_id}: handled must be true or false")
    handle = seconds(event.get("handle_seconds"), "handle_seconds", default=0.0)
    talk = seconds(event.get("talk_seconds"), "talk_seconds", default=handle)
    billable = seconds(event.get("billable_seconds"), "billable_seconds", default=0.0)
    if isinstance(event.get("price"), str):
        raise FieldError("price", f"{event_id}: price must be a JSON number")
    cost = price(event.get("price"), "price")  # finite, 0..MAX_PRICE (Infinity, NaN: no)
    outcome_raw = event.get("outcome")
    reason = event.get("reason") or ("" if handled else "unhandled")
    if not isinstance(reason, str) or not _REASON.match(reason or "x"):
        reason = "other"
    customer = event.get("customer")
    return Contact(
        id=event_id,
        channel=str(channel),
        direction=direction,
        queue=label(settings.queues, event.get("queue")),
        start=start,
        handled=handled,
        handle_seconds=handle if handled else 0.0,
        talk_seconds=talk if handled else 0.0,
        billable_seconds=billable,
        outcome=label(settings.outcomes, outcome_raw) if outcome_raw else "",
        customer=hash_customer(customer if isinstance(customer, str) else None),
        price=cost,
        reason=reason,
    )


def generic_signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex, as sent in X-Contact-Cost-Signature."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: str, tolerance: float,
           now: float) -> None:
    """Raise WebhookRefused unless the body is signed with `secret` at a time near `now`."""
    stamp = headers.get(TIMESTAMP_HEADER) or ""
    given = headers.get(SIGNATURE_HEADER) or ""
    # at most 12 digits (year 33658): int() refuses strings of over 4300 digits
    if not (len(stamp) <= 12 and stamp.isascii() and stamp.isdigit() and given.isascii()):
        raise WebhookRefused(401, "unauthorized", "invalid signature")
    expected = generic_signature(secret, stamp, body)
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise WebhookRefused(401, "unauthorized", "invalid signature")
    if abs(now - int(stamp)) > tolerance:
        raise WebhookRefused(401, "stale", "timestamp outside the allowed window")


class GenericWebhookAdapter(Adapter):
    """Contacts arrive only by webhook; pull has nothing to read."""

    settings_model = GenericWebhookSettings
    settings: GenericWebhookSettings
    webhook_kind = "generic"

    def pull(self, position: str | None) -> Iterator[Batch]:
        return iter(())

    def receive(self, request: WebhookRequest, now: float) -> Contact | None:
        """One signed JSON contact event."""
        verify(request.headers, request.body, self.settings.webhook_secret.get_secret_value(),
               self.settings.tolerance.total_seconds(), now)
        try:  # from here on the sender is known: bad content is a rejected record
            latest = now + self.settings.max_future.total_seconds()
            return parse_event(decode_json(request.body), self.settings, latest)
        except ITEM_ERRORS as exc:
            raise as_field_error(exc) from None
