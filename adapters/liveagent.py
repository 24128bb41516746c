"""LiveAgent API v3: calls and tickets (e-mail, chat, forms, social) as contacts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator

from adapters import fields
from adapters.base import (
    Batch,
    Contact,
    Duration,
    FieldError,
    LabelMap,
    Rejection,
    ShapeError,
    hash_customer,
)
from adapters.fields import (
    ITEM_ERRORS,
    item_rejection,
    label,
    load_state,
    outcome_of_tags,
    record_id,
    seconds,
)
from adapters.http import (
    ApiAdapter,
    Credentials,
    LookbackSettings,
    ParsedPage,
    endpoint_of,
    held_or_top,
    highest,
    lowest,
    shape_rejection,
)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DIRECTIONS = {"in": "inbound", "I": "inbound", "out": "outbound", "O": "outbound"}
INTERNAL = {"int", "T"}
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
    api_timezone: str = "UTC"  # the zone LiveAgent writes date_created in
    # first run: "YYYY-MM-DD HH:MM:SS" in api_timezone; else start_date, else lookback
    start: str | None = None
    per_page: int = Field(default=100, ge=1, le=1000)
    requests_per_minute: float = 180.0
    read_calls: bool = True
    read_tickets: bool = True
    skip_ticket_channels: list[str] = Field(default_factory=lambda: ["C", "W"])  # from calls
    channels: LabelMap = Field(default_factory=lambda: dict(CHANNEL_TYPES))
    pending_max_age: Duration = timedelta(days=2)  # then unanswered tickets count as such
    # queues maps departmentid (or, for calls without one, the via number) -> queue;
    # outcomes maps a tag id -> outcome

    @field_validator("api_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):  # KeyError would escape pydantic
            raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Oslo") from None
        return value


# -- pure parsers ------------------------------------------------------------------------------
def _when(value: Any, field: str, zone: ZoneInfo) -> float:
    if not isinstance(value, str) or not value:
        raise FieldError("date", f"{field} missing")
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=zone).timestamp()
    except ValueError:
        raise FieldError("date", f"{field} {value!r} is not {TIME_FORMAT}") from None


def parse_call(
    call: Mapping[str, Any], settings: LiveAgentSettings, now: float
) -> Contact | None:
    """A call list item -> Contact; None while it runs or when it is internal."""
    zone = ZoneInfo(settings.api_timezone)
    call_id = record_id(call, "id")
    kind = call.get("direction", call.get("type"))
    if kind in INTERNAL:
        return None
    direction = DIRECTIONS.get(str(kind))
    if direction is None:
        raise FieldError("direction", f"{call_id}: direction {kind!r}")
    created = _when(call.get("date_created"), "date_created", zone)
    fields.not_future(created, now + settings.max_future.total_seconds(), "date_created")
    if not call.get("date_finished"):
        if now - created < settings.pending_max_age.total_seconds():
            return None
        raise FieldError("status", f"{call_id}: never finished")
    finished = _when(call.get("date_finished"), "date_finished", zone)
    answered = call.get("date_answered")
    talk = max(0.0, finished - _when(answered, "date_answered", zone)) if answered else 0.0
    fields.duration(talk, "talk time")
    billable = seconds(call.get("call_duration"), "call_duration", max(0.0, finished - created))
    theirs = call.get("from_number") if direction == "inbound" else call.get("to_number")
    queue_key = call.get("departmentid") or call.get("department_id") or call.get("via_number")
    return Contact(
        id=f"call:{call_id}",
        channel="voice",
        direction=direction,
        queue=label(settings.queues, queue_key),
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


def parse_page(data: Any, parse: Parser, settings: LiveAgentSettings, now: float) -> ParsedPage:
    """A list page -> contacts, rejections, `hold` the oldest date_created still pending and
    `top` the newest date_created. Whether more pages follow is the page's length."""
    if not isinstance(data, list):
        raise ShapeError("expected a JSON list")
    contacts: list[Contact] = []
    rejections: list[Rejection] = []
    hold: str | None = None
    top: str | None = None
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            rejections.append(Rejection("shape", index, "item is not an object"))
            continue
        created = item.get("date_created")
        try:
            contact = parse(item, settings, now)
        except ITEM_ERRORS as exc:
            rejections.append(item_rejection(exc, index))
            continue
        if isinstance(created, str):
            top = created if top is None or created > top else top
            if contact is None and _is_pending(item, settings):
                hold = created if hold is None or created < hold else hold
        if contact is not None:
            contacts.append(contact)
    return ParsedPage(contacts, rejections, hold=hold, top=top)


def _is_pending(item: Mapping[str, Any], settings: LiveAgentSettings) -> bool:
    """Was this item left out only because it is not finished yet (so it holds the mark)?"""
    if "channel_type" in item:
        skipped = settings.read_calls and item.get("channel_type") in settings.skip_ticket_channels
        return item.get("status") in TICKET_PENDING and not skipped
    return not item.get("date_finished") and item.get("direction", item.get("type")) not in INTERNAL


# -- I/O shell ---------------------------------------------------------------------------------
class LiveAgentAdapter(ApiAdapter):
    """Reads /calls then /tickets, each sorted by date_created and filtered with _filters.

    Position: {"calls": {...}, "tickets": {...}}, each {"since", "page", "hold", "top"}. A
    stream's `since` moves to the oldest item still pending, else the newest seen; the next
    run overlaps at that boundary and the store's (source, id) uniqueness drops the overlap.
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
        streams: list[tuple[str, Parser]] = []
        if self.settings.read_calls:
            streams.append(("calls", parse_call))
        if self.settings.read_tickets:
            streams.append(("tickets", parse_ticket))
        for stream, parse in streams:
            for batch, sub in self._stream(stream, parse, state.get(stream) or {}):
                state[stream] = sub
                if batch.position is None:  # a malformed page: keep the old position
                    yield batch
                    return
                yield batch._replace(position=json.dumps(state))

    def _stream(
        self, path: str, parse: Parser, sub: Mapping[str, Any]
    ) -> Iterator[tuple[Batch, dict[str, Any]]]:
        since = str(sub.get("since") or self._first_since())
        page_no = int(sub.get("page") or 1)
        hold, top = sub.get("hold"), sub.get("top")
        now = self.clock()
        per_page = self.settings.per_page
        while True:
            params = {"_page": page_no, "_perPage": per_page, "_sortField": "date_created",
                      "_sortDir": "ASC",
                      "_filters": json.dumps([["date_created", "D>=", since]])}
            page = self.client.get(path, params)
            try:
                parsed = parse_page(page.data, parse, self.settings, now)
            except ShapeError as exc:
                yield (Batch([], [shape_rejection(page, str(exc))], None, endpoint_of(page.url)),
                       dict(sub))
                return
            hold, top = lowest(hold, parsed.hold), highest(top, parsed.top)
            more = isinstance(page.data, list) and len(page.data) >= per_page
            if more:
                new = {"since": since, "page": page_no + 1, "hold": hold, "top": top}
            else:
                new = {"since": held_or_top(hold, top, since)}
            yield Batch(parsed.contacts, parsed.rejections, "", endpoint_of(page.url)), new
            if not more:
                return
            page_no += 1

