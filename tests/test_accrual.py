"""Accrual of shared costs: each `per` kind, seats, amortization, effective dates, DST days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.accrual import AccrualSchedule, daily_rate
from collector.config import CostItem, Settings
from collector.costing import Sample, compute_figures

OSLO = ZoneInfo("Europe/Oslo")



def item(**fields: Any) -> CostItem:
    fields.setdefault("name", "item")
    fields.setdefault("component", "salaries")
    return CostItem.model_validate(fields)


def accrued(cost: CostItem, first: date, last: date, fraction: float = 1.0) -> float:
    return AccrualSchedule(cost, date(2025, 1, 1), date(2029, 12, 31)).accrued(
        first, last, fraction
    )


def test_per_month_follows_each_months_length() -> None:
    salaries = item(amount=96000, per="month")
    # October has 31 days: 96000/31 = 3096.77 a day; 1..10 October = 10 x 3096.77 = 30967.74.
    assert daily_rate(salaries, date(2026, 10, 5)) == pytest.approx(3096.774194)
    assert accrued(salaries, date(2026, 10, 1), date(2026, 10, 10)) == pytest.approx(
        30967.74, abs=0.01
    )
    # February 2026 has 28 days: 96000/28 = 3428.57 a day.
    assert daily_rate(salaries, date(2026, 2, 5)) == pytest.approx(3428.571429)
    # A complete month carries exactly its amount: 31 x 96000/31 and 28 x 96000/28.
    assert accrued(salaries, date(2026, 10, 1), date(2026, 10, 31)) == pytest.approx(
        96000, abs=1e-9
    )
    assert accrued(salaries, date(2026, 2, 1), date(2026, 2, 28)) == pytest.approx(96000, abs=1e-9)
    # A whole year of it: 12 x 96000 = 1152000.
    assert accrued(salaries, date(2026, 1, 1), date(2026, 12, 31)) == pytest.approx(1152000)


def test_per_week_is_a_seventh_a_day() -> None:
    cleaning = item(amount=700, per="week")
    # 700/7 = 100 a day, any day; Wednesday to Friday = 3 x 100 = 300.
    assert daily_rate(cleaning, date(2026, 12, 31)) == pytest.approx(100)
    assert accrued(cleaning, date(2026, 12, 30), date(2027, 1, 1)) == pytest.approx(300)


def test_per_quarter_and_per_year_spread_over_their_days() -> None:
    # Q1 2026 has 90 days: 9000/90 = 100 a day; January = 31 x 100 = 3100.
    support = item(amount=9000, per="quarter")
    assert accrued(support, date(2026, 1, 1), date(2026, 1, 31)) == pytest.approx(3100)
    # Q3 2026 has 92 days: 9000/92 = 97.83 a day; the whole quarter = 9000.
    assert daily_rate(support, date(2026, 8, 1)) == pytest.approx(97.826087)
    assert accrued(support, date(2026, 7, 1), date(2026, 9, 30)) == pytest.approx(9000)
    # 2026 has 365 days: 36500/365 = 100 a day; 2028 has 366: 36500/366 = 99.73 a day.
    software = item(amount=36500, per="year", component="software")
    assert daily_rate(software, date(2026, 6, 1)) == pytest.approx(100)
    assert daily_rate(software, date(2028, 6, 1)) == pytest.approx(99.726776)
    assert accrued(software, date(2028, 1, 1), date(2028, 12, 31)) == pytest.approx(36500)


def test_per_day_and_seats() -> None:
    # per day: the amount itself; 50 x 3 seats = 150 a day; 4 days = 600.
    temps = item(amount=50, per="day", seats=3)
    assert daily_rate(temps, date(2026, 3, 29)) == pytest.approx(150)  # even on the 23 h day
    assert accrued(temps, date(2026, 3, 28), date(2026, 3, 31)) == pytest.approx(600)
    # Licences: 39 x 40 seats = 1560 a month; June has 30 days, 1560/30 = 52 a day.
    licences = item(amount=39, per="month", seats=40, component="licences")
    assert daily_rate(licences, date(2026, 6, 10)) == pytest.approx(52)
    assert accrued(licences, date(2026, 6, 1), date(2026, 6, 30)) == pytest.approx(1560)


def test_amortized_purchase_from_the_first_of_a_month() -> None:
    # 54000 over 36 months from 2026-01-01: 1500 a month, January to December 2028.
    hardware = item(
        amount=54000, amortize_months=36, **{"from": "2026-01-01"}, component="hardware"
    )
    # Before `from`: nothing. December 2025 = 0.
    assert accrued(hardware, date(2025, 12, 1), date(2025, 12, 31)) == 0
    # January 2026: 1500/31 = 48.39 a day, 1500 for the month.
    assert daily_rate(hardware, date(2026, 1, 20)) == pytest.approx(48.387097)
    assert accrued(hardware, date(2026, 1, 1), date(2026, 1, 31)) == pytest.approx(1500)
    # The 36th month, December 2028, still carries 1500; January 2029 carries nothing.
    assert accrued(hardware, date(2028, 12, 1), date(2028, 12, 31)) == pytest.approx(1500)
    assert accrued(hardware, date(2029, 1, 1), date(2029, 1, 31)) == 0
    # In all: 36 x 1500 = 54000.
    assert accrued(hardware, date(2025, 1, 1), date(2029, 12, 31)) == pytest.approx(54000)


def test_amortized_purchase_from_mid_month() -> None:
    # 12000 over 12 months from 2026-01-15: 1000 a month, accruing 2026-01-15..2027-01-14.
    desks = item(amount=12000, amortize_months=12, **{"from": "2026-01-15"}, component="hardware")
    # January 2026 is partly before `from`: 1..14 carry nothing, 15..31 (17 days) carry
    # 17 x 1000/31 = 548.39.
    assert accrued(desks, date(2026, 1, 1), date(2026, 1, 14)) == 0
    assert accrued(desks, date(2026, 1, 1), date(2026, 1, 31)) == pytest.approx(548.387097)
    # February 2026 is whole: 1000.
    assert accrued(desks, date(2026, 2, 1), date(2026, 2, 28)) == pytest.approx(1000)
    # January 2027: 1..14 (14 days) x 1000/31 = 451.61; from the 15th nothing.
    assert accrued(desks, date(2027, 1, 1), date(2027, 1, 31)) == pytest.approx(451.612903)
    assert daily_rate(desks, date(2027, 1, 15)) == 0
    # In all: 548.39 + 11 x 1000 + 451.61 = 12000 (both partial months are 31-day Januaries).
    assert accrued(desks, date(2025, 1, 1), date(2029, 12, 31)) == pytest.approx(12000)


def test_effective_dates_mid_month() -> None:
    # Pay rise 4000 a month from 2026-07-15 until 2026-09-10, both inclusive.
    rise = item(amount=4000, per="month", **{"from": "2026-07-15"}, until=date(2026, 9, 10))
    # July: days 15..31 = 17 days x 4000/31 = 2193.55.
    assert accrued(rise, date(2026, 7, 1), date(2026, 7, 31)) == pytest.approx(2193.548387)
    # August is whole: 4000.
    assert accrued(rise, date(2026, 8, 1), date(2026, 8, 31)) == pytest.approx(4000)
    # September: days 1..10 = 10 x 4000/30 = 1333.33; the 11th carries nothing.
    assert accrued(rise, date(2026, 9, 1), date(2026, 9, 30)) == pytest.approx(1333.333333)
    assert daily_rate(rise, date(2026, 9, 11)) == 0
    assert daily_rate(rise, date(2026, 7, 14)) == 0


def test_partial_last_day() -> None:
    rent = item(amount=31000, per="month", component="facilities")
    # October: 31000/31 = 1000 a day. 1..9 October whole plus 0.25 of the 10th = 9250.
    assert accrued(rent, date(2026, 10, 1), date(2026, 10, 10), 0.25) == pytest.approx(9250)
    # Usage items never accrue over days.
    assert daily_rate(item(per_minute=0.012, component="telephony"), date(2026, 10, 1)) == 0


def unallocated(samples: list[Sample], period: str, window: str) -> float:
    (value,) = [
        s.value
        for s in samples
        if s.name == "contactcenter_cost_unallocated"
        and s.labels == {"period": period, "window": window, "component": "facilities"}
    ]
    return value


def rent_settings(amount: float) -> Settings:
    rent = item(amount=amount, per="month", component="facilities")
    return Settings(timezone="Europe/Oslo", costs=[rent])


def test_current_window_on_an_ordinary_day() -> None:
    # Rent 31000 in October = 1000 a day. Monday 2026-10-26 12:00 CET: half a 24 h day = 500.
    samples = compute_figures(rent_settings(31000), [], datetime(2026, 10, 26, 12, tzinfo=OSLO))
    assert unallocated(samples, "day", "current") == pytest.approx(500)
    # Month to date: 25 whole days x 1000 + 500 = 25500.
    assert unallocated(samples, "month", "current") == pytest.approx(25500)
    # Yesterday was the 25 h day, but a whole day is still one day's share: 1000.
    assert unallocated(samples, "day", "previous") == pytest.approx(1000)


def test_current_window_on_the_23_hour_day() -> None:
    # Rent 31000 in March = 1000 a day. 2026-03-29 12:00 CEST: 02:00-03:00 never happened,
    # so 11 h of a 23 h day have passed: 11/23 x 1000 = 478.26.
    samples = compute_figures(rent_settings(31000), [], datetime(2026, 3, 29, 12, tzinfo=OSLO))
    assert unallocated(samples, "day", "current") == pytest.approx(478.260870)
    # Month to date: 28 x 1000 + 478.26 = 28478.26.
    assert unallocated(samples, "month", "current") == pytest.approx(28478.260870)
    # Week to date (ISO week from Monday 2026-03-23): 6 x 1000 + 478.26 = 6478.26.
    assert unallocated(samples, "week", "current") == pytest.approx(6478.260870)


def test_current_window_on_the_25_hour_day() -> None:
    # 2026-10-25 12:00 CET = 11:00 UTC; midnight was 22:00 UTC: 13 h of 25 h.
    # 1000 a day x 13/25 = 520.
    now = datetime(2026, 10, 25, 11, tzinfo=UTC)
    samples = compute_figures(rent_settings(31000), [], now)
    assert unallocated(samples, "day", "current") == pytest.approx(520)
    # The second 02:30 (CET, 01:30 UTC) is 3.5 h in: 3.5/25 x 1000 = 140.
    samples = compute_figures(rent_settings(31000), [], datetime(2026, 10, 25, 1, 30, tzinfo=UTC))
    assert unallocated(samples, "day", "current") == pytest.approx(140)


def test_complete_periods_carry_whole_amounts() -> None:
    # On 2027-01-02 the previous month is December (31000 rent), the previous quarter Q4
    # (3 x 31000 = 93000) and the previous year 2026 (12 x 31000 = 372000).
    samples = compute_figures(rent_settings(31000), [], datetime(2027, 1, 2, 12, tzinfo=OSLO))
    assert unallocated(samples, "month", "previous") == pytest.approx(31000)
    assert unallocated(samples, "quarter", "previous") == pytest.approx(93000)
    assert unallocated(samples, "year", "previous") == pytest.approx(372000)
    # Previous ISO week 2026-12-21..27, all December: 7 x 1000 = 7000.
    assert unallocated(samples, "week", "previous") == pytest.approx(7000)
    # Current ISO week 2026-12-28 .. 2027-01-02 12:00: 4 December days (28..31) at 1000,
    # 1 January whole at 1000 (31000/31) and half of the 2nd at 500: 5500.
    assert unallocated(samples, "week", "current") == pytest.approx(5500)


# -- service hours --------------------------------------------------------------------------
# November 2026: Sundays 1, 8, 15, 22, 29; Saturdays 7, 14, 21, 28; 21 weekdays. With
# mon-fri 08:00-18:00 and sat 09:00-13:00 the month is open 21 x 10 h + 4 x 4 h = 226 h.
WEEK_HOURS = {"mon-fri": "08:00-18:00", "sat": "09:00-13:00"}


def hours_settings(*costs: CostItem, **table: object) -> Settings:
    return Settings(timezone="Europe/Oslo", costs=list(costs), hours=table or WEEK_HOURS)


def open_accrued(cost: CostItem, first: date, last: date, fraction: float = 1.0,
                 **table: object) -> float:
    open_hours = hours_settings(**table).open_hours
    schedule = AccrualSchedule(cost, date(2025, 1, 1), date(2027, 12, 31), open_hours)
    return schedule.accrued(first, last, fraction)


def test_a_month_is_spread_over_its_open_seconds() -> None:
    # 22600 over 226 open hours = 100 an open hour: a weekday 1000, a Saturday 400, Sunday 0.
    rent = item(amount=22600, per="month", component="facilities")
    assert open_accrued(rent, date(2026, 11, 25), date(2026, 11, 25)) == pytest.approx(1000)
    assert open_accrued(rent, date(2026, 11, 21), date(2026, 11, 21)) == pytest.approx(400)
    assert open_accrued(rent, date(2026, 11, 22), date(2026, 11, 22)) == 0
    # The complete month carries exactly its amount.
    assert open_accrued(rent, date(2026, 11, 1), date(2026, 11, 30)) == pytest.approx(
        22600, abs=1e-9
    )
    # Within a day only open seconds count: at 10:00 (a calendar fraction of 10/24) two of
    # ten open hours have passed = 200; at 06:00 nothing; at 20:00 the whole 1000.
    wed = date(2026, 11, 25)
    assert open_accrued(rent, wed, wed, 10 / 24) == pytest.approx(200)
    assert open_accrued(rent, wed, wed, 6 / 24) == 0
    assert open_accrued(rent, wed, wed, 20 / 24) == pytest.approx(1000)
    # Month to 25 Nov 10:00: 17 weekdays (2-6, 9-13, 16-20, 23-24) x 1000 + 3 Saturdays
    # x 400 + 200 = 18400.
    assert open_accrued(rent, date(2026, 11, 1), wed, 10 / 24) == pytest.approx(18400)


def test_open_time_within_effective_dates_and_for_other_kinds() -> None:
    # From Monday 16 November: weekdays 16-20, 23-27, 30 (11 x 1000) + Saturdays 21, 28
    # (2 x 400) = 11800 of the month's 22600.
    rise = item(amount=22600, per="month", **{"from": "2026-11-16"})
    assert open_accrued(rise, date(2026, 11, 1), date(2026, 11, 30)) == pytest.approx(11800)
    # per week: the week of 23-29 Nov is open 5 x 10 + 4 = 54 h; 5400 = 100 an hour.
    cleaning = item(amount=5400, per="week")
    assert open_accrued(cleaning, date(2026, 11, 28), date(2026, 11, 28)) == pytest.approx(400)
    assert open_accrued(cleaning, date(2026, 11, 23), date(2026, 11, 29)) == pytest.approx(5400)
    # per day is per open day: 150 on a weekday or a Saturday, half of it by 13:00 on a
    # weekday (5 of 10 h) and by 11:00 on a Saturday (2 of 4 h); nothing on a Sunday.
    temps = item(amount=150, per="day")
    assert open_accrued(temps, date(2026, 11, 25), date(2026, 11, 25), 13 / 24) == 75
    assert open_accrued(temps, date(2026, 11, 21), date(2026, 11, 21), 11 / 24) == 75
    assert open_accrued(temps, date(2026, 11, 22), date(2026, 11, 22)) == 0
    # Amortized: 1500 of November over its 226 h; a weekday 1500 x 10/226 = 66.37.
    hardware = item(amount=54000, amortize_months=36, **{"from": "2026-01-01"})
    assert open_accrued(hardware, date(2026, 11, 2), date(2026, 11, 2)) == pytest.approx(
        66.371681
    )
    assert open_accrued(hardware, date(2026, 11, 1), date(2026, 11, 30)) == pytest.approx(1500)


def test_a_period_without_open_seconds_falls_back_to_calendar_time() -> None:
    # Every day of February 2026 closed: the month keeps its calendar rate, 28000/28 =
    # 1000 a day, half of it at noon; March is open again and spread over open hours.
    february = [f"2026-02-{d:02d}" for d in range(1, 29)]
    rent = item(amount=28000, per="month", component="facilities")
    table = {**WEEK_HOURS, "closed": february}
    assert open_accrued(rent, date(2026, 2, 1), date(2026, 2, 28), **table) == pytest.approx(28000)
    assert open_accrued(rent, date(2026, 2, 8), date(2026, 2, 8), 0.5, **table) == pytest.approx(500)
    assert open_accrued(rent, date(2026, 3, 1), date(2026, 3, 1), **table) == 0  # a Sunday


def test_open_seconds_on_the_23_hour_day() -> None:
    # Open around the clock by [hours]: a month is spread over its real seconds. March 2026
    # has 31 x 24 - 1 = 743 h; 74300 = 100 an hour, so 29 March (23 h) carries 2300 and at
    # 12:00 CEST (11 h after midnight, 11/23 of the day) 1100.
    rent = item(amount=74300, per="month", component="facilities")
    table = {"mon-sun": "00:00-24:00"}
    day = date(2026, 3, 29)
    assert open_accrued(rent, day, day, **table) == pytest.approx(2300)
    assert open_accrued(rent, day, day, 11 / 23, **table) == pytest.approx(1100)
    assert open_accrued(rent, date(2026, 3, 1), date(2026, 3, 31), **table) == pytest.approx(74300)
