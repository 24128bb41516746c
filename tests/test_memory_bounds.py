"""Issue 10 item 14: what a long-running exporter keeps in memory is bounded, whatever the input.

bench/soak.py measures the curve; these tests pin the bounds it found: SQLite's page cache
(which filled for the first half hour of the soak) and the store's per-15-minute time-zone
caches (one entry per quarter hour that any contact started in, so an export spread over
years, or with garbage dates, grew them without end).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from collector import store as store_module
from collector.store import DayMapper, SqliteStore

OSLO = ZoneInfo("Europe/Oslo")
# Read with defaults, so that on a store without the bounds the tests fail on the numbers.
DAY_CACHE_LIMIT = getattr(store_module, "DAY_CACHE_LIMIT", 10_000)
SQLITE_CACHE_KIB = getattr(store_module, "SQLITE_CACHE_KIB", 2048)


def test_the_day_cache_stays_bounded_over_years_of_quarter_hours() -> None:
    mapper = DayMapper(OSLO)
    first = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
    buckets = 3 * 365 * 96  # three years of quarter hours: 105,120 distinct buckets
    for k in range(buckets):
        mapper.day(first + k * 900)
    # Before the bound both dicts held one entry per quarter hour seen: 105,120 each.
    assert len(mapper._offsets) <= DAY_CACHE_LIMIT
    assert len(mapper._days) <= DAY_CACHE_LIMIT
    assert DAY_CACHE_LIMIT <= 10_000  # about a quarter of a year of quarter hours


def test_the_day_cache_gives_the_same_days_after_it_is_cleared() -> None:
    mapper = DayMapper(OSLO)
    # 2026-03-29 00:30 UTC is 01:30 CET (day 29); 2026-10-24 22:30 UTC is 00:30 CEST on the
    # 25th; 2026-10-25 22:30 UTC is 23:30 CET, still the 25th (the clocks went back at 01:00).
    cases = {
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC): 29,
        datetime(2026, 10, 24, 22, 30, tzinfo=UTC): 25,
        datetime(2026, 10, 25, 22, 30, tzinfo=UTC): 25,
    }
    for round_ in range(2):
        for moment, day in cases.items():
            assert datetime.fromordinal(mapper.day(moment.timestamp())).day == day, round_
        # Fill the cache past its limit with other quarter hours, so the next round recomputes.
        base = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
        for k in range(DAY_CACHE_LIMIT + 10):
            mapper.day(base + k * 900)


def test_sqlite_page_cache_is_an_explicit_bound_on_both_connections(tmp_path: Path) -> None:
    writer = SqliteStore(tmp_path / "s.db", OSLO)
    reader = SqliteStore(tmp_path / "s.db", OSLO, readonly=True)
    try:
        # A negative cache_size is KiB (https://sqlite.org/pragma.html#pragma_cache_size).
        expected = -SQLITE_CACHE_KIB
        for store in (writer, reader):
            assert store._db.execute("PRAGMA cache_size").fetchone()[0] == expected
        assert 0 < SQLITE_CACHE_KIB <= 4096
        # SQLite's own default differs (-2000 in stock builds), so this is the setting, not luck.
        with sqlite3.connect(":memory:") as plain:
            assert plain.execute("PRAGMA cache_size").fetchone()[0] != expected
    finally:
        reader.close()
        writer.close()
