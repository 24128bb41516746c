"""A push-only source: JSON contact events posted to /webhooks/generic/<source>, HMAC signed."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from pydantic import ConfigDict, Field, SecretStr

from adapters.base import Adapter
from adapters.http import (
    FieldError,
    LabelMap,
    iso8601,
    label,
    record_id,
    require_object,
    seconds,
    unix_seconds,
)
from collector.config import Duration, SourceSettings
from collector.model import CHANNELS_KNOWN, Batch, Contact, hash_customer

_REASON = re.compile(r"^[a-z0-9_]{1,40}$")


class GenericWebhookSettings(SourceSettings):
    model_config = ConfigDict(extra="forbid")
    webhook: bool = True
    webhook_secret: SecretStr  # shared with the sender; signs "<timestamp>.<body>"
    tolerance: Duration = timedelta(minutes=5)  # older (or newer) timestamps are refused
    queues: LabelMap = Field(default_factory=dict)
    outcomes: LabelMap = Field(default_factory=dict)


def parse_event(payload: Any, settings: GenericWebhookSettings) -> Contact:
    """A JSON contact event -> Contact. Raises FieldError or ShapeError.

    {"id": "...", "channel": "chat", "direction": "inbound", "queue": "<raw>", "start":
    ISO 8601 or UNIX seconds, "handled": true, "handle_seconds": 300, "talk_seconds": 240,
    "billable_seconds": 0, "outcome": "<raw>", "customer": "<raw key>", "price": 0.02,
    "reason": "abandoned"}. queue and outcome go through the configured maps.
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
    handled = event.get("handled", True)
    if not isinstance(handled, bool):
        raise FieldError("handled", f"{event_id}: handled must be true or false")
    handle = seconds(event.get("handle_seconds"), "handle_seconds", default=0.0)
    talk = seconds(event.get("talk_seconds"), "talk_seconds", default=handle)
    billable = seconds(event.get("billable_seconds"), "billable_seconds", default=0.0)
    price = event.get("price")
    if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float))
                              or price < 0):
        raise FieldError("price", f"{event_id}: price must be a non-negative number")
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
        price=float(price) if price is not None else None,
        reason=reason,
    )


class GenericWebhookAdapter(Adapter):
    """Contacts arrive only by webhook; pull has nothing to read."""

    settings_model = GenericWebhookSettings
    settings: GenericWebhookSettings

    def pull(self, position: str | None) -> Iterator[Batch]:
        return iter(())

    def parse(self, payload: Mapping[str, Any]) -> Contact:
        return parse_event(payload, self.settings)
