"""Projection to the end of the period (collector.projection), worked out by hand.

The week of Monday 2026-11-23 is the current one; the profile is the four complete weeks
before it: 26 Oct - 22 Nov (Mondays 26 Oct, 2, 9, 16 Nov; Sundays 1, 8, 15, 22 Nov).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from collector.config import CostItem, Settings
from collector.metrics import Sample
from collector.model import Arrival, Rollup
from collector.projection import (
    moment_at_open_share,
    open_elapsed_ratio,
    profile_weeks,
    project_figures,
)

VOICE = ("voice", "inbound", "support")
PROFILE_MONDAYS = [date(2026, 10, 26) + timedelta(days=7 * n) for n in range(4)]


def cost(**fields: Any) -> CostItem:
    fields.setdefault("name", fields["component"])
    return CostItem.model_validate(fields)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def arrival(day: date, hour: int, handled: int) -> Arrival:
    return Arrival(at(day, hour).timestamp(), *VOICE, handled)


def rollup(day: date, handled: int, handle: float, billable: float) -> Rollup:
    return Rollup(day, *VOICE, "", handled, handled, handle, handle, billable, 0.0)


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) <= 1
    return found[0] if found else None


def slice_labels(period: str) -> dict[str, str]:
    return {"period": period, "window": "current", "channel": "voice",
            "direction": "inbound", "queue": "support"}


def test_profile_weeks_are_the_complete_weeks_before_now() -> None:
    assert profile_weeks(at(date(2026, 11, 25), 12), UTC, 4) == (
        date(2026, 10, 26), date(2026, 11, 22))


def test_projection_from_the_weekday_and_hour_profile_without_hours() -> None:
    settings = Settings(costs=[cost(component="facilities", amount=700, per="week"),
                               cost(component="telephony", per_minute=0.5)])
    # Every profile Monday: 2 handled contacts at 10:00, 600 s handle, 240 s billable.
    arrivals = [arrival(day, 10, 2) for day in PROFILE_MONDAYS]
    rollups = [rollup(day, 2, 600, 240) for day in PROFILE_MONDAYS]
    now = at(date(2026, 11, 23), 9)
    samples = project_figures(settings, rollups, arrivals, now, weeks=4)
    week = slice_labels("week")
    # Monday 10-11 has 8 contacts over 4 x 3600 s; the hour is still to come this week:
    # 8 / 14400 x 3600 = 2 contacts. None so far this week.
    assert value(samples, "contactcenter_contacts_projected", **week) == pytest.approx(2.0)
    # Rent 700 for the whole week + usage at the profile's rate: 240 s x 0.5/min = 2.0 per
    # 2 contacts = 1.0 each -> 702; per contact 351.
    assert value(samples, "contactcenter_cost_projected", **week) == pytest.approx(702.0)
    assert value(samples, "contactcenter_cost_per_contact_projected", **week) == pytest.approx(351.0)
    # November so far: Mondays 2, 9, 16 Nov = 6 contacts, usage 6.0. Still to come: the
    # Monday 10:00 hours of 23 and 30 Nov = 4. Rent 700/7 x 30 days = 3000.
    month = slice_labels("month")
    assert value(samples, "contactcenter_contacts_projected", **month) == pytest.approx(10.0)
    assert value(samples, "contactcenter_cost_projected", **month) == pytest.approx(3010.0)
    # 9 of the week's 168 hours have passed.
    assert value(samples, "contactcenter_period_open_elapsed_ratio", period="week") == (
        pytest.approx(9 / 168))


def test_projection_respects_hours_closed_days_and_night_arrivals() -> None:
    settings = Settings.model_validate({
        "hours": {"mon-fri": "08:00-16:00", "closed": ["2026-11-24", "2026-11-04"]},
        "costs": [{"name": "rent", "component": "facilities", "amount": 600, "per": "week"},
                  {"name": "carrier", "component": "telephony", "per_minute": 0.5}],
    })
    arrivals = (
        [arrival(day + timedelta(days=1), 10, 1) for day in PROFILE_MONDAYS]  # Tuesdays
        # Wednesdays, but 4 Nov was closed and had none
        + [arrival(day + timedelta(days=2), 10, 1) for day in PROFILE_MONDAYS
           if day + timedelta(days=2) != date(2026, 11, 4)]
        + [arrival(day + timedelta(days=6), 22, 1) for day in PROFILE_MONDAYS]  # Sunday night
        # The Sunday before the profile: the store's history is older than the profile, so
        # its first week (no Monday contact) is whole.
        + [arrival(date(2026, 10, 25), 22, 1)]
    )
    # So far this week: one contact on Monday, 300 s handle, 120 s billable (usage 1.0).
    rollups = [rollup(date(2026, 11, 23), 1, 300, 120)]
    samples = project_figures(settings, rollups, arrivals, at(date(2026, 11, 23), 12), 4)
    week = slice_labels("week")
    # Tue 10h: 4 / (4 x 3600 open s), but Tue 24 Nov is closed -> 0.
    # Wed 10h: 3 / (3 x 3600) (4 Nov had no open second) -> 1 on Wed 25 Nov.
    # Sun 22h is never open: 4 / (4 x 3600 calendar s) -> 1 on Sun 29 Nov.
    # 1 so far + 2 = 3.
    assert value(samples, "contactcenter_contacts_projected", **week) == pytest.approx(3.0)
    # Rent 600 in full + usage 1.0 so far + 2 x 1.0 = 603; per contact 201.
    assert value(samples, "contactcenter_cost_projected", **week) == pytest.approx(603.0)
    assert value(samples, "contactcenter_cost_per_contact_projected", **week) == pytest.approx(201.0)
    # Open this week: Mon, Wed, Thu, Fri x 8 h = 32 h; Mon 08-12 has passed: 4/32.
    assert value(samples, "contactcenter_period_open_elapsed_ratio", period="week") == 0.125


def test_moment_at_open_share_of_a_month() -> None:
    settings = Settings.model_validate({"hours": {"mon-fri": "08:00-16:00"}})
    hours = settings.open_hours
    # November 2026 has 21 weekdays (Mon 2 .. Mon 30): 168 open hours; half is 84 h =
    # 10.5 days: 10 weekdays (2-13 Nov) plus 4 h on Mon 16 Nov -> 12:00.
    assert moment_at_open_share("month", date(2026, 11, 1), 0.5, UTC, hours) == at(
        date(2026, 11, 16), 12)
    assert open_elapsed_ratio("month", at(date(2026, 11, 16), 12), UTC, hours) == 0.5


def test_no_profile_falls_back_to_the_period_so_far() -> None:
    settings = Settings(costs=[cost(component="salaries", amount=3000, per="month")])
    # 1 contact on 2 Nov (Monday of the current week), none stored before: no profile week.
    # 1 Nov 00:00 .. 4 Nov 00:00 = 3 of November's 30 days: 1 / (3/30) = 10 projected;
    # salaries 3000 in full -> 300 per contact.
    samples = project_figures(settings, [rollup(date(2026, 11, 2), 1, 60, 0)],
                              [arrival(date(2026, 11, 2), 9, 1)],
                              at(date(2026, 11, 4), 0), 4)
    month = slice_labels("month")
    assert value(samples, "contactcenter_contacts_projected", **month) == pytest.approx(10.0)
    assert value(samples, "contactcenter_cost_per_contact_projected", **month) == (
        pytest.approx(300.0))


def test_the_week_history_begins_in_is_left_out_of_the_profile() -> None:
    from collector.projection import Profile

    # History begins on Thursday 19 Nov, inside the last profile week: that week would
    # have no Monday to Wednesday, so it is left out and no week remains.
    arrivals = [arrival(date(2026, 11, 19), 10, 5), arrival(date(2026, 11, 20), 10, 5)]
    profile = Profile(arrivals, date(2026, 10, 26), date(2026, 11, 22), UTC, None)
    assert profile.weeks == 0
    assert profile.rates == {}
    # Begun on Monday 16 Nov: the week is whole; Thursday 10h is 5 / 3600 s.
    arrivals.append(arrival(date(2026, 11, 16), 9, 1))
    profile = Profile(arrivals, date(2026, 10, 26), date(2026, 11, 22), UTC, None)
    assert profile.weeks == 1
    assert profile.rates[VOICE][3][10] == (5 / 3600, 0.0)


def test_report_shows_the_projection_for_current_windows_only() -> None:
    from collector.allocation import compute_figures
    from collector.report import render_report, report_data

    settings = Settings(costs=[cost(component="facilities", amount=700, per="week"),
                               cost(component="telephony", per_minute=0.5)])
    arrivals = [arrival(day, 10, 2) for day in PROFILE_MONDAYS]
    rollups = [rollup(day, 2, 600, 240) for day in PROFILE_MONDAYS]
    now = at(date(2026, 11, 23), 9)
    samples = compute_figures(settings, rollups, now) + project_figures(
        settings, rollups, arrivals, now, 4)
    week = report_data(samples, settings, now, "week")
    # The same figures as the projection test above: 2 contacts, 702, 351 each, 9/168.
    projected = week["windows"]["current"]["projected"]
    assert projected["contacts"] == pytest.approx(2.0)
    assert projected["cost"] == pytest.approx(702.0)
    assert projected["cost_per_contact"] == pytest.approx(351.0)
    assert projected["open_elapsed_ratio"] == pytest.approx(9 / 168)
    assert [s["queue"] for s in projected["slices"]] == ["support"]
    assert "projected" not in week["windows"]["previous"]
    assert "projected" not in report_data(samples, settings, now, "day")["windows"]["current"]
    table = render_report(samples, settings, now, "week", "table")
    assert "projected to the end of the week (5% of its open time passed): 2 contacts, " \
        "cost 702.00, per contact 351.00" in table


def test_store_arrivals_and_a_late_contact_in_the_profile(tmp_path: Any) -> None:
    """Through the store and the pipeline: 15-minute buckets, and a contact stored late
    for a profile day changes the projection (the cached arrivals are read again)."""
    from collector.model import Contact
    from collector.pipeline import figures_at
    from collector.store import SqliteStore

    settings = Settings(costs=[cost(component="facilities", amount=700, per="week")])
    store = SqliteStore(tmp_path / "s.db", settings.tz)

    def call(cid: str, day: date, hour: int, minute: int) -> Contact:
        return Contact(cid, *VOICE, at(day, hour, minute).timestamp(), True, 60.0, 60.0, 0.0)

    # Two calls at Monday 10:05 and 10:10 in each profile week: one 15-minute bucket.
    store.commit("pbx", [call(f"{d}-{m}", d, 10, m) for d in PROFILE_MONDAYS for m in (5, 10)],
                 "1")
    arrivals = store.arrivals(date(2026, 10, 25), date(2026, 11, 22))
    assert sorted(arrivals) == sorted(
        Arrival(at(d, 10).timestamp(), *VOICE, 2) for d in PROFILE_MONDAYS)
    now = at(date(2026, 11, 23), 9)

    def projected() -> float | None:
        return value(list(figures_at(store, settings, now).samples),
                     "contactcenter_contacts_projected", **slice_labels("week"))

    # 8 / (4 x 3600 s) x 3600 s still to come this week = 2.
    assert projected() == pytest.approx(2.0)
    # A late export adds a third call on Monday 16 Nov 10:20: 9 / 4 = 2.25.
    store.commit("pbx", [call("late", date(2026, 11, 16), 10, 20)], "2")
    assert projected() == pytest.approx(2.25)
    store.close()


def test_backfill_writes_the_projected_gauges(tmp_path: Any) -> None:
    """backfill replays figures_at hour by hour, so the projection is in its history."""
    import re

    from collector.backfill import write_openmetrics
    from collector.model import Contact
    from collector.store import SqliteStore

    settings = Settings(costs=[cost(component="facilities", amount=700, per="week")])
    store = SqliteStore(tmp_path / "s.db", settings.tz)
    # Two calls at Monday 10:05 in each profile week (26 Oct - 16 Nov).
    store.commit("pbx", [
        Contact(f"{d}-{n}", *VOICE, at(d, 10, 5).timestamp(), True, 60.0, 60.0, 0.0)
        for d in PROFILE_MONDAYS for n in range(2)], "1")
    path, hours, _ = write_openmetrics(store, settings, date(2026, 11, 23), date(2026, 11, 23),
                                       at(date(2026, 12, 1), 0), tmp_path / "out")
    store.close()
    text = path.read_text()
    assert hours == 24
    week = ('{channel="voice",direction="inbound",period="week",queue="support",'
            'window="current"}')
    found = {
        datetime.fromtimestamp(int(stamp), UTC).hour: float(v)
        for v, stamp in re.findall(
            rf"^contactcenter_contacts_projected{re.escape(week)} (\S+) (\d+)$", text, re.M)
    }
    # Up to 10:00 Monday's hour 10-11 is still to come: 2 expected. From 11:00 on nothing
    # is expected this week and none is stored, so the series is absent.
    assert found == {h: pytest.approx(2.0) for h in range(11)}
    assert "contactcenter_period_open_elapsed_ratio{period=\"month\"}" in text


def test_series_estimate_counts_the_projection_for_current_week_to_year() -> None:
    from collector.series import MetricsSettings, count_series

    counts = count_series(MetricsSettings(), slices=3, components=2, queues=2, outcomes=0,
                          channels=1)
    # 3 slices x (week, month, quarter, year) x current; the elapsed share once per period.
    assert counts["contactcenter_contacts_projected"] == 12
    assert counts["contactcenter_cost_per_contact_projected"] == 12
    assert counts["contactcenter_period_open_elapsed_ratio"] == 4
    only_days = MetricsSettings(periods=("day",), windows=("current",))
    assert count_series(only_days, 3, 2, 2, 0, 1)["contactcenter_cost_projected"] == 0
    previous = MetricsSettings(windows=("previous",))
    assert count_series(previous, 3, 2, 2, 0, 1)["contactcenter_cost_projected"] == 0


def test_a_slow_profile_read_is_not_repeated_every_tick_while_history_arrives(
    tmp_path: Any
) -> None:
    import time

    from collector import pipeline
    from collector.model import Contact
    from collector.store import SqliteStore

    class SlowStore(SqliteStore):
        reads = 0

        def arrivals(self, first_day: date, last_day: date) -> list[Arrival]:
            SlowStore.reads += 1
            time.sleep(0.06)  # a profile read over a big history: > 50 ms
            return super().arrivals(first_day, last_day)

    settings = Settings()
    store = SlowStore(tmp_path / "s.db", settings.tz)

    def call(cid: str, day: date) -> Contact:
        return Contact(cid, *VOICE, at(day, 10, 5).timestamp(), True, 60.0, 60.0, 0.0)

    store.commit("pbx", [call("a", PROFILE_MONDAYS[0])], "1")
    now = at(date(2026, 11, 23), 9)
    pipeline.figures_at(store, settings, now)
    store.commit("pbx", [call("b", PROFILE_MONDAYS[1])], "2")  # history still arriving
    pipeline.figures_at(store, settings, now)
    assert SlowStore.reads == 1  # the read took ~60 ms: not again within ~600 ms
    key, arrivals, read_at, took = pipeline._ARRIVALS[store]
    pipeline._ARRIVALS[store] = (key, arrivals, read_at - 10 * took, took)  # time passes
    pipeline.figures_at(store, settings, now)
    assert SlowStore.reads == 2
    store.close()


def test_quarter_and_year_are_projected_to_their_ends() -> None:
    settings = Settings(costs=[cost(component="facilities", amount=700, per="week"),
                               cost(component="telephony", per_minute=0.5)])
    arrivals = [arrival(day, 10, 2) for day in PROFILE_MONDAYS]
    rollups = [rollup(day, 2, 600, 240) for day in PROFILE_MONDAYS]
    samples = project_figures(settings, rollups, arrivals, at(date(2026, 11, 23), 9), weeks=4)
    # So far in Q4 (and in 2026): the four profile Mondays, 8 contacts, usage 8 x 1.0.
    # Still to come: the Monday 10:00 hours of 23, 30 Nov, 7, 14, 21, 28 Dec: 6 x 2 = 12.
    # Rent 100 a day in full: 92 days of Q4 = 9200, 365 of 2026 = 36500; usage 8 + 12.
    quarter, year = slice_labels("quarter"), slice_labels("year")
    assert value(samples, "contactcenter_contacts_projected", **quarter) == pytest.approx(20.0)
    assert value(samples, "contactcenter_cost_projected", **quarter) == pytest.approx(9220.0)
    assert value(samples, "contactcenter_contacts_projected", **year) == pytest.approx(20.0)
    assert value(samples, "contactcenter_cost_projected", **year) == pytest.approx(36520.0)
    assert value(samples, "contactcenter_cost_per_contact_projected", **year) == (
        pytest.approx(1826.0))
    # Nothing is projected for the day or for a previous window.
    assert not [s for s in samples if s.labels.get("period") == "day"
                or s.labels.get("window") == "previous"]


def test_a_public_holiday_still_to_come_expects_no_contact() -> None:
    settings = Settings.model_validate({
        "hours": {"mon-fri": "08:00-16:00", "holidays": "NO"},
        "costs": [{"name": "rent", "component": "facilities", "amount": 700, "per": "week"}],
    })
    # Profile weeks 23 Nov - 20 Dec: one contact at 10:00 on each Monday and each Friday.
    mondays = [date(2026, 11, 23) + timedelta(days=7 * n) for n in range(4)]
    arrivals = [arrival(day + timedelta(days=d), 10, 1) for day in mondays for d in (0, 4)]
    rollups = [rollup(day + timedelta(days=d), 1, 60, 0) for day in mondays for d in (0, 4)]
    samples = project_figures(settings, rollups, arrivals, at(date(2026, 12, 21), 0), 4)
    # This week: Monday 21 Dec 10:00 expects 1; Friday 25 Dec is Christmas Day, a public
    # holiday in Norway (closed): 0. Without the holiday it would be 2.
    week = slice_labels("week")
    assert value(samples, "contactcenter_contacts_projected", **week) == pytest.approx(1.0)
    assert value(samples, "contactcenter_cost_projected", **week) == pytest.approx(700.0)
    # December: so far Mon 7, 14 and Fri 4, 11, 18 Dec (Mon 30 Nov is November's) = 5;
    # to come Mon 21, 28 Dec = 2 (Fri 25 closed): 7.
    month = slice_labels("month")
    assert value(samples, "contactcenter_contacts_projected", **month) == pytest.approx(7.0)
