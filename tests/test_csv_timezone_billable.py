"""csv: a source's own time zone for naive times, and what a contact's billable seconds are."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from adapters.base import AdapterContext
from adapters.csv_export import CsvAdapter, CsvSettings, parse_csv

OSLO = ZoneInfo("Europe/Oslo")
CONTEXT = AdapterContext(timezone=OSLO, currency="EUR")
HEADER = "id,start,end,talk,billed,handled\n"
# 2026-06-01 08:00 as written; the export does not say in which zone.
ROW = "a1,2026-06-01 08:00:00,2026-06-01 08:05:00,,,1\n"
UTC_0800 = 1780300800.0  # 2026-06-01T08:00:00Z
OSLO_0800 = UTC_0800 - 2 * 3600  # 08:00 CEST (+02:00) = 06:00Z


def settings(**extra: object) -> CsvSettings:
    columns = {"id": "id", "started_at": "start", "ended_at": "end", "handled": "handled"}
    columns.update(extra.pop("columns", {}))  # type: ignore[call-overload]
    return CsvSettings.model_validate({
        "name": "vendor", "adapter": "csv", "path": "x.csv", "channel": "voice",
        "time_format": "%Y-%m-%d %H:%M:%S", "columns": columns, **extra,
    })


def read(tmp_path: Path, text: str, **extra: object) -> list[tuple[float, float, float]]:
    path = tmp_path / "x.csv"
    path.write_text(text)
    adapter = CsvAdapter(settings(path=str(path), **extra), CONTEXT)
    return [(c.start, c.handle_seconds, c.billable_seconds)
            for b in adapter.pull(None) for c in b.contacts]


def test_naive_times_are_read_in_the_sources_timezone(tmp_path: Path) -> None:
    # no `timezone`: the exporter's (Oslo); `timezone = "UTC"`: the vendor exports UTC
    assert read(tmp_path, HEADER + ROW) == [(OSLO_0800, 300.0, 300.0)]
    assert read(tmp_path, HEADER + ROW, timezone="UTC") == [(UTC_0800, 300.0, 300.0)]
    # a time that carries its own offset keeps it, whatever the source's zone
    aware = "a2,2026-06-01T08:00:00+00:00,2026-06-01T08:05:00+00:00,,,1\n"
    iso = {"time_format": None}
    assert read(tmp_path, HEADER + aware, timezone="Asia/Tokyo", **iso) == [
        (UTC_0800, 300.0, 300.0)
    ]


def test_an_unknown_timezone_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="not an IANA time zone"):
        settings(timezone="Mars/Olympus")


@pytest.mark.parametrize(
    ("row", "columns", "billable"),
    [
        # answered, no talk or billable column: billed for its handle time (end - start)
        ("a1,2026-06-01 08:00:00,2026-06-01 08:05:00,,,1\n", {}, 300.0),
        # missed (handled 0), no talk or billable column: its 300 s ring time is not billed
        ("a1,2026-06-01 08:00:00,2026-06-01 08:05:00,,,0\n", {}, 0.0),
        # a talk column: billable = talk, answered or not
        ("a1,2026-06-01 08:00:00,2026-06-01 08:05:00,240,,1\n", {"talk_seconds": "talk"}, 240.0),
        # the export's own billable column wins (carriers round up to the minute)
        ("a1,2026-06-01 08:00:00,2026-06-01 08:05:00,240,300,1\n",
         {"talk_seconds": "talk", "billable_seconds": "billed"}, 300.0),
        ("a1,2026-06-01 08:00:00,2026-06-01 08:05:00,,12,0\n",
         {"billable_seconds": "billed"}, 12.0),
    ],
)
def test_billable_seconds(row: str, columns: dict[str, str], billable: float) -> None:
    result = parse_csv((HEADER + row).encode(), 1, None, settings(columns=columns), OSLO)
    assert result.rejections == []
    assert [c.billable_seconds for c in result.contacts] == [billable]


def test_a_bad_billable_cell_is_a_counted_rejection() -> None:
    row = "a1,2026-06-01 08:00:00,2026-06-01 08:05:00,,lots,1\n"
    result = parse_csv((HEADER + row).encode(), 1, None,
                       settings(columns={"billable_seconds": "billed"}), OSLO)
    assert result.contacts == [] and [r.reason for r in result.rejections] == ["duration"]
