"""Aircall calls (GET /v1/calls): voice contacts in from/to windows kept under the 10,000 cap."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from pydantic import Field, SecretStr

from adapters import fields
from adapters.base import (
    Batch,
    Contact,
    Duration,
    FieldError,
    Rejection,
    ShapeError,
    WebhookRefused,
    WebhookRequest,
    hash_customer,
)
from adapters.fields import (
    ITEM_ERRORS,
    as_field_error,
    decode_json,
    item_rejection,
    label,
    load_state,
    outcome_of_tags,
    record_fingerprint,
    record_id,
    require_list,
    require_object,
    unix_seconds,
)
from adapters.http import (
    ApiAdapter,
    Credentials,
    LookbackSettings,
    ParsedPage,
    lowest,
    malformed_page,
)

log = logging.getLogger(__name__)

DIRECTIONS = {"inbound": "inbound", "outbound": "outbound"}
MISSED_REASONS = {
    "out_of_opening_hours",
    "short_abandoned",
    "abandoned_in_ivr",
    "abandoned_in_classic",
    "no_available_agent",
    "agents_did_not_answer",
}
# A call.ended event is a few KiB; the body is decoded before its sender is known.
WEBHOOK_MAX_BYTES = 262_144
RECORD_CAP = 10_000  # Aircall lists at most this many records for one query
MIN_WINDOW = 60.0


class AircallSettings(LookbackSettings):
    # the first run reads calls from start_date (UTC), else from `lookback` ago
    base_url: str = "https://api.aircall.io/"
    api_id: str
    api_token: SecretStr
    window: Duration = timedelta(days=1)  # shrunk automatically when a window passes the cap
    lag: Duration = timedelta(minutes=5)  # leave the newest minutes for the next run
    pending_max_age: Duration = timedelta(days=1)  # a call not "done" after this is dropped
    per_page: int = Field(default=50, ge=1, le=50)
    requests_per_minute: float = 60.0
    # queues maps the Aircall number's name (or its digits) to a queue; outcomes maps tags
    # webhook (call.ended events): POST /webhooks/aircall/<source>
    webhook: bool = False
    webhook_token: SecretStr | None = None


# -- pure parser -------------------------------------------------------------------------------
def parse_call(
    call: Mapping[str, Any], settings: AircallSettings, latest: float | None = None
) -> Contact | None:
    """One Aircall call object -> Contact; None until its status is "done". Raises FieldError;
    `future` for a start after `latest` (now + max_future)."""
    call_id = record_id(call, "id")
    if call.get("status") != "done":
        return None
    direction = DIRECTIONS.get(str(call.get("direction")))
    if direction is None:
        raise FieldError("direction", f"{call_id}: unknown direction {call.get('direction')!r}")
    start = fields.not_future(unix_seconds(call.get("started_at"), "started_at"), latest)
    ended = unix_seconds(call.get("ended_at"), "ended_at")
    if ended < start:
        raise FieldError("duration", f"{call_id}: ended_at before started_at")
    answered_at = call.get("answered_at")
    handled = answered_at is not None
    talk = 0.0
    wait: float | None = None
    if handled:
        answered = unix_seconds(answered_at, "answered_at")
        talk = max(0.0, ended - answered)
        # Wait: answered_at - started_at, for an inbound call (outbound: the callee's ring).
        if direction == "inbound":
            wait = fields.duration(max(0.0, answered - start), "wait")
    elif direction == "inbound":
        wait = fields.duration(ended - start, "wait")  # until the caller left
    # Handle time is the measured talk time only. `user.wrap_up_time` is the user's pre-set
    # wrap-up timer (a setting, present before the call has even ended), not after-call
    # work that was measured, so it is not added; the Call object measures no ACW.
    duration = call.get("duration")
    billable = float(duration) if isinstance(duration, (int, float)) else ended - start
    fields.duration(billable, "duration")  # finite and under the bound (JSON has Infinity)
    fields.duration(talk, "talk time")
    reason = ""
    if not handled:
        raw = call.get("missed_call_reason")
        reason = raw if raw in MISSED_REASONS else "missed"
    raw_number = call.get("number")
    number: dict[str, Any] = raw_number if isinstance(raw_number, dict) else {}
    queue = label(settings.queues, number.get("name"), "")
    if not queue:
        queue = label(settings.queues, number.get("digits"))
    return Contact(
        id=call_id,
        channel="voice",
        direction=direction,
        queue=queue,
        start=start,
        handled=handled,
        handle_seconds=talk,
        talk_seconds=talk,
        billable_seconds=max(0.0, billable),
        outcome=outcome_of_tags(call.get("tags"), settings.outcomes),
        customer=hash_customer(call.get("raw_digits") if isinstance(call.get("raw_digits"), str)
                               else None),
        price=None,
        reason=reason,
        wait_seconds=wait,
    )


def parse_calls_page(data: Any, settings: AircallSettings, now: float) -> ParsedPage:
    """A /v1/calls page -> contacts, rejections, `hold` (the oldest start of a call not done
    yet), `more` (a next page link) and the vendor's `total`."""
    body = require_object(data, "calls page")
    calls = require_list(body, "calls", "calls page")
    meta = require_object(body.get("meta"), "calls page meta")
    contacts: list[Contact] = []
    rejections: list[Rejection] = []
    pending: list[float] = []
    for index, call in enumerate(calls, start=1):
        if not isinstance(call, dict):
            rejections.append(Rejection("shape", index, "call is not an object",
                                        record_fingerprint(call)))
            continue
        try:
            contact = parse_call(call, settings, now + settings.max_future.total_seconds())
        except ITEM_ERRORS as exc:
            rejections.append(item_rejection(exc, index, call))
            continue
        if contact is not None:
            contacts.append(contact)
            continue
        # Not finished yet: held back while young, else counted as a rejection; never dropped.
        try:
            started = unix_seconds(call.get("started_at"), "started_at")
        except FieldError as exc:
            rejections.append(item_rejection(exc, index, call))
            continue
        if now - started < settings.pending_max_age.total_seconds():
            pending.append(started)
        else:
            rejections.append(
                Rejection("status", index, "call never finished", record_fingerprint(call))
            )
    total = meta.get("total")
    return ParsedPage(contacts, rejections, more=bool(meta.get("next_page_link")),
                      hold=min(pending, default=None),
                      total=total if isinstance(total, int) else None)


