"""Exclusions: rows that are not customer contacts are left out and counted, never stored.

`csv` sources: `exclude = { "<header>" = ["value", ...] }`; Asterisk `exclude_contexts` is in
tests/test_asterisk_cdr.py. Every row read is a contact, a duplicate, an exclusion or a
rejection: nothing disappears without a count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters.base import AdapterContext, SourceError
from adapters.csv_export import CsvAdapter, CsvSettings, parse_csv
from collector.store import SqliteStore

OSLO = ZoneInfo("Europe/Oslo")
# A PBX's call export as a CSV: the type column tells customer calls from internal ones.
EXPORT = (
    "id,start,talk,type,queue\n"
    "1,2026-11-02 10:00:00,120,external,support\n"
    "2,2026-11-02 10:05:00,30,internal,support\n"  # extension to extension
    "3,2026-11-02 10:10:00,60,external,test-line\n"  # the engineers' test queue
    "4,2026-11-02 10:15:00,nope,external,support\n"  # a bad duration: rejected, not excluded
    "5,2026-11-02 10:20:00,90, internal ,support\n"  # cells are compared stripped
)
SETTINGS: dict[str, Any] = {
    "name": "pbx-csv",
    "adapter": "csv",
    "path": "export.csv",
    "channel": "voice",
    "columns": {"id": "id", "started_at": "start", "talk_seconds": "talk", "queue": "queue"},
    "queues": {"support": "support"},
    "time_format": "%Y-%m-%d %H:%M:%S",
    "exclude": {"type": ["internal"], "queue": ["test-line"]},
}


def test_excluded_rows_are_counted_with_their_line() -> None:
    result = parse_csv(EXPORT.encode(), 1, None, CsvSettings.model_validate(SETTINGS), OSLO)
    assert [c.id for c in result.contacts] == ["1"]
    assert [(r.reason, r.line) for r in result.rejections] == [("duration", 5)]
    assert [(e.reason, e.line, e.detail) for e in result.excluded] == [
        ("excluded_value", 3, "type = internal"),
        ("excluded_value", 4, "queue = test-line"),
        ("excluded_value", 6, "type =  internal "),
    ]
    # 5 data rows = 1 contact + 1 rejection + 3 exclusions.
    assert len(result.contacts) + len(result.rejections) + len(result.excluded) == 5


def test_without_exclude_every_row_is_a_contact_or_a_rejection() -> None:
    plain = CsvSettings.model_validate({**SETTINGS, "exclude": {}})
    result = parse_csv(EXPORT.encode(), 1, None, plain, OSLO)
    assert [c.id for c in result.contacts] == ["1", "2", "3", "5"] and result.excluded == []


def test_an_exclude_column_missing_from_the_header_stops_the_source(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(EXPORT)
    settings = CsvSettings.model_validate({**SETTINGS, "path": path, "exclude": {"kind": ["x"]}})
    source = CsvAdapter(settings, AdapterContext(OSLO, "USD"))
    with pytest.raises(SourceError, match="'kind' \\(exclude\\) is not in the header"):
        list(source.pull(None))


def test_excluded_rows_reach_the_batch_and_never_the_store(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(EXPORT)
    source = CsvAdapter(CsvSettings.model_validate({**SETTINGS, "path": path}),
                        AdapterContext(OSLO, "USD"))
    store = SqliteStore(tmp_path / "s.db", OSLO)
    batches = list(source.pull(None))
    assert sum(len(b.excluded) for b in batches) == 3
    for batch in batches:
        store.commit_records("pbx-csv", batch.contacts, batch.legs, batch.position)
    assert store.counts() == {"pbx-csv": 1}
    # Read again from the stored position: nothing new, nothing excluded twice.
    assert [b for b in source.pull(store.position("pbx-csv")) if b.contacts or b.excluded] == []
    store.close()
