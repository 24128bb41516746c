"""The sample generator: deterministic per day, valid cdr_csv, realistic volume shape."""

from __future__ import annotations

import csv
import importlib.util
import sys
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from types import ModuleType
from zoneinfo import ZoneInfo

import pytest

ROOT = Path(__file__).resolve().parent.parent
OSLO = ZoneInfo("Europe/Oslo")
WEDNESDAY, SATURDAY, SUNDAY = date(2026, 11, 25), date(2026, 11, 21), date(2026, 11, 22)


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_samples", ROOT / "scripts" / "generate_samples.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate_samples"] = module
    spec.loader.exec_module(module)
    return module


gen = _load()


def _rows(day: date) -> list[list[str]]:
    return list(csv.reader(gen.iter_cdr_rows(day)))


def test_same_day_gives_identical_bytes() -> None:
    assert "".join(gen.iter_cdr_rows(WEDNESDAY)) == "".join(gen.iter_cdr_rows(WEDNESDAY))
    assert list(gen.iter_ticket_rows(WEDNESDAY)) == list(gen.iter_ticket_rows(WEDNESDAY))


def test_overlapping_windows_write_identical_rows_for_shared_days(tmp_path: Path) -> None:
    now = datetime(2026, 11, 27, 0, 0, tzinfo=OSLO)
    gen.write_samples(tmp_path / "a", date(2026, 11, 26), 10, now)
    gen.write_samples(tmp_path / "b", date(2026, 11, 20), 10, now)
    a = (tmp_path / "a" / "Master.csv").read_text(encoding="utf-8").splitlines()
    b = (tmp_path / "b" / "Master.csv").read_text(encoding="utf-8").splitlines()
    shared = {"2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"}
    in_a = [line for line in a if next(csv.reader([line]))[9][:10] in shared]
    in_b = [line for line in b if next(csv.reader([line]))[9][:10] in shared]
    assert in_a and in_a == in_b


def test_cut_off_keeps_ids_of_the_full_day() -> None:
    until = datetime(2026, 11, 25, 12, 0, tzinfo=OSLO)
    full = list(gen.iter_cdr_rows(WEDNESDAY))
    cut = list(gen.iter_cdr_rows(WEDNESDAY, until=until))
    assert 0 < len(cut) < len(full)
    assert cut == full[: len(cut)]
    assert all(row[9] <= "2026-11-25 12:00:00" for row in csv.reader(cut))
    assert list(gen.iter_cdr_rows(date(2026, 11, 26), until=until)) == []


def test_every_row_has_18_columns_and_the_cdr_csv_shapes() -> None:
    for row in _rows(WEDNESDAY):
        assert len(row) == gen.CDR_COLUMNS
        assert row[14] in {"ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"}
        assert row[3] in {"support-in", "sales-in", "sales-out"}
        duration, billsec = int(row[12]), int(row[13])
        assert 0 <= billsec <= duration
        assert (row[10] == "") == (row[14] != "ANSWERED")
        datetime.strptime(row[9], "%Y-%m-%d %H:%M:%S")
        epoch, seq = row[16].split(".")
        start = datetime.strptime(row[9], "%Y-%m-%d %H:%M:%S").replace(tzinfo=OSLO)
        assert int(epoch) == int(start.timestamp()) and seq.isdigit()
        assert row[17] in {"", "SALE", "LEAD"}


def test_uniqueids_are_unique_across_days() -> None:
    ids = [row[16] for day in (SATURDAY, SUNDAY, date(2026, 11, 23)) for row in _rows(day)]
    ids += [row[16] for row in _rows(WEDNESDAY)]
    assert len(ids) == len(set(ids))


def test_quoting_round_trips_through_csv_reader() -> None:
    lines = list(gen.iter_cdr_rows(WEDNESDAY))
    named = [line for line in lines if ", " in next(csv.reader([line]))[4]]
    assert named, "some callers should have a 'Last, First' caller name"
    row = next(csv.reader([named[0]]))
    assert row[4].startswith('"') and ", " in row[4] and row[4].endswith(">")
    # The raw line is exactly what cdr_csv writes: every string quoted, numbers bare.
    assert f',{row[12]},{row[13]},"' in named[0]
    rebuilt = ",".join(
        value if i in (12, 13) else '"' + value.replace('"', '""') + '"'
        for i, value in enumerate(row)
    )
    assert rebuilt + "\n" == named[0]


