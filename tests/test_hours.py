"""Service hours: open seconds of local days (DST, closed dates, holidays) and their config."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from collector.accrual import AccrualSchedule
from collector.config import ConfigError, CostItem, HoursSettings, Settings, load_settings
from collector.costing import Sample, compute_figures
from collector.hours import OpenHours, open_hours_for
from collector.model import Rollup
from collector.snapshot import build_snapshot

OSLO = ZoneInfo("Europe/Oslo")
H = 3600



def hours(**table: object) -> OpenHours:
    settings = HoursSettings.model_validate(table)
    return open_hours_for(settings.week, settings.closed, settings.holidays, "Europe/Oslo")


WEEK_HOURS = {"mon-fri": "08:00-18:00", "sat": "09:00-13:00"}


def test_a_table_becomes_a_week() -> None:
    h = HoursSettings.model_validate(
        {"mon-fri": "08:00-18:00", "sat": "09:00-12:00,13:00-15:30", "closed": ["2026-12-24"]}
    )
    weekday = ((8 * H, 18 * H),)
    assert h.week[:5] == (weekday,) * 5
    assert h.week[5] == ((9 * H, 12 * H), (13 * H, 15 * H + 1800))
    assert h.week[6] == ()  # a day not named is closed
    assert h.closed == (date(2026, 12, 24),)
    assert h.describe() == "mon-fri 08:00-18:00, sat 09:00-12:00,13:00-15:30; 1 closed date(s)"


def test_open_seconds_of_ordinary_days() -> None:
    h = hours(**{"mon-fri": "08:00-18:00", "sat": "09:00-12:00,13:00-15:30"})
    assert h.open_seconds(date(2026, 11, 25)) == 10 * H  # Wednesday
    assert h.open_seconds(date(2026, 11, 21)) == 3 * H + 2.5 * H  # Saturday, two ranges
    assert h.open_seconds(date(2026, 11, 22)) == 0  # Sunday
    wed = datetime(2026, 11, 25, tzinfo=OSLO)
    assert not h.is_open(wed.replace(hour=7, minute=59, second=59))
    assert h.is_open(wed.replace(hour=8))
    assert h.is_open(wed.replace(hour=17, minute=59))
    assert not h.is_open(wed.replace(hour=18))  # the end is exclusive
    # 10:30 is 2.5 h after opening; at 20:00 the whole 10 h have passed.
    assert h.open_seconds_until(wed.replace(hour=10, minute=30)) == 2.5 * H
    assert h.open_seconds_until(wed.replace(hour=20)) == 10 * H
    assert h.open_seconds_until(wed.replace(hour=7)) == 0


def test_daylight_saving_days_count_real_seconds() -> None:
    # 2026-03-29 and 2026-10-25 are Sundays: 02:00 CET -> 03:00 CEST, and 03:00 CEST -> 02:00 CET.
    h = hours(sun="00:00-24:00", sat="01:00-04:00")
    assert h.open_seconds(date(2026, 3, 29)) == 23 * H
    assert h.open_seconds(date(2026, 10, 25)) == 25 * H
    assert h.open_seconds(date(2026, 11, 1)) == 24 * H
    # 01:00-04:00 across the jump: 01:00 CET (00:00 UTC) to 04:00 CEST (02:00 UTC) = 2 h;
    # across the fall back: 01:00 CEST (23:00 UTC) to 04:00 CET (03:00 UTC) = 4 h.
    spring = hours(sun="01:00-04:00")
    assert spring.open_seconds(date(2026, 3, 29)) == 2 * H
    assert spring.open_seconds(date(2026, 10, 25)) == 4 * H
    # 02:30 never happens on 29 March; opening then means opening when the clocks jumped,
    # 03:00 CEST (01:00 UTC), so 02:30-04:00 is one real hour.
    gap = hours(sun="02:30-04:00")
    assert gap.open_seconds(date(2026, 3, 29)) == 1 * H
    (start, end), = gap.intervals(date(2026, 3, 29))
    assert start == datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp()
    assert end == datetime(2026, 3, 29, 2, tzinfo=UTC).timestamp()


def test_closed_dates_and_public_holidays() -> None:
    h = hours(**{"mon-fri": "08:00-18:00", "closed": ["2026-12-24"], "holidays": "NO"})
    assert h.open_seconds(date(2026, 12, 23)) == 10 * H  # an ordinary Wednesday
    assert h.open_seconds(date(2026, 12, 24)) == 0  # closed by date (a Thursday)
    # Norwegian public holidays on weekdays: Christmas Day (Fri 25 Dec 2026), Labour Day
    # (Fri 1 May 2026), Ascension Day (Thu 14 May 2026, 39 days after Easter 5 April).
    for holiday in (date(2026, 12, 25), date(2026, 5, 1), date(2026, 5, 14)):
        assert h.open_seconds(holiday) == 0, holiday
        assert not h.is_open(datetime.combine(holiday, datetime.min.time(), OSLO).replace(hour=10))
    assert h.open_seconds(date(2026, 5, 13)) == 10 * H


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('timezone = "Europe/Oslo"\n' + text)
    return path


def test_config_file_with_hours(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, '[hours]\nmon-fri = "08:00-18:00"\nsat = "09:00-13:00"\n'
                        'closed = [2026-12-24, "2026-12-31"]\n')
    )
    assert settings.hours is not None
    assert settings.hours.closed == (date(2026, 12, 24), date(2026, 12, 31))
    assert settings.open_hours is not None
    assert settings.open_hours.open_seconds(date(2026, 12, 26)) == 4 * H  # a Saturday
    # Without [hours]: no service hours at all, open around the clock.
    assert Settings().open_hours is None
    assert load_settings(write(tmp_path, "")).hours is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('holidays = "XX"\nmon = "08:00-18:00"',
         "hours.holidays: 'XX' is not a country the holidays package knows"),
        ('monday = "08:00-18:00"', "hours: 'monday' is not a day or a range of days"),
        ('mon-fri = "8-18"', "hours: mon-fri: '8' is not a time of day as HH:MM"),
        ('mon-fri = "08:00-18:00"\nfri = "09:00-10:00"',
         "hours: fri is given twice (mon-fri and fri)"),
        ('mon = "18:00-08:00"', "hours: mon: '18:00-08:00' ends before it starts"),
        ('mon = "08:00-12:00,11:00-13:00"', "hours: mon: '08:00-12:00,11:00-13:00' has overlapping"),
        ('sat-mon = "08:00-12:00"', "hours: 'sat-mon' runs backwards"),
        ('mon = "08:00-24:30"', "hours: mon: '24:30' is not a time of day"),
        ('closed = ["2026-12-24"]', "hours: names no open hours"),
        ('mon = 8', "hours: mon: give the hours as a string"),
    ],
)
def test_bad_hours_are_one_line_naming_the_field(
    tmp_path: Path, table: str, message: str
) -> None:
    path = write(tmp_path, "[hours]\n" + table + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: {message}"), text


# -- the figures: cost per contact through the day, and a closed Sunday ---------------------
def _costs() -> list[CostItem]:
    return [
        CostItem.model_validate(c)
        for c in (
            {"name": "Salaries", "component": "salaries", "amount": 96000, "per": "month"},
            {"name": "Rent", "component": "facilities", "amount": 14000, "per": "month",
             "allocate": "contacts"},
            {"name": "Carrier", "component": "telephony", "per_minute": 0.012},
        )
    ]


def uniform_rollups(now: datetime) -> list[Rollup]:
    """One 300 s call every 6 minutes, 08:00-18:00 on weekdays of November 2026, up to now."""
    out = []
    for day in (date(2026, 11, d) for d in range(1, 31)):
        if day.weekday() >= 5 or day > now.date():
            continue
        starts = [datetime.combine(day, time(8), OSLO) + timedelta(minutes=6 * n) for n in range(100)]
        n = sum(1 for s in starts if s < now)
        if n:
            out.append(Rollup(day, "voice", "inbound", "support", "", n, n, 300.0 * n,
                              300.0 * n, 300.0 * n, 0.0))
    return out


def figure(samples: list[Sample], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) <= 1
    return found[0] if found else None


DAY = {"period": "day", "window": "current"}
SLICE = {"channel": "voice", "direction": "inbound", "queue": "support"}


def day_cost_per_contact(settings: Settings, now: datetime) -> float:
    samples = compute_figures(settings, uniform_rollups(now), now)
    value = figure(samples, "contactcenter_cost_per_contact", **DAY, **SLICE)
    assert value is not None
    return value


def test_cost_per_contact_is_steady_through_an_open_day() -> None:
    with_hours = Settings(timezone="Europe/Oslo", costs=_costs(), hours=WEEK_HOURS)
    wed = datetime(2026, 11, 25, tzinfo=OSLO)
    at_10 = day_cost_per_contact(with_hours, wed.replace(hour=10))
    at_16 = day_cost_per_contact(with_hours, wed.replace(hour=16))
    # The month is open 226 h (21 weekdays x 10 h + 4 Saturdays x 4 h); 110000 shared = 486.73
    # an open hour. At 10:00, 2 h = 973.45 over 20 calls (48.67) + 300 s x 0.012/60 (0.06).
    # At 16:00, 8 h over 80 calls: the same 48.73.
    assert at_10 == pytest.approx(110000 * 2 / 226 / 20 + 0.06)
    assert abs(at_16 - at_10) / at_10 < 0.10
    # Open around the clock (no [hours]) the same calls give 2.5 times more at 10:00:
    # 110000/30 x 10/24 / 20 = 76.39 against 110000/30 x 16/24 / 80 = 30.56.
    around = Settings(timezone="Europe/Oslo", costs=_costs())
    assert day_cost_per_contact(around, wed.replace(hour=10)) == pytest.approx(76.39 + 0.06, abs=0.01)
    assert day_cost_per_contact(around, wed.replace(hour=16)) == pytest.approx(30.56 + 0.06, abs=0.01)


def test_a_closed_sunday_carries_no_shared_and_no_unallocated_cost() -> None:
    settings = Settings(timezone="Europe/Oslo", costs=_costs(), hours=WEEK_HOURS)
    sunday = datetime(2026, 11, 22, 12, tzinfo=OSLO)
    samples = compute_figures(settings, uniform_rollups(sunday), sunday)
    for component in ("salaries", "facilities", "telephony"):
        assert figure(samples, "contactcenter_cost_unallocated", **DAY, component=component) == 0
    assert figure(samples, "contactcenter_cost", **DAY, **SLICE, component="salaries") is None
    # Monday: the previous day (the Sunday) is still empty, the month keeps its cost.
    monday = datetime(2026, 11, 23, 12, tzinfo=OSLO)
    samples = compute_figures(settings, uniform_rollups(monday), monday)
    previous_day = {"period": "day", "window": "previous"}
    assert figure(samples, "contactcenter_cost_unallocated", **previous_day,
                  component="salaries") == 0
    # Without [hours] the Sunday's calendar share (96000/30 = 3200) is unallocated.
    around = Settings(timezone="Europe/Oslo", costs=_costs())
    samples = compute_figures(around, uniform_rollups(monday), monday)
    assert figure(samples, "contactcenter_cost_unallocated", **previous_day,
                  component="salaries") == pytest.approx(3200)
    # A complete month still carries exactly its amounts (December 1st: November previous).
    december = datetime(2026, 12, 1, 9, tzinfo=OSLO)
    samples = compute_figures(settings, uniform_rollups(datetime(2026, 11, 30, 23, tzinfo=OSLO)),
                              december)
    month = {"period": "month", "window": "previous", **SLICE}
    assert figure(samples, "contactcenter_cost", **month, component="salaries") == pytest.approx(96000)
    assert figure(samples, "contactcenter_cost", **month, component="facilities") == pytest.approx(14000)


INFO = {"currency": "USD", "timezone": "Europe/Oslo", "version": "0"}


def test_contactcenter_open_is_exported_only_with_hours() -> None:
    settings = Settings(timezone="Europe/Oslo", costs=_costs(), hours=WEEK_HOURS)
    wed = datetime(2026, 11, 25, tzinfo=OSLO)
    for moment, expected in (
        (wed.replace(hour=10), 1.0),
        (wed.replace(hour=7, minute=59), 0.0),
        (wed.replace(hour=18), 0.0),  # closing time is outside
        (datetime(2026, 11, 28, 12, 59, tzinfo=OSLO), 1.0),  # Saturday 09:00-13:00
        (datetime(2026, 11, 22, 12, tzinfo=OSLO), 0.0),  # Sunday
    ):
        samples = compute_figures(settings, [], moment)
        assert figure(samples, "contactcenter_open") == expected, moment
    body = build_snapshot(compute_figures(settings, [], wed.replace(hour=10)), INFO, 0, 0).body
    assert b"# TYPE contactcenter_open gauge\ncontactcenter_open 1.0\n" in body
    assert b"# HELP contactcenter_open 1 inside the configured service hours" in body
    # Open around the clock: no sample and no HELP or TYPE line either.
    around = Settings(timezone="Europe/Oslo", costs=_costs())
    samples = compute_figures(around, [], wed.replace(hour=10))
    assert figure(samples, "contactcenter_open") is None
    assert b"contactcenter_open" not in build_snapshot(samples, INFO, 0, 0).body


# -- properties: open seconds against a brute-force count, whole months, monotone days ------
# Range boundaries on a 15-minute grid, none at or inside 02:00-03:00 (the hour daylight
# saving skips or repeats in Oslo, where "a start is its first occurrence and an end its
# last" differs from counting wall-clock minutes on purpose). 02:00 itself is out too: on
# the day the clocks go back it is read twice, so an end at 02:00 is its second reading
# (01:00 UTC) and the hour in between is open, where a wall-clock count stops at the first
# (hypothesis found `sun = "00:00-02:00"` on 2026-10-25).
_GRID = [m for m in range(0, 24 * 60 + 1, 15) if not 120 <= m < 180]


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def week_tables(draw: st.DrawFn) -> dict[str, str]:
    table: dict[str, str] = {}
    for name in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        bounds = sorted(draw(st.sets(st.sampled_from(_GRID), max_size=4)))
        if len(bounds) % 2:
            bounds = bounds[:-1]
        if bounds:
            table[name] = ",".join(
                f"{_clock(a)}-{_clock(b)}" for a, b in zip(bounds[::2], bounds[1::2], strict=True)
            )
    if not table:
        table["wed"] = "09:00-10:00"
    return table


_DAYS = st.one_of(
    st.sampled_from([date(2026, 3, 29), date(2026, 10, 25), date(2026, 3, 30)]),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)),
)


@given(table=week_tables(), day=_DAYS)
@examples(max_examples=60, deadline=None)
def test_open_seconds_match_a_minute_by_minute_count(table: dict[str, str], day: date) -> None:
    h = hours(**table)
    week = HoursSettings.model_validate(table).week
    start = datetime.combine(day, time(), OSLO).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), OSLO).astimezone(UTC)
    open_minutes = 0
    moment = start
    while moment < end:
        wall = moment.astimezone(OSLO)
        of_day = wall.hour * 3600 + wall.minute * 60
        open_minutes += any(a <= of_day < b for a, b in week[day.weekday()])
        assert h.is_open(moment) == any(a <= of_day < b for a, b in week[day.weekday()])
        moment += timedelta(minutes=1)
    assert h.open_seconds(day) == open_minutes * 60


@given(table=week_tables(), month=st.integers(1, 12), closed=st.sets(st.integers(1, 28)))
@examples(max_examples=40, deadline=None)
def test_a_whole_month_carries_its_amount_and_days_accrue_monotonically(
    table: dict[str, str], month: int, closed: set[int]
) -> None:
    table = {**table, "closed": [date(2026, month, d).isoformat() for d in sorted(closed)]}
    open_hours = Settings(timezone="Europe/Oslo", hours=table).open_hours
    rent = CostItem.model_validate(
        {"name": "Rent", "component": "facilities", "amount": 30000, "per": "month"}
    )
    schedule = AccrualSchedule(rent, date(2025, 1, 1), date(2026, 12, 31), open_hours)
    first = date(2026, month, 1)
    last = date(2026 + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    # Open or not (then calendar time), the month carries exactly its amount.
    assert schedule.accrued(first, last) == pytest.approx(30000, abs=1e-6)
    for day in (first + timedelta(days=n) for n in range(0, (last - first).days + 1, 7)):
        whole = schedule.accrued(day, day)
        steps = [schedule.accrued(day, day, f / 48) for f in range(49)]
        assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == pytest.approx(whole)
