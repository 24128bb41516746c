"""The Asterisk cdr_csv parser against committed fixtures, its incremental shell, and one
contact per call through the store (fixtures written from the Asterisk CDR specification)."""

from __future__ import annotations

import logging
import shutil
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from adapters.asterisk_cdr import (
    AsteriskCdrAdapter,
    AsteriskCdrSettings,
    LocalClock,
    ParsedCdr,
    parse_cdr,
)
from adapters.base import AdapterContext, Leg, SourceError
from collector.calls import merge_legs
from collector.model import Contact, hash_customer, row_id
from collector.store import SqliteStore

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


def merged(legs: list[Leg]) -> list[Contact]:
    """The contacts the store makes of these legs (one per call, in first-seen order)."""
    calls: dict[str, list[Leg]] = {}
    for leg in legs:
        calls.setdefault(leg.call, []).append(leg)
    return [merge_legs(call, sorted(group, key=lambda leg: leg.start))
            for call, group in calls.items()]


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
    legs, rejections, excluded = parse_cdr(data, 1, settings(), OSLO)
    assert excluded == []
    # The 21-column row's leg is uniqueid:sequence; the 16 and 18-column rows' a row hash.
    assert [leg.id for leg in legs][2] == "1792888200.3:7"

    assert merged(legs) == [
        # 16 columns; the clid's quoted comma survives (the row hashes to the id).
        # 2026-03-29 01:59:59 CET (+01:00), the last second before DST:
        # 2026-03-29T00:00Z = 20541 days * 86400 = 1774742400, + 00:59:59 = 1774745999.
        Contact(
            row_id(mixed_row_one()), "voice", "inbound", "support", 1774745999.0,
            True, 300.0, 300.0, 300.0, "", hash_customer("5551234"), None, "", 5.0,
        ),  # wait: answered 305 - 300 = 5 s after the start
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
            True, 300.0, 300.0, 300.0, "sale", hash_customer("4798765432"), None, "", 10.0,
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
            True, 60.0, 60.0, 60.0, "lead", hash_customer("5551117"), None, "", 2.0,
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
    assert len(legs) + len(rejections) == len(non_blank) == 11


def test_usegmtime_reads_dates_as_utc() -> None:
    data = (FIXTURES / "mixed.csv").read_bytes()
    legs = parse_cdr(data, 1, settings(usegmtime=True), OSLO).legs
    # 2026-03-29 01:59:59 taken as UTC: 1774742400 + 7199.
    assert legs[0].start == 1774749599.0


def test_latin1_bytes_are_rejected_as_utf8_and_read_as_latin1() -> None:
    data = (FIXTURES / "latin1.csv").read_bytes()
    legs, rejections, _ = parse_cdr(data, 1, settings(), OSLO)
    assert [leg.call for leg in legs] == ["1768475400.2"]  # the ASCII line still counts
    assert [(r.reason, r.line) for r in rejections] == [("encoding", 1)]

    legs, rejections, _ = parse_cdr(data, 1, settings(encoding="latin-1"), OSLO)
    assert [leg.call for leg in legs] == ["1768474800.1", "1768475400.2"]
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
    legs, rejections, _ = parse_cdr(
        f'"","1","2","c","","","","","","{text}","","",1,1,"ANSWERED",""\n'.encode(), 1,
        settings(), OSLO,
    )  # fmt: skip
    assert legs == [] and rejections[0].reason == "date"


def test_partial_last_line_waits(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    shutil.copy(FIXTURES / "partial.csv", path)
    source = adapter(path)
    batches = list(source.pull(None))
    assert [leg.call for b in batches for leg in b.legs] == ["1768474800.1"]
    position = batches[-1].position
    with path.open("a") as handle:  # still being written (the file changed since the read)
        handle.write(' Name"" <5550001>","","","Dial","","2026-01-15 12:10:00","",')
    batches = list(source.pull(position))
    assert [b.legs or b.rejections for b in batches] == [[]]  # only the size seen
    position = batches[-1].position

    with path.open("a") as handle:  # the writer finishes the line
        handle.write('"2026-01-15 12:10:30",30,0,"BUSY","DOCUMENTATION","1768475400.2",""\n')
    batches = list(source.pull(position))
    assert [leg.call for b in batches for leg in b.legs] == ["1768475400.2"]
    assert batches[0].rejections == []


def test_rotated_pair_reads_the_rest_of_the_old_file_then_the_new(tmp_path: Path) -> None:
    old_lines = (FIXTURES / "rotated" / "Master.csv.1").read_bytes().splitlines(keepends=True)
    path = tmp_path / "Master.csv"
    path.write_bytes(old_lines[0])
    source = adapter(path)
    first = list(source.pull(None))
    assert [leg.call for b in first for leg in b.legs] == ["1780293600.1"]

    with path.open("ab") as handle:
        handle.write(old_lines[1])  # written just before rotation
    path.rename(tmp_path / "Master.csv.1")
    shutil.copy(FIXTURES / "rotated" / "Master.csv", path)

    second = list(source.pull(first[-1].position))
    assert [leg.call for b in second for leg in b.legs] == ["1780293900.2", "1780294200.3"]
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
    pieces = ParsedCdr([], [], [])
    for chunk in read_new_lines(path, None, chunk_bytes=300):
        part = parse_cdr(chunk.data, chunk.first_line, settings(), OSLO)
        for mine, theirs in zip(pieces, part, strict=True):
            mine.extend(theirs)
    assert pieces == whole


def test_non_ascii_digits_are_not_durations() -> None:
    # int() accepts Arabic-Indic digits; an Asterisk CDR never writes them.
    line = ('"","100","200","support-in","","","","","","2026-11-02 09:00:00",'
            '"2026-11-02 09:00:05","2026-11-02 09:05:05",\u0663\u0660\u0660,300,"ANSWERED","DOCUMENTATION"\n')
    legs, rejections, _ = parse_cdr(line.encode(), 1, settings(), OSLO)
    assert legs == []
    assert [(r.reason, r.line) for r in rejections] == [("duration", 1)]


# -- one contact per call ---------------------------------------------------------------------
# calls21.csv and calls18.csv are written from the Asterisk 12+ CDR specification (one CDR per
# dial attempt or bridge, Party A = the caller, shared linkedid, sequence counting up) and
# cdr_csv's column order (16 base columns; + uniqueid, userfield; + peeraccount, linkedid,
# sequence). Times are Europe/Oslo on Monday 2026-11-02; 10:00:00 local = T.
T = 1793610000.0
FREEPBX = {
    "queues": {"ext-queues": "support", "from-trunk": "sales"},
    "outcomes": {"SALE": "sale"},
}


def ingest(store: SqliteStore, source: AsteriskCdrAdapter) -> tuple[int, int, int, int]:
    """Pull what is new and commit it; (records, duplicates, excluded, rejected)."""
    counts = [0, 0, 0, 0]
    for batch in source.pull(store.position("pbx")):
        committed = store.commit_records("pbx", batch.contacts, batch.legs, batch.position)
        counts[0] += committed.records
        counts[1] += committed.duplicates
        counts[2] += len(batch.excluded)
        counts[3] += len(batch.rejections)
    return counts[0], counts[1], counts[2], counts[3]


def calls(store: SqliteStore) -> dict[str, tuple[object, ...]]:
    rows = store._db.execute(
        "SELECT id, start, handled, talk_seconds, billable_seconds, wait_seconds, queue, "
        "outcome, reason FROM contacts"
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def test_calls21_one_contact_per_call(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    shutil.copy(FIXTURES / "calls21.csv", path)
    store = SqliteStore(tmp_path / "s.db", OSLO)
    # 9 rows, 9 legs stored, no duplicates, nothing excluded or rejected.
    assert ingest(store, adapter(path, **FREEPBX)) == (9, 0, 0, 0)
    assert calls(store) == {
        # Queue: 201 rings 10:00:00-10:00:20, 202 10:00:25-10:00:45, neither answers; 203
        # answers at 10:05:55 - 300 = 10:00:55 and talks 300 s. One handled call, not three
        # contacts of which two abandoned. Wait = 10:00:55 - 10:00:00 = 55 s.
        "1793610000.1": (T, 1, 300.0, 300.0, 55.0, "support", "sale", ""),
        # IVR only: answered by the PBX (no dstchannel) for 38 s: billable, nobody talked.
        "1793610360.5": (T + 360, 0, 0.0, 38.0, None, "other", "", "no_agent"),
        # Attended transfer: 201 talks [10:10:05, 10:12:05], consults 202 on a second
        # channel [10:11:35, 10:12:05] (inside the first), then the caller talks to 202
        # [10:12:05, 10:15:05]. Union = 10:10:05..10:15:05 = 300 s (120 + 30 + 180 = 330
        # would count the consultation twice). Wait = 5 s. Queue from from-trunk: sales.
        "1793610600.6": (T + 600, 1, 300.0, 300.0, 5.0, "sales", "", ""),
        # Local channel: the ;1 leg (to Local/..., not a person) and the ;2 leg (to the phone)
        # cover the same [10:20:10, 10:24:10]: talk 240, not 480; billable 240. Wait 10 s.
        "1793611200.10": (T + 1200, 1, 240.0, 240.0, 10.0, "support", "", ""),
    }
    rollups = store.rollups_as_of(date(2026, 11, 2), datetime(2026, 11, 3, tzinfo=OSLO))
    # 4 calls, 3 handled; talk over handled calls 300 + 300 + 240 = 840; billable + 38.
    assert sum(r.contacts for r in rollups) == 4
    assert sum(r.handled for r in rollups) == 3
    assert sum(r.talk_seconds for r in rollups) == 840.0
    assert sum(r.billable_seconds for r in rollups) == 878.0
    # Reading the whole file again stores nothing: 9 duplicates.
    again = [store.commit_records("pbx", b.contacts, b.legs, None)
             for b in adapter(path, **FREEPBX).pull(None)]
    assert (sum(c.records for c in again), sum(c.duplicates for c in again)) == (0, 9)
    assert sum(r.contacts for r in store.rollups_as_of(
        date(2026, 11, 2), datetime(2026, 11, 3, tzinfo=OSLO))) == 4
    store.close()


def test_exclude_contexts_leaves_the_consultation_out(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    shutil.copy(FIXTURES / "calls21.csv", path)
    store = SqliteStore(tmp_path / "s.db", OSLO)
    source = adapter(path, exclude_contexts=["from-internal"], **FREEPBX)
    batches = list(source.pull(None))
    assert [(e.reason, e.line) for b in batches for e in b.excluded] == [("excluded_context", 6)]
    # 8 legs + 1 excluded = 9 rows.
    assert ingest(store, adapter(path, exclude_contexts=["from-internal"], **FREEPBX)) == (
        8, 0, 1, 0)
    # Without the consultation leg: [10:10:05, 10:12:05] + [10:12:05, 10:15:05] = 300 s.
    assert calls(store)["1793610600.6"] == (T + 600, 1, 300.0, 300.0, 5.0, "sales", "", "")
    store.close()


def test_calls18_without_linkedid_excludes_the_dialed_side(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    shutil.copy(FIXTURES / "calls18.csv", path)
    store = SqliteStore(tmp_path / "s.db", OSLO)
    source = adapter(path, **FREEPBX)
    batches = list(source.pull(None))
    # Line 2 is the dialed side (lastapp AppDial), line 4 the ;2 half of a Local channel:
    # their own uniqueids tie them to nothing, so they are not calls of their own.
    assert [(e.reason, e.line) for b in batches for e in b.excluded] == [
        ("internal_leg", 2), ("internal_leg", 4)]
    assert ingest(store, adapter(path, **FREEPBX)) == (4, 0, 2, 0)
    t = T + 3600  # 11:00:00
    assert calls(store) == {
        # One CDR, answered by SIP/201 at 11:02:04 - 120 = 11:00:04: wait 4 s.
        "1793613600.16": (t, 1, 120.0, 120.0, 4.0, "sales", "", ""),
        # Only the ;1 half is left, and it was answered by a Local channel, not a person:
        # billable 180 s, not handled. With 18 columns nothing ties the phone's ;2 half to
        # this call (README: use 21 columns, cdr.conf newcdrcolumns, with Local channels).
        "1793614200.18": (t + 600, 0, 0.0, 180.0, None, "support", "", "no_agent"),
        # Asterisk 12+ without newcdrcolumns: two CDRs share the caller's uniqueid, the call.
        # 201 does not answer; 202 answers at 11:22:20 - 120 = 11:20:20: wait 20 s.
        "1793614800.21": (t + 1200, 1, 120.0, 120.0, 20.0, "support", "", ""),
    }
    store.close()


def test_legs_split_across_reads_and_every_row_accounted(tmp_path: Path) -> None:
    lines = [
        *(FIXTURES / "calls21.csv").read_bytes().splitlines(keepends=True),
        *(FIXTURES / "calls18.csv").read_bytes().splitlines(keepends=True),
        *(FIXTURES / "mixed.csv").read_bytes().splitlines(keepends=True),
    ]
    rows = sum(1 for line in lines if line.strip())  # 9 + 6 + 11 = 26 rows
    path = tmp_path / "Master.csv"
    path.write_bytes(b"".join(lines[:2]))  # read 1: the two unanswered legs of the queue call
    store = SqliteStore(tmp_path / "s.db", OSLO)
    changes = {"exclude_contexts": ["from-internal"], **FREEPBX}
    first = ingest(store, adapter(path, **changes))
    assert first == (2, 0, 0, 0)
    # After read 1 the call is abandoned: not handled, reason no_answer.
    assert calls(store)["1793610000.1"] == (T, 0, 0.0, 0.0, None, "support", "", "no_answer")
    with path.open("ab") as handle:  # read 2: the rest, with the answered leg
        handle.write(b"".join(lines[2:]))
    second = ingest(store, adapter(path, **changes))
    # The same call is now handled: one contact, counted once in every rollup.
    assert calls(store)["1793610000.1"] == (T, 1, 300.0, 300.0, 55.0, "support", "sale", "")
    records, duplicates, excluded, rejected = (a + b for a, b in zip(first, second, strict=True))
    # rows read = records + duplicates + excluded + rejected: 17 + 0 + 3 + 6 = 26.
    # Excluded: the from-internal consultation, the AppDial row and the ;2 Local half.
    assert (records, duplicates, excluded, rejected) == (17, 0, 3, 6)
    assert records + duplicates + excluded + rejected == rows
    # A re-read of the whole file (a lost position): every leg is a duplicate, nothing new.
    before = calls(store)
    reread = [0, 0]
    for batch in adapter(path, **changes).pull(None):
        committed = store.commit_records("pbx", batch.contacts, batch.legs, None)
        reread[0] += committed.records
        reread[1] += committed.duplicates + len(batch.excluded) + len(batch.rejections)
    assert reread == [0, rows]
    assert calls(store) == before
    store.close()


CHILD = """
import os, signal, sys
from zoneinfo import ZoneInfo
from adapters.asterisk_cdr import AsteriskCdrAdapter, AsteriskCdrSettings
from adapters.base import AdapterContext
from collector.store import SqliteStore

path, db, die = sys.argv[1], sys.argv[2], sys.argv[3] == "die"
if die:  # kill -9 inside the commit: legs inserted and calls merged, COMMIT not reached
    original = SqliteStore._merge_calls
    def merge_then_die(self, *args):
        original(self, *args)
        os.kill(os.getpid(), signal.SIGKILL)
    SqliteStore._merge_calls = merge_then_die
settings = AsteriskCdrSettings(name="pbx", adapter="asterisk_cdr", path=path,
                               queues={"ext-queues": "support", "from-trunk": "sales"},
                               outcomes={"SALE": "sale"})
source = AsteriskCdrAdapter(settings, AdapterContext(ZoneInfo("Europe/Oslo"), "USD"))
store = SqliteStore(db, ZoneInfo("Europe/Oslo"))
for batch in source.pull(store.position("pbx")):
    store.commit_records("pbx", batch.contacts, batch.legs, batch.position)
store.close()
"""


def test_kill_9_between_and_inside_commits_gives_the_same_totals(tmp_path: Path) -> None:
    import subprocess
    import sys

    lines = (FIXTURES / "calls21.csv").read_bytes().splitlines(keepends=True)
    root = Path(__file__).resolve().parent.parent

    def child(db: Path, die: bool) -> int:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(db), "die" if die else "live"],
            cwd=root, timeout=60, check=False,
        )
        return done.returncode

    # Clean run: the whole file at once.
    path = tmp_path / "Master.csv"
    path.write_bytes(b"".join(lines))
    assert child(tmp_path / "clean.db", die=False) == 0
    clean = SqliteStore(tmp_path / "clean.db", OSLO)

    # Crash run: the first 2 legs committed; then the PBX writes the rest and the exporter is
    # killed (-9) inside the commit of those; restarted, it reads them again and commits.
    path.write_bytes(b"".join(lines[:2]))
    crashed_db = tmp_path / "crashed.db"
    assert child(crashed_db, die=False) == 0
    path.write_bytes(b"".join(lines))
    assert child(crashed_db, die=True) == -9
    assert child(crashed_db, die=False) == 0
    crashed = SqliteStore(crashed_db, OSLO)

    moment = datetime(2026, 11, 3, tzinfo=OSLO)
    assert calls(crashed) == calls(clean)
    assert sorted(crashed.rollups_as_of(date(2026, 11, 2), moment)) == sorted(
        clean.rollups_as_of(date(2026, 11, 2), moment))
    # Every leg stored once: 8 in the legs table (calls of several legs), and the IVR call's
    # one leg inside its contact row.
    legs = ("SELECT (SELECT count(*) FROM legs), "
            "(SELECT count(*) FROM contacts WHERE leg IS NOT NULL)")
    assert crashed._db.execute(legs).fetchone() == clean._db.execute(legs).fetchone() == (8, 1)
    clean.close()
    crashed.close()


RUNTIME_CONFIG = """
currency = "EUR"
timezone = "Europe/Oslo"
store = "state.db"

[[sources]]
name = "pbx"
adapter = "asterisk_cdr"
path = "Master.csv"
queues = { "ext-queues" = "support", "from-trunk" = "sales" }
outcomes = { "SALE" = "sale" }
exclude_contexts = ["from-internal"]
"""


def test_the_exporters_counters_account_for_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """contactcenter_source_records_total + duplicates + excluded + rejected = rows read."""

    from collector.runtime import Exporter, load_config

    from .conftest import parse_exposition

    lines = [
        *(FIXTURES / "calls21.csv").read_bytes().splitlines(keepends=True),
        *(FIXTURES / "calls18.csv").read_bytes().splitlines(keepends=True),
        *(FIXTURES / "mixed.csv").read_bytes().splitlines(keepends=True),
    ]
    rows = sum(1 for line in lines if line.strip())  # 26
    (tmp_path / "config.toml").write_text(RUNTIME_CONFIG)
    (tmp_path / "Master.csv").write_bytes(b"".join(lines[:2]))  # the queue call's first legs
    monkeypatch.chdir(tmp_path)

    def counters(exp: Exporter) -> dict[str, float]:
        values = parse_exposition(exp.health.body.decode())
        out: dict[str, float] = {}
        for (name, _), value in values.items():
            for family in ("records", "duplicate_records", "excluded_records",
                           "rejected_records"):
                if name == f"contactcenter_source_{family}_total":
                    out[family] = out.get(family, 0) + value
        return out

    exp = Exporter(load_config("config.toml"), clock=lambda: T + 86400)
    exp.ingest("pbx")
    with (tmp_path / "Master.csv").open("ab") as handle:
        handle.write(b"".join(lines[2:]))
    exp.ingest("pbx")
    # 17 legs stored, 0 duplicates, 3 excluded (from-internal, AppDial, Local ;2), 6 rejected.
    assert counters(exp) == {"records": 17, "duplicate_records": 0, "excluded_records": 3,
                             "rejected_records": 6}
    assert sum(counters(exp).values()) == rows
    excluded = parse_exposition(exp.health.body.decode())
    assert excluded[("contactcenter_source_excluded_records_total",
                     frozenset({("source", "pbx"), ("reason", "internal_leg")}))] == 2
    # 12 calls (4 + 3 + the 5 of mixed.csv), not 17 contacts.
    assert exp.store.counts() == {"pbx": 12}
    exp.close()

    # A lost position (the state's positions row gone): the file is read again from the
    # start, and every stored leg counts as a duplicate, never twice as a contact.
    import sqlite3

    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("DELETE FROM positions")
    db.commit()
    db.close()
    exp = Exporter(load_config("config.toml"), clock=lambda: T + 86400)
    exp.ingest("pbx")
    assert counters(exp) == {"records": 0, "duplicate_records": 17, "excluded_records": 3,
                             "rejected_records": 6}
    assert exp.store.counts() == {"pbx": 12}
    exp.close()
