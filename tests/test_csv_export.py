"""The generic CSV parser against committed fixtures, and its incremental shell."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from adapters.base import AdapterContext, SourceError
from adapters.csv_export import MAX_RECORD_LINES, CsvAdapter, CsvSettings, parse_csv
from collector.model import Contact, hash_customer

FIXTURES = Path(__file__).parent / "fixtures" / "csv"
OSLO = ZoneInfo("Europe/Oslo")

# Exactly the [[sources]] "helpdesk" entry of config/example.toml.
EXAMPLE: dict[str, Any] = {
    "name": "helpdesk",
    "adapter": "csv",
    "path": "config/samples/tickets.csv",
    "channel": "email",
    "columns": {
        "id": "Ticket ID",
        "started_at": "Created at",
        "handle_seconds": "Handle time (s)",
        "queue": "Group",
    },
    "queues": {"support": "support", "billing": "billing"},
    "time_format": "%Y-%m-%d %H:%M:%S",
}

CALLS: dict[str, Any] = {
    "name": "vendor",
    "adapter": "csv",
    "path": "calls.csv",
    "delimiter": ";",
    "queue": "callcenter",
    "columns": {
        "id": "call_id",
        "started_at": "start",
        "ended_at": "end",
        "talk_seconds": "talk",
        "hold_seconds": "hold",
        "acw_seconds": "wrap",
        "outcome": "result",
        "direction": "dir",
        "channel": "kind",
        "customer": "caller",
        "price": "cost",
        "handled": "disposition",
    },
    "directions": {"IN": "inbound", "OUT": "outbound"},
    "channels": {"phone": "voice", "Phone": "voice"},
    "outcomes": {"sold": "sale"},
    "handled_values": {"done": True, "missed": False},
}


def settings(base: dict[str, Any] = EXAMPLE, **changes: Any) -> CsvSettings:
    return CsvSettings.model_validate({**base, **changes})


def adapter(path: Path, **changes: Any) -> CsvAdapter:
    return CsvAdapter(settings(path=path, **changes), AdapterContext(OSLO, "USD"))


def email(id_: str, queue: str, start: float, handle: float) -> Contact:
    return Contact(id_, "email", "inbound", queue, start, True, handle, handle, handle)


def test_example_settings_validate() -> None:
    s = settings()
    assert s.channel == "email" and s.columns.queue == "Group" and s.delimiter == ","


@pytest.mark.parametrize(
    "change",
    [
        {"channel": None},  # neither a fixed channel nor a channel column
        {"columns": {"started_at": "Created at"}},  # no way to know handle time
        {"queues": {"Billing Team": "Billing Team"}},  # not a label value
        {"delimiter": ";;"},
        {"encoding": "no-such-codec"},
        {"colour": "red"},
    ],
)
def test_bad_settings_are_rejected(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        settings(**change)


def test_tickets_fixture_golden() -> None:
    data = (FIXTURES / "tickets.csv").read_bytes()
    result = parse_csv(data, 1, None, settings(), OSLO)
    # Oslo is at +02:00 in June. 2026-06-01T00:00Z = 20605 days * 86400 = 1780272000.
    assert result.contacts == [
        email("T-1", "support", 1780272000 + 6 * 3600, 300.0),  # 08:00 local = 06:00Z
        # Lines 3-4: a quoted newline. "Billing Team" is not in `queues`: queue "other".
        email("T-2", "other", 1780272000 + 6 * 3600 + 600, 120.0),
        # Line 10, with "" escapes. "sales" looks like a label but is not mapped: "other".
        email("T-8", "other", 1780272000 + 7 * 3600, 45.0),
    ]
    assert [(r.reason, r.line) for r in result.rejections] == [
        ("date", 5),
        ("duration", 6),  # -5
        ("columns", 7),  # 4 columns, header has 5
        ("duration", 8),  # abc
        ("id", 9),  # empty id
    ]
    assert result.header == ["Ticket ID", "Created at", "Handle time (s)", "Group", "Subject"]
    assert result.unconsumed == b""
    records = 8  # nine lines after the header, one record spanning two of them
    assert len(result.contacts) + len(result.rejections) == records


def test_calls_fixture_golden_with_every_mapping() -> None:
    data = (FIXTURES / "calls.csv").read_bytes()
    result = parse_csv(data, 1, None, settings(CALLS), OSLO)
    # 2026-10-25T00:00Z = 20751 days * 86400 = 1792886400.
    day = 1792886400
    assert result.contacts == [
        # 02:30 local happens twice that night: the first, CEST (+02:00) = 00:30Z.
        # Handle = talk + hold + wrap = 400 + 100 + 60 = 560; billable = talk.
        Contact(
            "c1", "voice", "inbound", "callcenter", day + 1800, True, 560.0, 400.0, 400.0,
            "sale", hash_customer("+47 555 01"), 0.12, "",
        ),
        # Explicit UTC; no parts: handle = end - start = 300. Not handled, and no talk or
        # billable column: billable 0 (its 300 s are ring time, not billed talk).
        Contact(
            "c2", "voice", "outbound", "callcenter", day + 3600, False, 300.0, 300.0, 0.0,
            "", hash_customer("+47 555 02"), None, "not_handled",
        ),
        # Explicit +01:00: 03:00+01:00 = 02:00Z. "fax" is not in `channels`: "other".
        Contact(
            "c3", "other", "inbound", "callcenter", day + 7200, True, 600.0, 600.0, 600.0,
            "", None, 1.5, "",
        ),
    ]  # fmt: skip
    assert [(r.reason, r.line) for r in result.rejections] == [
        ("direction", 5),
        ("duration", 6),  # ended before it started
        ("price", 7),  # "1,5"
    ]


def test_missing_mapped_column_is_a_source_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "tickets.csv"
    path.write_text("Ticket ID,Created at,Handle time (s)\nT-1,2026-06-01 08:00:00,1\n")
    with pytest.raises(SourceError, match="'Group'"):
        list(adapter(path).pull(None))


def test_header_is_remembered_across_reads(tmp_path: Path) -> None:
    path = tmp_path / "tickets.csv"
    path.write_text("Ticket ID,Created at,Handle time (s),Group\nT-1,2026-06-01 08:00:00,1,a\n")
    source = adapter(path)
    first = list(source.pull(None))
    with path.open("a") as handle:
        handle.write("T-2,2026-06-01 08:00:01,2,b\n")
    second = list(source.pull(first[-1].position))
    assert [(c.id, c.queue) for b in second for c in b.contacts] == [("T-2", "other")]
    assert second[0].rejections == []


def test_open_record_at_the_end_waits_for_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "tickets.csv"
    path.write_text(
        "Ticket ID,Created at,Handle time (s),Group,Note\n"
        "T-1,2026-06-01 08:00:00,1,a,done\n"
        'T-2,2026-06-01 08:00:01,2,b,"still\n'
        "being written\n"
    )
    source = adapter(path)
    first = list(source.pull(None))
    assert [c.id for b in first for c in b.contacts] == ["T-1"]
    assert all(not b.rejections for b in first)
    with path.open("a") as handle:  # still being written: the file changed since the read
        handle.write("and ")
    waiting = list(source.pull(first[-1].position))
    assert [b.contacts or b.rejections for b in waiting] == [[]]  # the open record waits
    with path.open("a") as handle:
        handle.write('done"\nT-3,2026-06-01 08:00:02,3,c,x\n')
    second = list(source.pull(waiting[-1].position))
    contacts = [c for b in second for c in b.contacts]
    assert [c.id for c in contacts] == ["T-2", "T-3"]
    assert all(not b.rejections for b in second)


def test_open_record_over_several_chunks(tmp_path: Path) -> None:
    """A quoted field spanning chunk boundaries within one pull."""
    from adapters import csv_export

    path = tmp_path / "tickets.csv"
    note = "\n".join(f"note line {n}" for n in range(30))
    path.write_text(
        "Ticket ID,Created at,Handle time (s),Group,Note\n"
        f'T-1,2026-06-01 08:00:00,1,a,"{note}"\nT-2,2026-06-01 08:00:01,2,b,x\n'
    )
    source = adapter(path)
    original = csv_export.read_new_lines
    csv_export.read_new_lines = lambda p, pos, **kw: original(p, pos, 40, **kw)  # type: ignore[assignment]
    try:
        batches = list(source.pull(None))
    finally:
        csv_export.read_new_lines = original
    assert [c.id for b in batches for c in b.contacts] == ["T-1", "T-2"]
    assert all(not b.rejections for b in batches)


def test_runaway_quote_is_capped_and_loses_only_its_line() -> None:
    rows = "".join(f"T-{n},2026-06-01 08:00:00,1,a\n" for n in range(150))
    data = (
        "Ticket ID,Created at,Handle time (s),Group\n"
        'T-x,2026-06-01 08:00:00,1,"never closed\n' + rows
    ).encode()
    result = parse_csv(data, 1, None, settings(), OSLO)
    assert [(r.reason, r.line) for r in result.rejections] == [("quoting", 2)]
    assert len(result.contacts) == 150 > MAX_RECORD_LINES
    assert result.unconsumed == b""


def test_latin1_bytes_are_rejected_as_utf8_and_read_as_latin1() -> None:
    data = b"Ticket ID,Created at,Handle time (s),Group\nT-1,2026-06-01 08:00:00,1,a\n"
    data += "T-\xf8,2026-06-01 08:00:00,1,a\n".encode("latin-1")
    result = parse_csv(data, 1, None, settings(), OSLO)
    assert [c.id for c in result.contacts] == ["T-1"]
    assert [(r.reason, r.line) for r in result.rejections] == [("encoding", 3)]
    result = parse_csv(data, 1, None, settings(encoding="latin-1"), OSLO)
    assert [c.id for c in result.contacts] == ["T-1", "T-\xf8"]


def test_iso_times_by_default_and_byte_order_mark() -> None:
    data = "\ufeffTicket ID,Created at,Handle time (s),Group\nT-1,2026-01-15T12:00:00,5,a\n"
    result = parse_csv(data.encode(), 1, None, settings(time_format=None), OSLO)
    # 12:00 CET = 11:00Z; 2026-01-15T00:00Z = 1768435200.
    assert result.contacts == [email("T-1", "other", 1768435200 + 11 * 3600, 5.0)]


def test_rotation_keeps_each_files_header(tmp_path: Path) -> None:
    path = tmp_path / "tickets.csv"
    shutil.copy(FIXTURES / "tickets.csv", path)
    source = adapter(path)
    first = list(source.pull(None))
    path.rename(tmp_path / "tickets.csv.1")
    path.write_text("Group,Handle time (s),Created at,Ticket ID\nz,9,2026-06-02 08:00:00,N-1\n")
    second = list(source.pull(first[-1].position))
    assert [(c.id, c.queue, c.handle_seconds) for b in second for c in b.contacts] == [
        ("N-1", "other", 9.0)  # the new header's column order is used; "z" is not mapped
    ]


def test_open_record_at_the_end_of_a_rotated_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "tickets.csv"
    path.write_text(
        "Ticket ID,Created at,Handle time (s),Group\n"
        "T-1,2026-06-01 08:00:00,1,a\n"
        'T-2,2026-06-01 08:00:01,2,"never\n'
    )
    source = adapter(path)
    first = list(source.pull(None))
    assert [c.id for b in first for c in b.contacts] == ["T-1"]
    path.rename(tmp_path / "tickets.csv.1")
    path.write_text("Ticket ID,Created at,Handle time (s),Group\nN-1,2026-06-02 08:00:00,9,z\n")
    second = list(source.pull(first[-1].position))
    assert [(r.reason, r.line) for b in second for r in b.rejections] == [("quoting", 3)]
    assert [c.id for b in second for c in b.contacts] == ["N-1"]
    assert list(source.pull(second[-1].position)) == []
