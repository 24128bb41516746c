"""The Asterisk cdr_csv parser against committed fixtures, and its incremental shell."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from adapters.asterisk_cdr import AsteriskCdrAdapter, AsteriskCdrSettings, LocalClock, parse_cdr
from adapters.base import AdapterContext, SourceError
from collector.model import Contact, Rejection, hash_customer, row_id

FIXTURES = Path(__file__).parent / "fixtures" / "asterisk"
OSLO = ZoneInfo("Europe/Oslo")

# Exactly the [[sources]] "pbx" entry of config/example.toml.
EXAMPLE = {
    "name": "pbx",
    "adapter": "asterisk_cdr",
    "path": "config/samples/Master.csv",
    "interval": "30s",
    "usegmtime": False,
    "queues": {"support-in": "support", "sales-in": "sales", "sales-out": "telesales"},
    "directions": {"sales-out": "outbound"},
    "outcomes": {"SALE": "sale", "LEAD": "lead"},
}


def settings(**changes: object) -> AsteriskCdrSettings:
    return AsteriskCdrSettings.model_validate({**EXAMPLE, **changes})


def adapter(path: Path, **changes: object) -> AsteriskCdrAdapter:
    context = AdapterContext(timezone=OSLO, currency="USD")
    return AsteriskCdrAdapter(settings(path=path, **changes), context)


def test_example_settings_validate() -> None:
    s = settings()
    assert s.usegmtime is False and s.channel == "voice" and s.encoding == "utf-8"


@pytest.mark.parametrize(
    "change",
    [{"queues": {"x": "Not A Label"}}, {"directions": {"x": "sideways"}}, {"colour": "red"}],
)
def test_bad_settings_are_rejected(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        settings(**change)


def mixed_row_one() -> list[str]:
    """Line 1 of mixed.csv as the csv module reads it: it has no uniqueid (16 columns)."""
    return [
        "", "5551234", "100", "support-in", '"Doe, John" <5551234>', "SIP/trunk-0001",
        "SIP/100-0001", "Dial", "SIP/100,30", "2026-03-29 01:59:59", "2026-03-29 03:00:04",
        "2026-03-29 03:05:04", "305", "300", "ANSWERED", "DOCUMENTATION",
    ]  # fmt: skip


def test_mixed_fixture_golden() -> None:
    data = (FIXTURES / "mixed.csv").read_bytes()
    contacts, rejections = parse_cdr(data, 1, settings(), OSLO)

    assert contacts == [
        # 16 columns; the clid's quoted comma survives (the row hashes to the id).
        # 2026-03-29 01:59:59 CET (+01:00), the last second before DST:
        # 2026-03-29T00:00Z = 20541 days * 86400 = 1774742400, + 00:59:59 = 1774745999.
        Contact(
            row_id(mixed_row_one()), "voice", "inbound", "support", 1774745999.0,
            True, 300.0, 300.0, 300.0, "", hash_customer("5551234"), None, "",
        ),
        # 18 columns, empty answer; 03:00:00 CEST (+02:00), the first local second after
        # the jump, is 01:00:00Z = 1774742400 + 3600 = 1774746000.
        Contact(
            "1774746000.2", "voice", "inbound", "sales", 1774746000.0,
            False, 0.0, 0.0, 0.0, "", hash_customer("5550001"), None, "no_answer",
        ),
        # 21 columns, outbound: the customer is dst. 02:30 on 2026-10-25 happens twice in
        # Oslo; the first (CEST, fold=0) is 00:30Z: 2026-10-25T00:00Z = 20751 * 86400 =
        # 1792886400, + 1800 = 1792888200.
        Contact(
            "1792888200.3", "voice", "outbound", "telesales", 1792888200.0,
            True, 300.0, 300.0, 300.0, "sale", hash_customer("4798765432"), None, "",
        ),
        # CONGESTION, an unmapped dcontext -> queue "other". 12:00 CET = 11:00Z:
        # 2026-01-15T00:00Z = 20468 * 86400 = 1768435200, + 39600 = 1768474800.
        Contact(
            "1768474800.4", "voice", "inbound", "other", 1768474800.0,
            False, 0.0, 0.0, 0.0, "", hash_customer("5559999"), None, "congestion",
        ),
        # Line 12 (after a blank line and an open quote on line 11): 12:06 CET = 11:06Z.
        Contact(
            "1768475160.11", "voice", "inbound", "support", 1768474800.0 + 360,
            True, 60.0, 60.0, 60.0, "lead", hash_customer("5551117"), None, "",
        ),
    ]  # fmt: skip
    assert [(r.reason, r.line) for r in rejections] == [
        ("columns", 5),  # 17 columns: uniqueid without userfield
        ("date", 6),  # month 13
        ("duration", 7),  # billsec -5
        ("disposition", 8),  # ANSWERD
        ("duration", 10),  # duration "five"
        ("columns", 11),  # a quote never closed: only its own line is lost
    ]
    non_blank = [line for line in data.split(b"\n") if line.strip()]
    assert len(contacts) + len(rejections) == len(non_blank) == 11


def test_usegmtime_reads_dates_as_utc() -> None:
    data = (FIXTURES / "mixed.csv").read_bytes()
    contacts, _ = parse_cdr(data, 1, settings(usegmtime=True), OSLO)
    # 2026-03-29 01:59:59 taken as UTC: 1774742400 + 7199.
    assert contacts[0].start == 1774749599.0


def test_latin1_bytes_are_rejected_as_utf8_and_read_as_latin1() -> None:
    data = (FIXTURES / "latin1.csv").read_bytes()
    contacts, rejections = parse_cdr(data, 1, settings(), OSLO)
    assert [c.id for c in contacts] == ["1768475400.2"]  # the ASCII line still counts
    assert [(r.reason, r.line) for r in rejections] == [("encoding", 1)]

    contacts, rejections = parse_cdr(data, 1, settings(encoding="latin-1"), OSLO)
    assert [c.id for c in contacts] == ["1768474800.1", "1768475400.2"]
    assert rejections == []


def test_clock_matches_zoneinfo_around_both_dst_changes() -> None:
    from datetime import datetime, timedelta

    clock = LocalClock(OSLO)
    for day in ("2026-03-29", "2026-10-25", "2026-12-31"):
        moment = datetime.fromisoformat(f"{day} 00:00:00")
        for _ in range(0, 4 * 3600, 7 * 60 + 13):
            text = moment.strftime("%Y-%m-%d %H:%M:%S")
            assert clock.epoch(text) == moment.replace(tzinfo=OSLO).timestamp(), text
            moment += timedelta(seconds=7 * 60 + 13)


@pytest.mark.parametrize(
    "text",
    ["2026-13-01 00:00:00", "2026-01-01 24:00:00", "2026-01-01 10:60:00", "2026-01-01 10:00:60",
     "2026-01-01T10:00:00", "2026-01-01 10:00", "2026-01-01 10:00:0x", "", "garbage",
     "0001-01-01 00:00:00", "1969-12-31 23:59:59", "3000-01-01 00:00:00"],
)  # fmt: skip
def test_clock_rejects_bad_dates(text: str) -> None:
    with pytest.raises(ValueError):
        LocalClock(OSLO).epoch(text)
    contacts, rejections = parse_cdr(
        f'"","1","2","c","","","","","","{text}","","",1,1,"ANSWERED",""\n'.encode(), 1,
        settings(), OSLO,
    )  # fmt: skip
    assert contacts == [] and rejections[0].reason == "date"


def test_partial_last_line_waits(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    shutil.copy(FIXTURES / "partial.csv", path)
    source = adapter(path)
    batches = list(source.pull(None))
    assert [c.id for b in batches for c in b.contacts] == ["1768474800.1"]
    position = batches[-1].position
    with path.open("a") as handle:  # still being written (the file changed since the read)
        handle.write(' Name"" <5550001>","","","Dial","","2026-01-15 12:10:00","",')
    batches = list(source.pull(position))
    assert [b.contacts or b.rejections for b in batches] == [[]]  # only the size seen
    position = batches[-1].position

    with path.open("a") as handle:  # the writer finishes the line
        handle.write('"2026-01-15 12:10:30",30,0,"BUSY","DOCUMENTATION","1768475400.2",""\n')
    batches = list(source.pull(position))
    assert [c.id for b in batches for c in b.contacts] == ["1768475400.2"]
    assert batches[0].rejections == []


def test_rotated_pair_reads_the_rest_of_the_old_file_then_the_new(tmp_path: Path) -> None:
    old_lines = (FIXTURES / "rotated" / "Master.csv.1").read_bytes().splitlines(keepends=True)
    path = tmp_path / "Master.csv"
    path.write_bytes(old_lines[0])
    source = adapter(path)
    first = list(source.pull(None))
    assert [c.id for b in first for c in b.contacts] == ["1780293600.1"]

    with path.open("ab") as handle:
        handle.write(old_lines[1])  # written just before rotation
    path.rename(tmp_path / "Master.csv.1")
    shutil.copy(FIXTURES / "rotated" / "Master.csv", path)

    second = list(source.pull(first[-1].position))
    assert [c.id for b in second for c in b.contacts] == ["1780293900.2", "1780294200.3"]
    assert second[0].location.endswith("Master.csv.1")
    assert list(source.pull(second[-1].position)) == []


def test_missing_file_is_a_source_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.csv"):
        list(adapter(tmp_path / "nope.csv").pull(None))


def test_rejections_carry_what_the_log_line_needs_and_the_adapter_logs_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The runtime is the one layer that logs a rejected record (issue 8, deliverable 6);
    # the adapter hands it the file (Batch.location) and each record's reason and line.
    path = tmp_path / "Master.csv"
    shutil.copy(FIXTURES / "mixed.csv", path)
    with caplog.at_level(logging.DEBUG, logger="adapters"):
        batches = list(adapter(path).pull(None))
    rejections = [r for b in batches for r in b.rejections]
    assert len(rejections) == 6
    assert caplog.records == []
    assert all(b.location.endswith("Master.csv") for b in batches)
    assert min(r.line for r in rejections) == 5
    reasons = [r.reason for r in rejections]
    assert reasons.count("columns") == 2 and reasons.count("duration") == 2
    assert all(r.detail for r in rejections)


def test_every_row_is_a_contact_or_a_rejection_over_chunks(tmp_path: Path) -> None:
    """Chunked reading (tiny chunks) gives the same result as one parse."""
    from adapters.filetail import read_new_lines

    data = (FIXTURES / "mixed.csv").read_bytes()
    path = tmp_path / "Master.csv"
    path.write_bytes(data)
    whole = parse_cdr(data, 1, settings(), OSLO)
    contacts: list[Contact] = []
    rejections: list[Rejection] = []
    for chunk in read_new_lines(path, None, chunk_bytes=300):
        c, r = parse_cdr(chunk.data, chunk.first_line, settings(), OSLO)
        contacts += c
        rejections += r
    assert (contacts, rejections) == whole


def test_non_ascii_digits_are_not_durations() -> None:
    # int() accepts Arabic-Indic digits; an Asterisk CDR never writes them.
    line = ('"","100","200","support-in","","","","","","2026-11-02 09:00:00",'
            '"2026-11-02 09:00:05","2026-11-02 09:05:05",\u0663\u0660\u0660,300,"ANSWERED","DOCUMENTATION"\n')
    contacts, rejections = parse_cdr(line.encode(), 1, settings(), OSLO)
    assert contacts == []
    assert [(r.reason, r.line) for r in rejections] == [("duration", 1)]
