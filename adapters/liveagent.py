"""LiveAgent API v3: calls and tickets (e-mail, chat, forms, social) as contacts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr

from adapters import fields
from adapters.base import (
    Batch,
    Contact,
    Duration,
    FieldError,
    LabelMap,
    Rejection,
    ShapeError,
    TimeZoneName,
    hash_customer,
)
from adapters.fields import (
    ITEM_ERRORS,
    item_rejection,
    label,
    load_state,
    outcome_of_tags,
    record_fingerprint,
    record_id,
    seconds,
)
from adapters.http import (
    ApiAdapter,
    Credentials,
    LookbackSettings,
    ParsedPage,
    held_or_top,
    highest,
    lowest,
    malformed_page,
)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# GET /calls returns CallListItem objects with camelCase fields (id, ticketId, type,
# fromNumber, fromName, toNumber, toName, viaNumber, dateCreated, dateAnswered,
# dateFinished, callDuration), `type` I incoming, O outgoing, T internal, and pages with
# `_cursor`: the next page's cursor comes in the `next_page_cursor` response header.
# (Vendor's OpenAPI client QualityUnit/LiveAgent-api-python: models/call_list_item.py,
# docs/CallsApi.md get_calls_list; support.liveagent.com/865654 "How to work with _cursor".)
CALL_TYPES = {"I": "inbound", "O": "outbound"}
CALL_INTERNAL = "T"
NEXT_CURSOR_HEADER = "next_page_cursor"
# ticket channel_type: E email, B contact button, M contact form, I invitation, C call,
# W call button, F facebook, A facebook message, T twitter, Q forum, S suggestion
CHANNEL_TYPES = {"E": "email", "B": "chat", "I": "chat", "M": "portal", "C": "voice",
                 "W": "voice", "F": "social", "A": "social", "T": "social", "Q": "portal",
                 "S": "other"}
TICKET_SKIP = {"X", "B"}  # deleted, spam
TICKET_PENDING = {"I", "N"}  # init, new: nobody has answered yet


class LiveAgentSettings(LookbackSettings):
    # base_url default: https://<subdomain>.ladesk.com/api/v3/
    site_field = "subdomain"
    base_url_template = "https://{}.ladesk.com/api/v3/"
    subdomain: str | None = None
    api_key: SecretStr  # sent in the `apikey` header
    api_timezone: TimeZoneName = "UTC"  # the zone LiveAgent writes its dates in
    # first run: "YYYY-MM-DD HH:MM:SS" in api_timezone; else start_date, else lookback
    start: str | None = None
    per_page: int = Field(default=100, ge=1, le=1000)
    requests_per_minute: float = 180.0
    read_calls: bool = True
    read_tickets: bool = True
    skip_ticket_channels: list[str] = Field(default_factory=lambda: ["C", "W"])  # from calls
    channels: LabelMap = Field(default_factory=lambda: dict(CHANNEL_TYPES))
    pending_max_age: Duration = timedelta(days=2)  # then unanswered tickets count as such
    # queues maps a ticket's departmentid, and a call's viaNumber (the center's number the
    # call came in or went out through), -> queue; outcomes maps a ticket's tag id -> outcome


# -- pure parsers ------------------------------------------------------------------------------
def _when(value: Any, field: str, zone: ZoneInfo) -> float:
    """A LiveAgent time: "YYYY-MM-DD HH:MM:SS" in the API's zone, or ISO 8601."""
    if not isinstance(value, str) or not value:
        raise FieldError("date", f"{field} missing")
    try:
        moment = datetime.strptime(value, TIME_FORMAT)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise FieldError("date", f"{field} {value[:40]!r} is not {TIME_FORMAT}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()


def _stamp(value: Any, zone: ZoneInfo) -> str | None:
    """A time as the API's filters take it ("YYYY-MM-DD HH:MM:SS" in its zone), or None."""
    try:
        epoch = _when(value, "date", zone)
    except (FieldError, OverflowError, OSError):
        return None
    return datetime.fromtimestamp(epoch, zone).strftime(TIME_FORMAT)


def parse_call(
    call: Mapping[str, Any], settings: LiveAgentSettings, now: float
) -> Contact | None:
    """A CallListItem -> Contact; None while it runs or when it is internal (type T)."""
    zone = ZoneInfo(settings.api_timezone)
    call_id = record_id(call, "id")
    kind = call.get("type")
    if kind == CALL_INTERNAL:
        return None
    direction = CALL_TYPES.get(kind) if isinstance(kind, str) else None
    if direction is None:
        raise FieldError("direction", f"{call_id}: type {kind!r} is not I, O or T")
    created = _when(call.get("dateCreated"), "dateCreated", zone)
    fields.not_future(created, now + settings.max_future.total_seconds(), "dateCreated")
    if not call.get("dateFinished"):
        if now - created < settings.pending_max_age.total_seconds():
            return None
        raise FieldError("status", f"{call_id}: never finished")
    finished = _when(call.get("dateFinished"), "dateFinished", zone)
    if finished < created:
        raise FieldError("duration", f"{call_id}: dateFinished before dateCreated")
    answered = call.get("dateAnswered")
    talk = max(0.0, finished - _when(answered, "dateAnswered", zone)) if answered else 0.0
    fields.duration(talk, "talk time")
    # The carrier bills a connected call: callDuration (a string of seconds) when it was
    # answered, else nothing (a missed call's ring time is not billed talk).
    billable = (
        seconds(call.get("callDuration"), "callDuration", max(0.0, finished - created))
        if answered else 0.0
    )
    theirs = call.get("fromNumber") if direction == "inbound" else call.get("toNumber")
    return Contact(
        id=f"call:{call_id}",
        channel="voice",
        direction=direction,
        queue=label(settings.queues, call.get("viaNumber")),
        start=created,
        handled=bool(answered),
        handle_seconds=talk,
        talk_seconds=talk,
        billable_seconds=billable,
        customer=hash_customer(theirs if isinstance(theirs, str) else None),
        reason="" if answered else "missed",
    )


def parse_ticket(
    ticket: Mapping[str, Any], settings: LiveAgentSettings, now: float
) -> Contact | None:
    """A ticket -> Contact; None for spam, deleted, call tickets, or not yet answered."""
    zone = ZoneInfo(settings.api_timezone)
    ticket_id = record_id(ticket, "id")
    status = ticket.get("status")
    channel_type = ticket.get("channel_type")
    if status in TICKET_SKIP:
        return None
    if settings.read_calls and channel_type in settings.skip_ticket_channels:
        return None
    created = _when(ticket.get("date_created"), "date_created", zone)
    fields.not_future(created, now + settings.max_future.total_seconds(), "date_created")
    handled = status not in TICKET_PENDING
    if not handled and now - created < settings.pending_max_age.total_seconds():
        return None
    outcome = outcome_of_tags(ticket.get("tags"), settings.outcomes)
    owner = ticket.get("owner_email") or ticket.get("owner_contactid")
    return Contact(
        id=f"ticket:{ticket_id}",
        channel=label(settings.channels, channel_type),
        direction="inbound",
        queue=label(settings.queues, ticket.get("departmentid")),
        start=created,
        handled=handled,
        handle_seconds=0.0,
        talk_seconds=0.0,
        billable_seconds=0.0,
        outcome=outcome,
        customer=hash_customer(owner if isinstance(owner, str) else None),
        reason="" if handled else "unanswered",
    )


Parser = Callable[[Mapping[str, Any], LiveAgentSettings, float], Contact | None]


Pending = Callable[[Mapping[str, Any], LiveAgentSettings], bool]


def parse_page(
    data: Any, parse: Parser, settings: LiveAgentSettings, now: float,
    created_key: str = "date_created", pending: Pending | None = None,
) -> ParsedPage:
    """A list page (calls or tickets) -> contacts, rejections, `hold` the oldest creation time
    still pending and `top` the newest ("YYYY-MM-DD HH:MM:SS" in the API's zone, as its
    filters take them). Whether more pages follow is the page's length (and, for calls, the
    next cursor)."""
    if not isinstance(data, list):
        raise ShapeError("expected a JSON list")
    zone = ZoneInfo(settings.api_timezone)
    is_pending = pending or _ticket_pending
    contacts: list[Contact] = []
    rejections: list[Rejection] = []
    hold: str | None = None
    top: str | None = None
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            rejections.append(Rejection("shape", index, "item is not an object",
                                        record_fingerprint(item)))
            continue
        try:
            contact = parse(item, settings, now)
        except ITEM_ERRORS as exc:
            rejections.append(item_rejection(exc, index, item))
            continue
        created = _stamp(item.get(created_key), zone)
        if created is not None:
            top = highest(top, created)
            if contact is None and is_pending(item, settings):
                hold = lowest(hold, created)
        if contact is not None:
            contacts.append(contact)
    return ParsedPage(contacts, rejections, hold=hold, top=top)


def _ticket_pending(item: Mapping[str, Any], settings: LiveAgentSettings) -> bool:
    """Was this ticket left out only because nobody has answered it yet (so it holds)?"""
    skipped = settings.read_calls and item.get("channel_type") in settings.skip_ticket_channels
    return item.get("status") in TICKET_PENDING and not skipped


def _call_pending(item: Mapping[str, Any], settings: LiveAgentSettings) -> bool:
    """Was this call left out only because it is still running (so it holds the mark)?"""
    return not item.get("dateFinished") and item.get("type") != CALL_INTERNAL


# -- I/O shell ---------------------------------------------------------------------------------
class LiveAgentAdapter(ApiAdapter):
    """Reads /calls then /tickets, each oldest first from a creation-time watermark.

    /calls pages with the `_cursor` the previous page's `next_page_cursor` header gave;
    /tickets with `_page`. Position: {"calls": {...}, "tickets": {...}}: within a read
    {"since", "cursor" or "page", "hold", "top"}, after it {"since"}. A stream's `since`
    moves to the oldest item still pending, else the newest seen; the next run overlaps at
    that boundary and the store's (source, id) uniqueness drops the overlap (a rejected
    record in it carries its fingerprint, so it is counted once).
    """

    settings_model = LiveAgentSettings
    settings: LiveAgentSettings

    def credentials(self) -> Credentials:
        return None, {"apikey": self.settings.api_key.get_secret_value()}

    def _first_since(self) -> str:
        if self.settings.start:
            return self.settings.start
        moment = self.settings.first_moment(self.clock())
        return datetime.fromtimestamp(moment, ZoneInfo(self.settings.api_timezone)).strftime(
            TIME_FORMAT)

    def pull(self, position: str | None) -> Iterator[Batch]:
        state = load_state(position)
        streams: list[tuple[str, Callable[[Mapping[str, Any]], Iterator[Step]]]] = []
        if self.settings.read_calls:
            streams.append(("calls", self._calls))
        if self.settings.read_tickets:
            streams.append(("tickets", self._tickets))
        for stream, read in streams:
            for batch, sub in read(state.get(stream) or {}):
                state[stream] = sub
                if batch.position is None:  # a malformed page: keep the old position
                    yield batch
                    return
                yield batch._replace(position=json.dumps(state))

    def _calls(self, sub: Mapping[str, Any]) -> Iterator[Step]:
        """GET /calls, sorted by dateCreated, following `next_page_cursor`."""
        since = str(sub.get("since") or self._first_since())
        cursor = sub.get("cursor") if isinstance(sub.get("cursor"), str) else None
        hold, top = sub.get("hold"), sub.get("top")
        now = self.clock()
        per_page = self.settings.per_page
        while True:
            params: dict[str, Any] = {
                "_perPage": per_page, "_sortField": "dateCreated", "_sortDir": "ASC",
                "_filters": json.dumps([["dateCreated", "D>=", since]]),
            }
            if cursor:
                params["_cursor"] = cursor
            page = self.client.get("calls", params)
            try:
                parsed = parse_page(page.data, parse_call, self.settings, now,
                                    "dateCreated", _call_pending)
            except ShapeError as exc:
                yield malformed_page(page, exc), dict(sub)
                return
            hold, top = lowest(hold, parsed.hold), highest(top, parsed.top)
            following = page.response.headers.get(NEXT_CURSOR_HEADER) or None
            more = (
                following is not None and following != cursor
                and isinstance(page.data, list) and len(page.data) >= per_page
            )
            if more:
                new = {"since": since, "cursor": following, "hold": hold, "top": top}
            else:
                new = {"since": held_or_top(hold, top, since)}
            yield Batch(parsed.contacts, parsed.rejections, "", page.location), new
            if not more:
                return
            cursor = following

    def _tickets(self, sub: Mapping[str, Any]) -> Iterator[Step]:
        """GET /tickets, sorted by date_created, page by page."""
        since = str(sub.get("since") or self._first_since())
        page_no = int(sub.get("page") or 1)
        hold, top = sub.get("hold"), sub.get("top")
        now = self.clock()
        per_page = self.settings.per_page
        while True:
            params = {"_page": page_no, "_perPage": per_page, "_sortField": "date_created",
                      "_sortDir": "ASC",
                      "_filters": json.dumps([["date_created", "D>=", since]])}
            page = self.client.get("tickets", params)
            try:
                parsed = parse_page(page.data, parse_ticket, self.settings, now)
            except ShapeError as exc:
                yield malformed_page(page, exc), dict(sub)
                return
            hold, top = lowest(hold, parsed.hold), highest(top, parsed.top)
            more = isinstance(page.data, list) and len(page.data) >= per_page
            if more:
                new = {"since": since, "page": page_no + 1, "hold": hold, "top": top}
            else:
                new = {"since": held_or_top(hold, top, since)}
            yield Batch(parsed.contacts, parsed.rejections, "", page.location), new
            if not more:
                return
            page_no += 1


Step = tuple[Batch, dict[str, Any]]
