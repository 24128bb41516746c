"""The API-adapter base the vendors share: base_url from a site, first-run start, watermarks,
tags -> outcome, and one ParsedPage shape for every vendor's page parser."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters import aircall, freshdesk, liveagent, twilio, zendesk
from adapters.fields import outcome_of_tags
from adapters.freshdesk import FreshdeskSettings
from adapters.http import ParsedPage, held_or_top, highest, lowest
from adapters.liveagent import LiveAgentSettings
from adapters.zendesk import ZendeskSettings
from collector.config import ConfigError
from collector.runtime import load_config

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("model", "site", "extra", "url"), [
    (ZendeskSettings, "subdomain", {"email": "a@b.c", "api_token": "t"},
     "https://acme.zendesk.com/"),
    (FreshdeskSettings, "domain", {"api_key": "k"}, "https://acme.freshdesk.com/"),
    (LiveAgentSettings, "subdomain", {"api_key": "k"}, "https://acme.ladesk.com/api/v3/"),
])
def test_base_url_comes_from_the_site_unless_given(
    model: type[ZendeskSettings | FreshdeskSettings | LiveAgentSettings], site: str,
    extra: dict[str, str], url: str,
) -> None:
    base = {"name": "s", "adapter": "x", **extra}
    assert model.model_validate({**base, site: "acme"}).base_url == url
    given = model.model_validate({**base, site: "acme", "base_url": "http://127.0.0.1:1/"})
    assert given.base_url == "http://127.0.0.1:1/"
    with pytest.raises(ValidationError, match=rf"set {site} \(or base_url\)"):
        model.model_validate(base)


def test_first_run_starts_at_start_date_midnight_utc_else_lookback_before_now() -> None:
    base = {"name": "s", "adapter": "zendesk", "subdomain": "a", "email": "e", "api_token": "t"}
    dated = ZendeskSettings.model_validate({**base, "start_date": "2026-03-01"})
    assert dated.first_moment(NOW) == datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    assert dated.start_date == date(2026, 3, 1)
    looked = ZendeskSettings.model_validate({**base, "lookback": "2d"})
    assert looked.first_moment(NOW) == NOW - 2 * 86400  # 172,800 s before now


def test_watermark_helpers_skip_missing_values() -> None:
    assert lowest(None, 5.0, 3.0) == 3.0 and lowest(None, None) is None
    assert highest("2026-03-01 10:00:00", None, "2026-03-02 09:00:00") == "2026-03-02 09:00:00"
    assert held_or_top(1.0, 9.0, 0.0) == 1.0  # a pending item holds the mark
    assert held_or_top(None, 9.0, 0.0) == 9.0
    assert held_or_top(None, None, 0.0) == 0.0


def test_outcome_of_tags_reads_names_ids_and_strings_first_match_wins() -> None:
    outcomes = {"Sale": "sale", "42": "refund"}
    assert outcome_of_tags([{"name": "Other"}, {"name": "Sale"}], outcomes) == "sale"
    assert outcome_of_tags(["x", 42, "Sale"], outcomes) == "refund"  # a LiveAgent tag id
    assert outcome_of_tags([True, None, {"name": ["Sale"]}], outcomes) == ""
    assert outcome_of_tags("Sale", outcomes) == ""  # not a list


def test_every_vendor_page_parser_returns_one_shape() -> None:
    zd = ZendeskSettings(name="z", adapter="zendesk", subdomain="a", email="e", api_token="t")
    fd = FreshdeskSettings(name="f", adapter="freshdesk", domain="a", api_key="k")
    la = LiveAgentSettings(name="l", adapter="liveagent", subdomain="a", api_key="k")
    tw = twilio.TwilioSettings(name="t", adapter="twilio", account_sid="AC" + "0" * 32,
                               auth_token="t")
    ac = aircall.AircallSettings(name="a", adapter="aircall", api_id="i", api_token="t")
    pages = [
        zendesk.parse_export_page({"tickets": [], "end_of_stream": False, "after_cursor": "c"},
                                  zd),
        freshdesk.parse_tickets_page([], fd),
        liveagent.parse_page([], liveagent.parse_ticket, la, NOW),
        twilio.parse_calls_page({"calls": [], "next_page_uri": "/p2"}, tw, "USD", NOW),
        aircall.parse_calls_page({"calls": [], "meta": {"total": 0}}, ac, NOW),
    ]
    assert all(type(page) is ParsedPage for page in pages)
    assert (pages[0].more, pages[0].next) == (True, "c")
    assert (pages[3].more, pages[3].next) == (True, "/p2")
    assert (pages[4].more, pages[4].total) == (False, 0)


def test_unknown_liveagent_time_zone_is_one_configuration_line(tmp_path: Path) -> None:
    # ZoneInfo raises ZoneInfoNotFoundError, a KeyError pydantic does not turn into a
    # validation error: it was a 55-line traceback at start-up (issue 10, item 11).
    config = tmp_path / "config.toml"
    config.write_text(
        f'store = "{tmp_path / "s.db"}"\n[[sources]]\nname = "la"\nadapter = "liveagent"\n'
        'subdomain = "acme"\napi_key = "k"\napi_timezone = "Mars/Olympus_Mons"\n')
    with pytest.raises(ConfigError) as info:
        load_config(config)
    message = str(info.value)
    assert "\n" not in message
    assert "api_timezone" in message and "'Mars/Olympus_Mons' is not an IANA time zone" in message
