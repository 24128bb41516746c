"""Zendesk Support incremental ticket export (cursor based): each solved ticket is one contact."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from adapters.base import Batch, Contact, Duration, LabelMap, Rejection, ShapeError, hash_customer
from adapters.fields import (
    ITEM_ERRORS,
    iso8601,
    item_rejection,
    label,
    load_state,
    record_id,
    require_list,
    require_object,
    seconds,
)
from adapters.http import ApiAdapter, ApiSourceSettings, Credentials, endpoint_of, shape_rejection

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


class ZendeskSettings(ApiSourceSettings):
    base_url: str = ""  # default https://<subdomain>.zendesk.com/
    subdomain: str | None = None
    email: str  # the agent the API token belongs to
    api_token: SecretStr
    start_date: date | None = None  # first run: tickets changed since this day (UTC)
    lookback: Duration = timedelta(days=30)
    per_page: int = Field(default=1000, ge=1, le=1000)
    requests_per_minute: float = 10.0  # the incremental export endpoints' documented limit
    count_statuses: list[str] = Field(default_factory=lambda: ["solved", "closed"])
    channels: LabelMap = Field(default_factory=lambda: dict(VIA_CHANNELS))  # via.channel
    # queues maps group_id -> queue; outcomes maps a ticket tag -> outcome
    handle_time: Literal["none", "custom_field", "agent_work_time"] = "none"
    handle_time_field: int | None = None  # custom field id holding the handle time
    handle_time_unit: Literal["seconds", "minutes"] = "seconds"

    @model_validator(mode="after")
    def _urls_and_fields(self) -> ZendeskSettings:
        if not self.base_url:
            if not self.subdomain:
                raise ValueError("set subdomain (or base_url)")
            self.base_url = f"https://{self.subdomain}.zendesk.com/"
        if self.handle_time == "custom_field" and self.handle_time_field is None:
            raise ValueError("handle_time = 'custom_field' needs handle_time_field (its id)")
        return self


# -- pure parser -------------------------------------------------------------------------------
def parse_ticket(
    ticket: Mapping[str, Any], settings: ZendeskSettings, metric: Mapping[str, Any] | None
) -> Contact | None:
    """One exported ticket -> Contact once it is solved or closed; else None (it is exported
    again when it changes). Raises FieldError."""
    ticket_id = record_id(ticket, "id")
    if ticket.get("status") not in settings.count_statuses:
        return None
    start = iso8601(ticket.get("created_at"), "created_at")
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
        outcome=_outcome(ticket.get("tags"), settings.outcomes),
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


def _outcome(tags: Any, outcomes: Mapping[str, str]) -> str:
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, str) and tag in outcomes:
                return outcomes[tag]
    return ""


def parse_export_page(
    data: Any, settings: ZendeskSettings
) -> tuple[list[Contact], list[Rejection], str | None, bool]:
    """A cursor export page -> contacts, rejections, after_cursor, end_of_stream."""
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
            rejections.append(Rejection("shape", index, "ticket is not an object"))
            continue
        try:
            contact = parse_ticket(ticket, settings, metrics.get(ticket.get("id")))
        except ITEM_ERRORS as exc:
            rejections.append(item_rejection(exc, index))
            continue
        if contact is not None:
            contacts.append(contact)
    return contacts, rejections, cursor, end


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
        elif self.settings.start_date:
            start = datetime.combine(self.settings.start_date, datetime.min.time(), UTC)
            params["start_time"] = int(start.timestamp())
        else:
            params["start_time"] = int(self.clock() - self.settings.lookback.total_seconds())
        while True:
            page = self.client.get(EXPORT, params)
            try:
                contacts, rejections, after, end = parse_export_page(page.data, self.settings)
            except ShapeError as exc:
                yield Batch([], [shape_rejection(page, str(exc))], None, endpoint_of(page.url))
                return
            state = json.dumps({"cursor": after}) if after else None
            yield Batch(contacts, rejections, state, endpoint_of(page.url))
            if end or not after:
                return
            params = {k: v for k, v in params.items() if k != "start_time"} | {"cursor": after}

