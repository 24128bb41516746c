"""Periods and windows: ISO weeks, quarters, the turn of the year and daylight-saving days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from collector.periods import (
    ReportWindow,
    add_months,
    day_length_seconds,
    days_in_period,
    elapsed_day_fraction,
    first_day_needed,
    local_midnight,
    period_start,
    report_windows,
)

OSLO = ZoneInfo("Europe/Oslo")


def windows_by_name(now: datetime) -> dict[tuple[str, str], ReportWindow]:
    return {(w.period, w.window): w for w in report_windows(now, OSLO)}


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        # 2026-05-14 is a Thursday in ISO week 20; its Monday is 2026-05-11.
        ("day", date(2026, 5, 14)),
        ("week", date(2026, 5, 11)),
        ("month", date(2026, 5, 1)),
        ("quarter", date(2026, 4, 1)),  # May is in Q2, which starts in April
        ("year", date(2026, 1, 1)),
    ],
)
def test_period_start(kind: str, expected: date) -> None:
    assert period_start(kind, date(2026, 5, 14)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "day", "expected"),
    [
        ("day", date(2026, 3, 29), 1),  # a calendar day, even the 23 h one
        ("week", date(2026, 12, 31), 7),
        ("month", date(2026, 2, 10), 28),
        ("month", date(2028, 2, 10), 29),  # leap year
        ("quarter", date(2026, 2, 10), 90),  # Q1 2026: 31 + 28 + 31
        ("quarter", date(2026, 8, 10), 92),  # Q3: 31 + 31 + 30
        ("year", date(2026, 6, 1), 365),
        ("year", date(2028, 6, 1), 366),
    ],
)
def test_days_in_period(kind: str, day: date, expected: int) -> None:
    assert days_in_period(kind, day) == expected  # type: ignore[arg-type]


def test_add_months_clips_to_the_month_end() -> None:
    # 31 January + 1 month: February 2026 has 28 days, so 28 February.
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    # 15 November + 3 months crosses the year: 15 February of the next year.
    assert add_months(date(2026, 11, 15), 3) == date(2027, 2, 15)


def test_day_lengths_across_daylight_saving() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST, 23 h = 82800 s.
    assert day_length_seconds(date(2026, 3, 29), OSLO) == 82800
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET, 25 h = 90000 s.
    assert day_length_seconds(date(2026, 10, 25), OSLO) == 90000
    # An ordinary day: 24 h = 86400 s.
    assert day_length_seconds(date(2026, 10, 24), OSLO) == 86400


def test_local_midnight_is_in_utc() -> None:
    # Midnight CET (UTC+1) on 2026-03-29 is 23:00 UTC the day before.
    assert local_midnight(date(2026, 3, 29), OSLO) == datetime(2026, 3, 28, 23, tzinfo=UTC)
    # Midnight CEST (UTC+2) on 2026-10-25 is 22:00 UTC the day before.
    assert local_midnight(date(2026, 10, 25), OSLO) == datetime(2026, 10, 24, 22, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now_utc", "expected"),
    [
        # Ordinary day: 12:00 CEST = 10:00 UTC on 2026-06-10, half of 24 h.
        (datetime(2026, 6, 10, 10, tzinfo=UTC), 12 / 24),
        # 23 h day: 12:00 CEST = 10:00 UTC; midnight was 23:00 UTC, so 11 h of 23 h.
        (datetime(2026, 3, 29, 10, tzinfo=UTC), 11 / 23),
        # 23 h day: 03:00 CEST = 01:00 UTC, 2 h after midnight (02:00-03:00 never happened).
        (datetime(2026, 3, 29, 1, tzinfo=UTC), 2 / 23),
        # 25 h day: 12:00 CET = 11:00 UTC; midnight was 22:00 UTC, so 13 h of 25 h.
        (datetime(2026, 10, 25, 11, tzinfo=UTC), 13 / 25),
        # 25 h day, first 02:30 (CEST) = 00:30 UTC: 2.5 h of 25 h.
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 2.5 / 25),
        # 25 h day, second 02:30 (CET) = 01:30 UTC: 3.5 h of 25 h.
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), 3.5 / 25),
        # Exactly local midnight: nothing has elapsed.
        (datetime(2026, 10, 24, 22, tzinfo=UTC), 0.0),
    ],
)
def test_elapsed_day_fraction(now_utc: datetime, expected: float) -> None:
    assert elapsed_day_fraction(now_utc, OSLO) == pytest.approx(expected)


def test_first_day_needed_is_start_of_previous_year() -> None:
    assert first_day_needed(datetime(2026, 3, 15, 9, tzinfo=OSLO)) == date(2025, 1, 1)
    assert first_day_needed(datetime(2027, 1, 1, 0, 30, tzinfo=OSLO)) == date(2026, 1, 1)


def test_windows_on_an_ordinary_day() -> None:
    # Thursday 2026-05-14 12:00 local.
    w = windows_by_name(datetime(2026, 5, 14, 12, tzinfo=OSLO))
    assert len(w) == 10  # 5 period kinds x 2 windows
    assert w["day", "current"] == ReportWindow(
        "day", "current", date(2026, 5, 14), date(2026, 5, 14), 0.5
    )
    assert w["day", "previous"][2:] == (date(2026, 5, 13), date(2026, 5, 13), 1.0)
    assert w["week", "current"][2:4] == (date(2026, 5, 11), date(2026, 5, 14))
    assert w["week", "previous"][2:4] == (date(2026, 5, 4), date(2026, 5, 10))
    assert w["month", "previous"][2:4] == (date(2026, 4, 1), date(2026, 4, 30))
    # Previous quarter of Q2 is Q1: 1 January to 31 March.
    assert w["quarter", "previous"][2:4] == (date(2026, 1, 1), date(2026, 3, 31))
    assert w["year", "current"][2:4] == (date(2026, 1, 1), date(2026, 5, 14))


def test_windows_at_the_turn_of_the_year() -> None:
    # Saturday 2027-01-02 12:00 local is in ISO week 53 of 2026 (Monday 2026-12-28).
    w = windows_by_name(datetime(2027, 1, 2, 12, tzinfo=OSLO))
    assert w["week", "current"][2:4] == (date(2026, 12, 28), date(2027, 1, 2))
    assert w["week", "previous"][2:4] == (date(2026, 12, 21), date(2026, 12, 27))
    assert w["day", "previous"][2:4] == (date(2027, 1, 1), date(2027, 1, 1))
    assert w["month", "current"][2:4] == (date(2027, 1, 1), date(2027, 1, 2))
    assert w["month", "previous"][2:4] == (date(2026, 12, 1), date(2026, 12, 31))
    assert w["quarter", "current"][2:4] == (date(2027, 1, 1), date(2027, 1, 2))
    assert w["quarter", "previous"][2:4] == (date(2026, 10, 1), date(2026, 12, 31))
    assert w["year", "current"][2:4] == (date(2027, 1, 1), date(2027, 1, 2))
    assert w["year", "previous"][2:4] == (date(2026, 1, 1), date(2026, 12, 31))
    # Every window lies inside what first_day_needed asks the store for.
    needed = first_day_needed(datetime(2027, 1, 2, 12, tzinfo=OSLO))
    assert all(x.first >= needed for x in w.values())


def test_windows_convert_a_utc_now_to_local() -> None:
    # 2026-12-31 23:30 UTC is 2027-01-01 00:30 CET: already the new year, 0.5 h of 24 h in.
    w = windows_by_name(datetime(2026, 12, 31, 23, 30, tzinfo=UTC))
    assert w["year", "current"].first == date(2027, 1, 1)
    assert w["day", "current"].last_day_fraction == pytest.approx(0.5 / 24)
