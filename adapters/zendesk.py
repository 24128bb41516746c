"""Zendesk Support incremental ticket export (cursor based): each solved ticket is one contact."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from adapters import fields
from adapters.base import Batch, Contact, LabelMap, Rejection, ShapeError, hash_customer
from adapters.fields import (
    ITEM_ERRORS,
    iso8601,
    item_rejection,
    label,
    load_state,
    outcome_of_tags,
    record_fingerprint,
    record_id,
    require_list,
    require_object,
    seconds,
)
from adapters.http import (
    ApiAdapter,
    Credentials,
    LookbackSettings,
    ParsedPage,
    malformed_page,
)

EXPORT = "api/v2/incremental/tickets/cursor.json"
VIA_CHANNELS = {
    "email": "email",
    "web": "portal",
    "web_form": "portal",
    "help_center": "portal",
    "mobile": "portal",
    "voice": "voice",
    "chat": "chat",
    "native_messaging": "chat",
    "messaging": "chat",
    "sms": "sms",
    "facebook": "social",
    "twitter": "social",
    "instagram_dm": "social",
    "whatsapp": "social",
}


class ZendeskSettings(LookbackSettings):
    # base_url default: https://<subdomain>.zendesk.com/; the first run reads tickets
    # changed since start_date (UTC), else since `lookback` ago
    site_field = "subdomain"
    base_url_template = "https://{}.zendesk.com/"
    subdomain: str | None = None
    email: str  # the agent the API token belongs to
    api_token: SecretStr
    per_page: int = Field(default=1000, ge=1, le=1000)
    requests_per_minute: float = 10.0  # the incremental export endpoints' documented limit
    count_statuses: list[str] = Field(default_factory=lambda: ["solved", "closed"])
    channels: LabelMap = Field(default_factory=lambda: dict(VIA_CHANNELS))  # via.channel
    # queues maps group_id -> queue; outcomes maps a ticket tag -> outcome
    handle_time: Literal["none", "custom_field", "agent_work_time"] = "none"
    handle_time_field: int | None = None  # custom field id holding the handle time
    handle_time_unit: Literal["seconds", "minutes"] = "seconds"

    @model_validator(mode="after")
    def _handle_time_field(self) -> ZendeskSettings:
        if self.handle_time == "custom_field" and self.handle_time_field is None:
            raise ValueError("handle_time = 'custom_field' needs handle_time_field (its id)")
        return self


# -- pure parser -------------------------------------------------------------------------------
def parse_ticket(
    ticket: Mapping[str, Any],
    settings: ZendeskSettings,
    metric: Mapping[str, Any] | None,
    latest: float | None = None,
) -> Contact | None:
    """One exported ticket -> Contact once it is solved or closed; else None (it is exported
    again when it changes). Raises FieldError; `future` when created after `latest`."""
    ticket_id = record_id(ticket, "id")
    if ticket.get("status") not in settings.count_statuses:
        return None
    start = fields.not_future(iso8601(ticket.get("created_at"), "created_at"), latest)
    raw_via = ticket.get("via")
    via: dict[str, Any] = raw_via if isinstance(raw_via, dict) else {}
    handle = 0.0
    if settings.handle_time == "custom_field":
        handle = _custom_field(ticket, settings)
    elif settings.handle_time == "agent_work_time" and metric:
        work = metric.get("agent_work_time_in_minutes")
        if isinstance(work, dict):
            handle = seconds(work.get("calendar"), "agent_work_time_in_minutes", 0.0) * 60
    return Contact(
        id=ticket_id,
        channel=label(settings.channels, via.get("channel")),
        direction="inbound",
        queue=label(settings.queues, ticket.get("group_id")),
        start=start,
        handled=True,
        handle_seconds=handle,
        talk_seconds=handle,
        billable_seconds=0.0,
        outcome=outcome_of_tags(ticket.get("tags"), settings.outcomes),
        customer=hash_customer(str(ticket["requester_id"]) if ticket.get("requester_id") else None),
        price=None,
        reason="",
    )


def _custom_field(ticket: Mapping[str, Any], settings: ZendeskSettings) -> float:
    fields = ticket.get("custom_fields")
    if not isinstance(fields, list):
        return 0.0
    for field in fields:
        if isinstance(field, dict) and field.get("id") == settings.handle_time_field:
            value = seconds(field.get("value"), f"custom field {settings.handle_time_field}", 0.0)
            return value * 60 if settings.handle_time_unit == "minutes" else value
    return 0.0


def parse_export_page(
    data: Any, settings: ZendeskSettings, latest: float | None = None
) -> ParsedPage:
    """A cursor export page -> contacts, rejections, `next` after_cursor, `more` unless
    end_of_stream."""
    body = require_object(data, "ticket export page")
    tickets = require_list(body, "tickets", "ticket export page")
    end = body.get("end_of_stream")
    cursor = body.get("after_cursor")
    if not isinstance(end, bool) or (cursor is not None and not isinstance(cursor, str)):
        raise ShapeError("ticket export page: end_of_stream or after_cursor missing")
    metrics: dict[Any, Mapping[str, Any]] = {}
    for metric in body.get("metric_sets") or []:
        if isinstance(metric, dict) and isinstance(metric.get("ticket_id"), (int, str)):
            metrics[metric["ticket_id"]] = metric
    contacts: list[Contact] = []
    rejections: list[Rejection] = []
    for index, ticket in enumerate(tickets, start=1):
        if not isinstance(ticket, dict):
            rejections.append(Rejection("shape", index, "ticket is not an object",
                                        record_fingerprint(ticket)))
            continue
        try:
            contact = parse_ticket(ticket, settings, metrics.get(ticket.get("id")), latest)
        except ITEM_ERRORS as exc:
            rejections.append(item_rejection(exc, index, ticket))
            continue
        if contact is not None:
            contacts.append(contact)
    return ParsedPage(contacts, rejections, more=not end, next=cursor)


# -- I/O shell ---------------------------------------------------------------------------------
class ZendeskAdapter(ApiAdapter):
    """Follows after_cursor until end_of_stream; the position is the last after_cursor."""

    settings_model = ZendeskSettings
    settings: ZendeskSettings

    def credentials(self) -> Credentials:
        token = self.settings.api_token.get_secret_value()
        return (f"{self.settings.email}/token", token), None

    def pull(self, position: str | None) -> Iterator[Batch]:
        cursor = load_state(position).get("cursor")
        params: dict[str, Any] = {"per_page": self.settings.per_page}
        if self.settings.handle_time == "agent_work_time":
            params["include"] = "metric_sets"
        if cursor:
            params["cursor"] = cursor
        else:
            params["start_time"] = int(self.settings.first_moment(self.clock()))
        while True:
            page = self.client.get(EXPORT, params)
            try:
                latest = self.clock() + self.settings.max_future.total_seconds()
                parsed = parse_export_page(page.data, self.settings, latest)
            except ShapeError as exc:
                yield malformed_page(page, exc)
                return
            after = parsed.next
            state = json.dumps({"cursor": after}) if after else None
            yield Batch(parsed.contacts, parsed.rejections, state, page.location)
            if not parsed.more or not after:
                return
            params = {k: v for k, v in params.items() if k != "start_time"} | {"cursor": after}

