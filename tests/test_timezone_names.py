"""One time-zone check (adapters.base.TimeZoneName) for every field that names a zone."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.base import check_timezone
from adapters.csv_export import CsvSettings
from adapters.liveagent import LiveAgentSettings
from collector.config import Settings

MESSAGE = "'{}' is not an IANA time zone such as UTC or Europe/Oslo"
# A missing key (ZoneInfoNotFoundError, a KeyError), a directory of the zone database, an
# absolute path and an empty name (ValueError): each one line, never a KeyError's repr.
BAD = ["Mars/Olympus", "Europe", "/etc/passwd", ""]


@pytest.mark.parametrize("name", BAD)
def test_check_timezone_refuses_with_one_message(name: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_timezone(name)
    assert str(refused.value) == MESSAGE.format(name)
    assert check_timezone("Europe/Oslo") == "Europe/Oslo"


@pytest.mark.parametrize("name", BAD)
def test_every_zone_field_uses_the_one_check(name: str) -> None:
    csv = {"name": "t", "adapter": "csv", "path": "t.csv", "channel": "email",
           "columns": {"id": "id", "started_at": "start", "handle_seconds": "secs"}}
    live = {"name": "la", "adapter": "liveagent", "api_key": "k", "subdomain": "acme"}
    for model, data, field in ((Settings, {}, "timezone"), (CsvSettings, csv, "timezone"),
                               (LiveAgentSettings, live, "api_timezone")):
        with pytest.raises(ValidationError) as refused:
            model.model_validate({**data, field: name})
        errors = refused.value.errors()
        assert [e["loc"] for e in errors] == [(field,)], model
        assert MESSAGE.format(name) in errors[0]["msg"], model
