"""Freshdesk tickets (GET /api/v2/tickets, updated_since): each resolved ticket is one contact."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, SecretStr

from adapters.base import Batch, Contact, LabelMap, Rejection, ShapeError, hash_customer
from adapters.fields import (
    ITEM_ERRORS,
    iso8601,
    item_rejection,
    label,
    load_state,
    not_future,
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
    highest,
    malformed_page,
)

TICKETS = "api/v2/tickets"
MAX_PAGE = 300  # Freshdesk will not list past this page; restart from the watermark instead
# Freshdesk `source` codes: 1 Email, 2 Portal, 3 Phone, 7 Chat, 9 Feedback widget,
# 10 Outbound email; older accounts also have 4 Forum, 5 Twitter, 6 Facebook, 8 Mobihelp.
SOURCES = {"1": "email", "2": "portal", "3": "voice", "4": "portal", "5": "social",
           "6": "social", "7": "chat", "8": "other", "9": "portal", "10": "email"}
OUTBOUND_SOURCES = {10}


class FreshdeskSettings(LookbackSettings):
    # base_url default: https://<domain>.freshdesk.com/
    site_field = "domain"
    base_url_template = "https://{}.freshdesk.com/"
    domain: str | None = None  # "acme" for acme.freshdesk.com
    api_key: SecretStr
    per_page: int = Field(default=100, ge=1, le=100)
    requests_per_minute: float = 40.0  # below the smallest plan's ticket-list limit
    count_statuses: list[int] = Field(default_factory=lambda: [4, 5])  # resolved, closed
    channels: LabelMap = Field(default_factory=lambda: dict(SOURCES))  # source code -> channel
    # queues maps group_id -> queue; outcomes maps a tag -> outcome
    handle_time_field: str | None = None  # e.g. "cf_handle_time" in custom_fields
    handle_time_unit: Literal["seconds", "minutes"] = "seconds"


# -- pure parser -------------------------------------------------------------------------------
def parse_ticket(
    ticket: Mapping[str, Any], settings: FreshdeskSettings, latest: float | None = None
) -> Contact | None:
    """One ticket -> Contact once resolved or closed; else None (listed again on change).
    A ticket created after `latest` (now + max_future) is `future`."""
    ticket_id = record_id(ticket, "id")
    if ticket.get("status") not in settings.count_statuses:
        return None
    start = not_future(iso8601(ticket.get("created_at"), "created_at"), latest)
    source = ticket.get("source")
    handle = 0.0
    if settings.handle_time_field:
        fields = ticket.get("custom_fields")
        if isinstance(fields, dict):
            value = seconds(fields.get(settings.handle_time_field), settings.handle_time_field,
                            0.0)
            handle = value * 60 if settings.handle_time_unit == "minutes" else value
    outcome = outcome_of_tags(ticket.get("tags"), settings.outcomes)
    requester = ticket.get("requester_id")
    return Contact(
        id=ticket_id,
        channel=label(settings.channels, source),
        direction="outbound" if source in OUTBOUND_SOURCES else "inbound",
        queue=label(settings.queues, ticket.get("group_id")),
        start=start,
        handled=True,
        handle_seconds=handle,
        talk_seconds=handle,
        billable_seconds=0.0,
        outcome=outcome,
        customer=hash_customer(str(requester) if requester else None),
        price=None,
        reason="",
    )


def parse_tickets_page(
    data: Any, settings: FreshdeskSettings, latest: float | None = None
) -> ParsedPage:
    """A tickets page (a JSON list) -> contacts, rejections and (`top`) the newest updated_at.

    Whether more pages follow is in the response's Link header, not in the body."""
    if not isinstance(data, list):
        raise ShapeError("tickets page: expected a JSON list")
    contacts: list[Contact] = []
    rejections: list[Rejection] = []
    newest: str | None = None
    for index, ticket in enumerate(data, start=1):
        if not isinstance(ticket, dict):
            rejections.append(Rejection("shape", index, "ticket is not an object",
                                        record_fingerprint(ticket)))
            continue
        updated = ticket.get("updated_at")
        if isinstance(updated, str) and (newest is None or updated > newest):
            newest = updated
        try:
            contact = parse_ticket(ticket, settings, latest)
        except ITEM_ERRORS as exc:
            rejections.append(item_rejection(exc, index, ticket))
            continue
        if contact is not None:
            contacts.append(contact)
    return ParsedPage(contacts, rejections, top=newest)


# -- I/O shell ---------------------------------------------------------------------------------
class FreshdeskAdapter(ApiAdapter):
    """Lists tickets updated since the watermark, oldest update first, page by page.

    Position: {"since": ISO time, "page": n}. Mid-run the page resumes; after the last page
    `since` moves to the newest updated_at seen, so the next run overlaps at the boundary.
    """

    settings_model = FreshdeskSettings
    settings: FreshdeskSettings

    def credentials(self) -> Credentials:
        return (self.settings.api_key.get_secret_value(), "X"), None

    def _first_since(self) -> str:
        moment = datetime.fromtimestamp(self.settings.first_moment(self.clock()), UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def pull(self, position: str | None) -> Iterator[Batch]:
        state = load_state(position)
        since = str(state.get("since") or self._first_since())
        page_no = int(state.get("page") or 1)
        newest = state.get("newest")
        while True:
            params = {"updated_since": since, "order_by": "updated_at", "order_type": "asc",
                      "per_page": self.settings.per_page, "page": page_no}
            page = self.client.get(TICKETS, params)
            try:
                latest = self.clock() + self.settings.max_future.total_seconds()
                parsed = parse_tickets_page(page.data, self.settings, latest)
            except ShapeError as exc:
                yield malformed_page(page, exc)
                return
            newest = highest(newest, parsed.top)
            more = "next" in page.response.links
            if more and page_no < MAX_PAGE:
                state = {"since": since, "page": page_no + 1, "newest": newest}
            else:
                state = {"since": newest or since}
            yield Batch(parsed.contacts, parsed.rejections, json.dumps(state),
                        page.location)
            if not more:
                return
            if page_no >= MAX_PAGE:
                if not newest or newest == since:
                    return  # a whole listing of one updated_at; nothing more to gain now
                since, page_no = str(newest), 1  # past the listing cap: re-query from here
                continue
            page_no += 1

