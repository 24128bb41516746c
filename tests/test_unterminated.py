"""A last record without its newline, through the CSV and CDR adapters: stored exactly once.

The shape is the one of issue 10: a vendor export written once, with no final newline.
Each pass is driven by hand; the position is kept between passes as the store keeps it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from adapters.asterisk_cdr import AsteriskCdrAdapter, AsteriskCdrSettings
from adapters.base import Adapter, AdapterContext
from adapters.csv_export import CsvAdapter, CsvSettings

CONTEXT = AdapterContext(timezone=ZoneInfo("UTC"), currency="EUR")


class Ledger:
    """Every contact id and rejection reason handed out, and the committed position."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.position: str | None = None
        self.ids: list[str] = []
        self.rejected: list[str] = []

    def read(self) -> list[str]:
        """One pass; the ids it handed out."""
        before = len(self.ids)
        for batch in self.adapter.pull(self.position):
            self.ids += [contact.id for contact in batch.contacts]
            self.ids += [leg.call for leg in batch.legs]  # Asterisk rows are legs of calls
            self.rejected += [rejection.reason for rejection in batch.rejections]
            if batch.position is not None:
                self.position = batch.position
        return self.ids[before:]


def csv_source(path: Path, **extra: Any) -> Ledger:
    settings = CsvSettings.model_validate({
        "name": "vendor", "adapter": "csv", "path": str(path), "channel": "voice",
        "columns": {"id": "id", "started_at": "start", "handle_seconds": "secs"}, **extra,
    })
    return Ledger(CsvAdapter(settings, CONTEXT))


def cdr_line(uniqueid: str, start: str) -> str:
    """An 18-column cdr_csv row (Asterisk's documented column order), without newline."""
    return (
        f'"","5551234","100","support-in","<5551234>","SIP/t-1","SIP/100-1","Dial","SIP/100",'
        f'"{start}","{start}","{start}",65,60,"ANSWERED","DOCUMENTATION","{uniqueid}",""'
    )


def test_csv_export_written_once_without_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    # Exactly the reproduction: printf 'id,start,secs\nT1,...\nT2,...' > t.csv
    path.write_bytes(b"id,start,secs\nT1,2026-11-20T10:00:00,60\nT2,2026-11-20T11:00:00,60")
    source = csv_source(path)
    assert source.read() == ["T1"]  # T2 may still be being written
    assert source.read() == ["T2"]  # unchanged since: T2 is complete
    assert source.read() == []
    with path.open("ab") as handle:  # the writer appends the newline and more rows
        handle.write(b"\nT3,2026-11-20T12:00:00,60\nT4,2026-11-20T13:00:00,60")
    assert source.read() == ["T3"]  # T2 not again, not glued to T3; T4 waits
    assert source.read() == ["T4"]
    assert source.ids == ["T1", "T2", "T3", "T4"] and source.rejected == []


def test_csv_open_quote_at_the_end_of_an_unchanged_file_is_rejected_once(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b'id,start,secs\nT1,2026-11-20T10:00:00,60\nT2,"2026-11-20T11:00:00,60\n')
    source = csv_source(path)
    assert source.read() == ["T1"]
    assert source.read() == [] and source.rejected == ["quoting"]  # the quote never closes
    assert source.read() == [] and source.rejected == ["quoting"]
    with path.open("ab") as handle:
        handle.write(b"T3,2026-11-20T12:00:00,60\n")
    assert source.read() == ["T3"] and source.rejected == ["quoting"]


def test_csv_partial_line_still_waits_while_written(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"id,start,secs\nT1,2026-11-20T10:00:00,60\nT2,2026-11-")
    source = csv_source(path)
    assert source.read() == ["T1"]
    with path.open("ab") as handle:
        handle.write(b"20T11:00")  # the writer is still at it
    assert source.read() == []
    with path.open("ab") as handle:
        handle.write(b":00,60\n")
    assert source.read() == ["T2"] and source.rejected == []


def test_cdr_last_row_without_newline_then_the_writer_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_text(cdr_line("1.1", "2026-11-20 10:00:00") + "\n" + cdr_line("1.2", "2026-11-20 10:05:00"))
    settings = AsteriskCdrSettings(name="pbx", adapter="asterisk_cdr", path=path, usegmtime=True)
    source = Ledger(AsteriskCdrAdapter(settings, CONTEXT))
    assert source.read() == ["1.1"]
    assert source.read() == ["1.2"]
    assert source.read() == []
    with path.open("a") as handle:
        handle.write("\n" + cdr_line("1.3", "2026-11-20 10:10:00") + "\n")
    assert source.read() == ["1.3"]
    assert source.ids == ["1.1", "1.2", "1.3"] and source.rejected == []