def parse_webhook(
    payload: Any, settings: AircallSettings, latest: float | None = None
) -> Contact | None:
    """A webhook body -> Contact for a finished call; None for other events. Raises ShapeError."""
    body = require_object(payload, "webhook")
    if body.get("resource") != "call" or body.get("event") != "call.ended":
        return None
    data = require_object(body.get("data"), "webhook data")
    return parse_call(data, settings, latest)


def verified_payload(body: bytes, token: str) -> dict[str, Any]:
    """The webhook's JSON object when its `token` field is `token`; else WebhookRefused(401).

    Aircall puts the token inside the body, so the body is decoded before the sender is
    known: within bounded size and depth, and anything undecodable or unreadable is an
    unauthorized request, never a rejected record.
    """
    try:
        payload = decode_json(body, max_bytes=WEBHOOK_MAX_BYTES)
    except ShapeError:
        raise WebhookRefused(401, "unauthorized", "invalid token") from None
    given = payload.get("token") if isinstance(payload, dict) else None
    try:
        matches = isinstance(given, str) and hmac.compare_digest(
            given.encode("utf-8"), token.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate such as "\udc80" is no token
        matches = False
    if not matches:
        raise WebhookRefused(401, "unauthorized", "invalid token")
    assert isinstance(payload, dict)
    return payload


# -- I/O shell ---------------------------------------------------------------------------------
class AircallAdapter(ApiAdapter):
    """Pulls /v1/calls window by window, oldest first, `per_page` 50.

    Position: {"from": s, "to": s or null, "page": n, "hold": s or null}. Within a window
    the page number resumes; after a window, `from` moves to its end (or to the oldest call
    not yet done), so windows overlap at the boundary and the store drops the overlap.
    """

    settings_model = AircallSettings
    settings: AircallSettings
    webhook_kind = "aircall"
    produces_channels = frozenset({"voice"})  # for --config.check's scope warnings

    @property
    def webhook_enabled(self) -> bool:
        return self.settings.webhook and self.settings.webhook_token is not None

    def receive(self, request: WebhookRequest, now: float) -> Contact | None:
        """A call.ended event; other events are ignored. The token is checked first."""
        token = self.settings.webhook_token
        if token is None:
            raise WebhookRefused(404, "not_found", "no such webhook")
        payload = verified_payload(request.body, token.get_secret_value())
        try:
            latest = now + self.settings.max_future.total_seconds()
            return parse_webhook(payload, self.settings, latest)
        except ITEM_ERRORS as exc:
            raise as_field_error(exc) from None

    def credentials(self) -> Credentials:
        return (self.settings.api_id, self.settings.api_token.get_secret_value()), None

    def pull(self, position: str | None) -> Iterator[Batch]:
        state = load_state(position)
        now = self.clock()
        horizon = now - self.settings.lag.total_seconds()
        start = float(state.get("from") or self.settings.first_moment(now))
        end = state.get("to")
        page_no = int(state.get("page") or 1)
        hold = state.get("hold")
        window = self.settings.window.total_seconds()
        while True:
            if end is None:
                end = min(start + window, horizon)
                page_no, hold = 1, None
            if end <= start:
                return
            params = {"from": int(start), "to": int(end), "per_page": self.settings.per_page,
                      "page": page_no, "order": "asc"}
            page = self.client.get("v1/calls", params)
            try:
                parsed = parse_calls_page(page.data, self.settings, now)
            except ShapeError as exc:
                yield malformed_page(page, exc)
                return
            if page_no == 1 and parsed.total is not None and parsed.total > RECORD_CAP:
                if end - start > MIN_WINDOW:
                    end = start + max(MIN_WINDOW, (end - start) / 2)
                    window = end - start
                    continue
                log.warning("source %s: %d calls in one minute; reading the first %d",
                            self.name, parsed.total, RECORD_CAP)
            hold = lowest(hold, parsed.hold)
            if parsed.more and page_no * self.settings.per_page < RECORD_CAP:
                state = {"from": start, "to": end, "page": page_no + 1, "hold": hold}
                yield Batch(parsed.contacts, parsed.rejections, json.dumps(state),
                            page.location)
                page_no += 1
                continue
            next_from = min(hold, end) if hold is not None else end
            state = {"from": next_from}
            yield Batch(parsed.contacts, parsed.rejections, json.dumps(state),
                        page.location)
            if end >= horizon or next_from <= start:
                return  # caught up, or a call still in progress holds this window open
            start, end = next_from, None