def test_tickets_round_trip_with_commas_and_quotes(tmp_path: Path) -> None:
    gen.write_samples(tmp_path, WEDNESDAY, 3, datetime(2026, 11, 26, tzinfo=OSLO))
    with (tmp_path / "tickets.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(gen.TICKET_HEADER) == set(rows[0])
    assert any("," in r["Subject"] for r in rows)
    for r in rows:
        datetime.strptime(r["Created at"], "%Y-%m-%d %H:%M:%S")
        assert 180 <= int(r["Handle time (s)"]) <= 900
        assert r["Group"] in {"support", "billing"}
    assert len({r["Ticket ID"] for r in rows}) == len(rows)


def test_volume_shape_weekday_saturday_sunday() -> None:
    inbound = {
        day: sum(1 for r in _rows(day) if r[3] != "sales-out")
        for day in (WEDNESDAY, SATURDAY, SUNDAY)
    }
    assert 1200 <= inbound[WEDNESDAY] <= 2500
    assert 0.3 * inbound[WEDNESDAY] <= inbound[SATURDAY] <= 0.6 * inbound[WEDNESDAY]
    assert inbound[SUNDAY] == 0
    assert list(gen.iter_ticket_rows(SUNDAY)) == []
    hours = Counter(int(r[9][11:13]) for r in _rows(WEDNESDAY))
    assert min(hours) >= 8 and max(hours) <= 19
    assert hours.most_common(1)[0][0] in (9, 10, 11)
    saturday_hours = {int(r[9][11:13]) for r in _rows(SATURDAY)}
    assert min(saturday_hours) >= 9 and max(saturday_hours) <= 15


def test_disposition_ratios_over_a_week() -> None:
    rows = [r for d in range(23, 28) for r in _rows(date(2026, 11, d))]
    inbound = [r for r in rows if r[3] != "sales-out"]
    outbound = [r for r in rows if r[3] == "sales-out"]
    abandoned = sum(r[14] != "ANSWERED" for r in inbound) / len(inbound)
    assert 0.07 <= abandoned <= 0.11
    assert 350 <= len(outbound) / 5 <= 450
    answered = [r for r in outbound if r[14] == "ANSWERED"]
    assert 0.31 <= len(answered) / len(outbound) <= 0.39
    sales = sum(r[17] == "SALE" for r in answered) / len(answered)
    leads = sum(r[17] == "LEAD" for r in answered) / len(answered)
    assert 0.05 <= sales <= 0.11 and 0.11 <= leads <= 0.19
    support = [int(r[13]) for r in inbound if r[3] == "support-in" and r[14] == "ANSWERED"]
    assert 300 <= sum(support) / len(support) <= 390  # AHT 5-6.5 min
    kinds = Counter(r[14] for r in rows)
    assert all(kinds[k] > 0 for k in ("NO ANSWER", "BUSY", "FAILED", "CONGESTION"))


def test_if_stale_skips_a_current_file(tmp_path: Path) -> None:
    now = "2026-11-26T17:00"
    assert gen.main(["--out", str(tmp_path), "--days", "2", "--now", now]) == 0
    before = (tmp_path / "Master.csv").stat().st_mtime_ns
    assert gen.newest_cdr_day(tmp_path / "Master.csv") == date(2026, 11, 26)
    assert gen.main(["--out", str(tmp_path), "--days", "2", "--now", now, "--if-stale"]) == 0
    assert (tmp_path / "Master.csv").stat().st_mtime_ns == before
    later = "2026-11-27T09:00"
    assert gen.main(["--out", str(tmp_path), "--days", "2", "--now", later, "--if-stale"]) == 0
    assert gen.newest_cdr_day(tmp_path / "Master.csv") == date(2026, 11, 27)


def test_write_cdr_file_writes_exactly_n_rows(tmp_path: Path) -> None:
    path = tmp_path / "bench.csv"
    days = gen.write_cdr_file(path, 5000, date(2026, 11, 23))
    rows = list(csv.reader(path.open(encoding="utf-8", newline="")))
    assert len(rows) == 5000 and days == len({r[9][:10] for r in rows})


@pytest.mark.parametrize("name", ["Master.csv", "tickets.csv"])
def test_committed_samples_match_the_generator(tmp_path: Path, name: str) -> None:
    gen.main(["--end", "2026-11-26", "--now", "2026-11-26T17:00", "--out", str(tmp_path)])
    committed = ROOT / "config" / "samples" / name
    assert committed.read_bytes() == (tmp_path / name).read_bytes()


def test_closed_days_of_the_example_hours_have_no_contacts() -> None:
    # Christmas Eve and New Year's Eve are closed by date; Christmas Day (Friday
    # 2026-12-25) and Ascension Day (Thursday 2026-05-14) are Norwegian public holidays.
    for day in (date(2026, 12, 24), date(2026, 12, 31), date(2026, 12, 25), date(2026, 5, 14)):
        assert gen.is_closed(day)
        assert list(gen.iter_cdr_rows(day)) == [] and list(gen.iter_ticket_rows(day)) == []
    assert not gen.is_closed(date(2026, 12, 23)) and _rows(date(2026, 12, 23))


def test_example_hours_match_the_generator() -> None:
    import tomllib

    from collector.config import HoursSettings

    with (ROOT / "config" / "example.toml").open("rb") as f:
        hours = HoursSettings.model_validate(tomllib.load(f)["hours"])

    def spans(day: int) -> tuple[tuple[int, int], ...]:
        if gen.WEEKDAY_FACTOR[day] == 0:
            return ()
        first, last = gen.OPEN_HOURS.get(day, gen.DEFAULT_HOURS)
        return ((first * 3600, last * 3600),)

    assert hours.week == tuple(spans(day) for day in range(7))
    assert set(hours.closed) == gen.CLOSED_DATES
    assert hours.holidays == gen.HOLIDAYS_COUNTRY
