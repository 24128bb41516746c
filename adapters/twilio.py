"""Twilio Calls list (API 2010-04-01): calls as voice contacts, with the carrier's own price."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import Field, SecretStr

from adapters import fields
from adapters.base import (
    Batch,
    Contact,
    Duration,
    FieldError,
    Rejection,
    ShapeError,
    SourceError,
    WebhookRefused,
    WebhookRequest,
    hash_customer,
)
from adapters.fields import (
    ITEM_ERRORS,
    as_field_error,
    item_rejection,
    label,
    load_state,
    record_fingerprint,
    record_id,
    require_list,
    require_object,
    rfc2822,
    seconds,
)
from adapters.http import (
    ApiAdapter,
    ApiSourceSettings,
    Credentials,
    ParsedPage,
    held_or_top,
    highest,
    lowest,
    malformed_page,
)

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
FINAL = {"completed", "busy", "no-answer", "failed", "canceled"}
PENDING = {"queued", "ringing", "in-progress"}
DIRECTIONS = {
    "inbound": "inbound",
    "outbound-api": "outbound",
    "outbound-dial": "outbound",
    "trunking-terminating": "inbound",  # from the PSTN into your SIP trunk
    "trunking-originating": "outbound",  # from your SIP trunk out to the PSTN
}


class TwilioSettings(ApiSourceSettings):
    base_url: str = "https://api.twilio.com/"
    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: SecretStr
    api_key_sid: str | None = None  # an API key (SK...) instead of the account's auth token
    start_date: date | None = None  # first run: calls that started on or after this day (UTC)
    page_size: int = Field(default=1000, ge=1, le=1000)
    requests_per_minute: float = 600.0
    include_child_calls: bool = False  # <Dial> legs double-count the parent call
    price_grace: Duration = timedelta(minutes=30)  # wait this long after the end for a price
    # webhook (status callbacks): POST /webhooks/twilio/<source>
    webhook: bool = False
    public_url: str | None = None  # the exact URL configured in Twilio, when behind a proxy


# -- pure parser -------------------------------------------------------------------------------
def parse_call(
    call: Mapping[str, Any], settings: TwilioSettings, currency: str, now: float
) -> Contact | None:
    """One Call resource -> Contact; None when it is not final yet. Raises FieldError."""
    sid = record_id(call, "sid")
    status = call.get("status")
    if status in PENDING:
        return None
    if status not in FINAL:
        raise FieldError("status", f"{sid}: unknown status {status!r}")
    direction = DIRECTIONS.get(str(call.get("direction")))
    if direction is None:
        raise FieldError("direction", f"{sid}: unknown direction {call.get('direction')!r}")
    start = rfc2822(call.get("start_time"), "start_time")
    fields.not_future(start, now + settings.max_future.total_seconds(), "start_time")
    duration = seconds(call.get("duration"), "duration", default=0.0)
    price = _price(call, currency, sid)
    if price is None and status == "completed":
        end = call.get("end_time")
        ended = rfc2822(end, "end_time") if end else start + duration
        if now - ended < settings.price_grace.total_seconds():
            return None  # not billed yet; read again next run
    return _call_contact(settings, sid, status, direction, start, duration,
                         call.get("to"), call.get("from"), price)


def _call_contact(settings: TwilioSettings, sid: str, status: str, direction: str,
                  start: float, duration: float, to: Any, from_: Any,
                  price: float | None = None) -> Contact:
    """The contact of a final call, from a Calls resource or a status callback alike."""
    handled = status == "completed"
    ours, theirs = (from_, to) if direction == "outbound" else (to, from_)
    return Contact(
        id=sid,
        channel="voice",
        direction=direction,
        queue=label(settings.queues, ours),
        start=start,
        handled=handled,
        handle_seconds=duration if handled else 0.0,
        talk_seconds=duration if handled else 0.0,
        billable_seconds=duration,
        outcome="",
        customer=hash_customer(theirs if isinstance(theirs, str) else None),
        price=price,
        reason="" if handled else str(status).replace("-", "_"),
    )


def _price(call: Mapping[str, Any], currency: str, sid: str) -> float | None:
    raw = call.get("price")
    if raw is None or raw == "":
        return None
    unit = call.get("price_unit")
    if unit and str(unit).upper() != currency:
        raise FieldError("currency", f"{sid}: price in {unit}, configured currency is {currency}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise FieldError("price", f"{sid}: price {raw!r} is not a number") from None
    return fields.price(abs(value))  # Twilio reports what you paid as a negative amount


def parse_calls_page(
    data: Any, settings: TwilioSettings, currency: str, now: float
) -> ParsedPage:
    """A Calls list page -> contacts, rejections, `next` next_page_uri, `hold` the oldest start
    of a call not final yet (read again next run), `top` the newest final start. Raises
    ShapeError."""
    body = require_object(data, "Calls page")
    calls = require_list(body, "calls", "Calls page")
    next_uri = body.get("next_page_uri")
    if next_uri is not None and not isinstance(next_uri, str):
        raise ShapeError("Calls page: next_page_uri is not a string")
    contacts: list[Contact] = []
    rejections: list[Rejection] = []
    pending: list[float] = []
    for index, call in enumerate(calls, start=1):
        if not isinstance(call, dict):
            rejections.append(Rejection("shape", index, "call is not an object",
                                        record_fingerprint(call)))
            continue
        if call.get("parent_call_sid") and not settings.include_child_calls:
            continue
        try:
            contact = parse_call(call, settings, currency, now)
        except ITEM_ERRORS as exc:
            rejections.append(item_rejection(exc, index, call))
            continue
        if contact is None:
            # a queued call has no start yet; the watermark is held by the others
            with contextlib.suppress(FieldError):
                pending.append(rfc2822(call.get("start_time"), "start_time"))
            continue
        contacts.append(contact)
    return ParsedPage(contacts, rejections, more=bool(next_uri), next=next_uri or None,
                      hold=min(pending, default=None),
                      top=max((contact.start for contact in contacts), default=None))


def parse_status_callback(
    params: Mapping[str, str], settings: TwilioSettings, latest: float | None = None
) -> Contact | None:
    """A status callback's form parameters -> Contact; None before the call is final.
    A call that starts after `latest` (now + max_future) is `future`.

    Status callbacks carry no price: a call first stored from a callback keeps price None.
    """
    sid = record_id(params, "CallSid")
    if params.get("AccountSid") not in (None, settings.account_sid):
        raise FieldError("account", f"{sid}: callback for another account")
    if params.get("ParentCallSid") and not settings.include_child_calls:
        return None
    status = params.get("CallStatus")
    if status in PENDING or status == "initiated":
        return None
    if status not in FINAL:
        raise FieldError("status", f"{sid}: unknown status {status!r}")
    direction = DIRECTIONS.get(str(params.get("Direction")))
    if direction is None:
        raise FieldError("direction", f"{sid}: unknown direction {params.get('Direction')!r}")
    duration = seconds(params.get("CallDuration"), "CallDuration", default=0.0)
    start = fields.not_future(rfc2822(params.get("Timestamp"), "Timestamp") - duration, latest)
    return _call_contact(settings, sid, str(status), direction, start, duration,
                         params.get("To"), params.get("From"))


# -- webhook signature (pure) -----------------------------------------------------------------
SIGNATURE_HEADER = "X-Twilio-Signature"
_DEFAULT_PORTS = {"https": 443, "http": 80}


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
    try:
        given = signature.encode("ascii")
    except UnicodeEncodeError:
        return False
    ok = False
    for candidate in _url_variants(url):
        expected = twilio_signature(auth_token, candidate, params).encode()
        ok |= hmac.compare_digest(expected, given)
    return ok


# -- I/O shell ---------------------------------------------------------------------------------
def _day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).date().isoformat()


class TwilioAdapter(ApiAdapter):
    """Pulls the Calls list newest first, following next_page_uri.

    Position: {"since": day, "next": next_page_uri or null, "hold": .., "top": ..}. Mid-run,
    `next` resumes at the page after the last committed one. After the last page, `since`
    moves to the day of the oldest call still pending (or the newest final call), so the
    next run overlaps the boundary; the store's (source, id) uniqueness drops the overlap.
    """

    settings_model = TwilioSettings
    settings: TwilioSettings
    webhook_kind = "twilio"

    def receive(self, request: WebhookRequest, now: float) -> Contact | None:
        """A status callback: form parameters signed with the auth token over the URL."""
        try:
            params = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
            url = self.settings.public_url or request.url
            token = self.settings.auth_token.get_secret_value()
            valid = twilio_signature_valid(token, url, params,
                                           request.headers.get(SIGNATURE_HEADER))
        except (UnicodeError, ValueError):  # an undecodable body or URL is not Twilio's
            valid = False
        if not valid:
            raise WebhookRefused(401, "unauthorized", "invalid signature")
        try:
            latest = now + self.settings.max_future.total_seconds()
            return parse_status_callback(dict(params), self.settings, latest)
        except ITEM_ERRORS as exc:
            raise as_field_error(exc) from None

    def credentials(self) -> Credentials:
        user = self.settings.api_key_sid or self.settings.account_sid
        return (user, self.settings.auth_token.get_secret_value()), None

    def pull(self, position: str | None) -> Iterator[Batch]:
        state = load_state(position)
        since = state.get("since") or (
            self.settings.start_date.isoformat() if self.settings.start_date else None
        )
        hold, top = state.get("hold"), state.get("top")
        first = f"{API_VERSION}/Accounts/{self.settings.account_sid}/Calls.json"
        params: dict[str, Any] | None = {"PageSize": self.settings.page_size}
        if since:
            params["StartTime>="] = since  # type: ignore[index]
        url: str = first
        if state.get("next"):
            url, params = str(state["next"]), None
        while True:
            try:
                page = self.client.get(url, params)
            except SourceError as exc:
                if url != first and exc.reason == "http_error" and params is None:
                    # a stored page link the vendor no longer knows: restart from `since`.
                    # The message holds the link's path (the vendor's text): %r escapes
                    # control characters, as the runtime's printable() does for its logs.
                    log.warning("source %s: %r; restarting from %s", self.name, str(exc), since)
                    url, params = first, {"PageSize": self.settings.page_size}
                    if since:
                        params["StartTime>="] = since
                    state = {}
                    continue
                raise
            try:
                parsed = parse_calls_page(
                    page.data, self.settings, self.context.currency, self.clock()
                )
            except ShapeError as exc:
                # keep the old position: the next run asks for this page again
                yield malformed_page(page, exc)
                return
            hold, top = lowest(hold, parsed.hold), highest(top, parsed.top)
            next_uri = parsed.next
            if next_uri:
                new_state = {"since": since, "next": next_uri, "hold": hold, "top": top}
            else:
                mark = held_or_top(hold, top, None)
                new_state = {"since": _day(mark) if mark is not None else since}
            yield Batch(
                parsed.contacts, parsed.rejections, json.dumps(new_state), page.location
            )
            if not next_uri:
                return
            url, params = next_uri, None

