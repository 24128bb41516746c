"""An API page item that is not even a JSON object is counted once across polls too.

Issue 9 item 4: an API source re-reads its overlap window on every poll, so a bad record
must carry its fingerprint or it is counted again each time and ContactCostRejectedRecords
never settles. Bad objects had one (fields.item_rejection); a list item that is a string,
a number or null had none, so each poll counted it again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from adapters import aircall, freshdesk, liveagent, twilio, zendesk
from adapters.base import Rejection
from collector.health import HealthState

NOW = 1_790_000_000.0
SID = "AC" + "0" * 32
AIRCALL_META = {"count": 1, "total": 1, "current_page": 1, "per_page": 2,
                "next_page_link": None, "previous_page_link": None}


def twilio_page(item: Any) -> list[Rejection]:
    s = twilio.TwilioSettings(name="t", adapter="twilio", account_sid=SID, auth_token="x")
    return twilio.parse_calls_page({"calls": [item], "next_page_uri": None}, s, "USD",
                                   NOW).rejections


def aircall_page(item: Any) -> list[Rejection]:
    s = aircall.AircallSettings(name="a", adapter="aircall", api_id="id", api_token="t")
    return aircall.parse_calls_page({"meta": AIRCALL_META, "calls": [item]}, s, NOW).rejections


def zendesk_page(item: Any) -> list[Rejection]:
    s = zendesk.ZendeskSettings(name="z", adapter="zendesk", subdomain="acme", email="a@b.c",
                                api_token="t", handle_time_field=1)
    body = {"tickets": [item], "end_of_stream": True, "after_cursor": None}
    return zendesk.parse_export_page(body, s).rejections


def freshdesk_page(item: Any) -> list[Rejection]:
    s = freshdesk.FreshdeskSettings(name="f", adapter="freshdesk", base_url="http://127.0.0.1/",
                                    api_key="k", start_date=date(2026, 3, 9))
    return freshdesk.parse_tickets_page([item], s).rejections


def liveagent_page(item: Any) -> list[Rejection]:
    s = liveagent.LiveAgentSettings(name="la", adapter="liveagent", subdomain="a", api_key="k")
    return liveagent.parse_page([item], liveagent.parse_call, s, NOW, "dateCreated").rejections


@pytest.mark.parametrize(
    "page", [twilio_page, aircall_page, zendesk_page, freshdesk_page, liveagent_page],
    ids=["twilio", "aircall", "zendesk", "freshdesk", "liveagent"],
)
def test_a_non_object_item_reread_is_counted_once(
        page: Callable[[Any], list[Rejection]]) -> None:
    health = HealthState()
    health.configure({"api": 60.0})
    for _ in range(3):  # the same page on three polls
        (rejection,) = page("oops")
        assert rejection.reason == "shape" and rejection.record != ""
        health.record_batch("api", 0, [rejection])
    assert health.sources()["api"].rejected == {"shape": 1}
    # Another bad item (null) is another record: counted once more.
    health.record_batch("api", 0, page(None))
    health.record_batch("api", 0, page(None))
    assert health.sources()["api"].rejected == {"shape": 2}
