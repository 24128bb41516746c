"""Reports over any window of local dates: `report --from/--to --by`, hand-computed.

The cost rules are the periods' (collector.allocation, collector.accrual); these tests pin
how a window of dates applies them: across months of different lengths, across a
daylight-saving change, with service hours, with cost that finds no contact, and the
JSON/CSV/table shapes the CLI prints.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.cli import main
from collector.config import CostItem, Settings
from collector.costing import compute_figures
from collector.model import Contact, Rollup
from collector.report import (
    WindowError,
    parse_by,
    render_window,
    window_report,
    window_report_from_store,
)
from collector.store import SqliteStore

from .conftest import api_get, require_basic_auth, served

OSLO = ZoneInfo("Europe/Oslo")
MARCH = datetime(2026, 3, 1, 12, tzinfo=OSLO)  # "now" well after the windows of Jan/Feb



def rollup(day: date, channel: str, queue: str, handled: int, handle: float,
           contacts: int | None = None) -> Rollup:
    n = handled if contacts is None else contacts
    return Rollup(day, channel, "inbound", queue, "", n, handled, handle, handle, 0.0, 0.0)


def cost(**fields: Any) -> CostItem:
    fields.setdefault("name", fields["component"])
    return CostItem.model_validate(fields)


# Rent 868 a month by contacts: 868/31 = 28 a day in January, 868/28 = 31 in February.
# Salaries 8680 a month by handle time: 280 a day in January, 310 in February.
# A usage cost of 0.50 per handled contact.
SETTINGS = Settings(
    timezone="Europe/Oslo",
    currency="EUR",
    costs=[
        cost(component="facilities", amount=868, per="month", allocate="contacts"),
        cost(component="salaries", amount=8680, per="month"),
        cost(component="other", per_contact=0.5),
    ],
)
ROLLUPS = [
    rollup(date(2026, 1, 29), "voice", "support", 9, 900),  # outside the window
    rollup(date(2026, 1, 30), "voice", "support", 3, 300),
    rollup(date(2026, 1, 31), "email", "support", 1, 100),
    rollup(date(2026, 2, 2), "voice", "sales", 2, 200),
    rollup(date(2026, 2, 3), "voice", "sales", 7, 700),  # outside the window
]
FIRST, LAST = date(2026, 1, 30), date(2026, 2, 2)


def rows_by(data: dict[str, Any], *dims: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[d] for d in dims): r for r in data["rows"]}


def test_window_across_a_month_end_with_another_day_count() -> None:
    # 30 Jan - 2 Feb 2026: two January days and two February days.
    # Rent: 2 x 28 + 2 x 31 = 118, by contacts 3 : 1 : 2 of 6 ->
    #   voice/support 59, email/support 19.667, voice/sales 39.333.
    # Salaries: 2 x 280 + 2 x 310 = 1180, by handle time 300 : 100 : 200 of 600 ->
    #   voice/support 590, email/support 196.667, voice/sales 393.333.
    # Usage: 0.5 x 3, 0.5 x 1, 0.5 x 2 = 1.5, 0.5, 1.0.
    data = window_report(SETTINGS, ROLLUPS, FIRST, LAST, MARCH, ("channel", "queue"))
    assert list(data) == ["from", "to", "currency", "rows", "total"]
    assert (data["from"], data["to"], data["currency"]) == ("2026-01-30", "2026-02-02", "EUR")
    rows = rows_by(data, "channel", "queue")
    assert list(rows) == [("email", "support"), ("voice", "sales"), ("voice", "support")]
    assert rows[("voice", "support")]["contacts"] == 3
    assert rows[("voice", "support")]["cost"] == pytest.approx(59 + 590 + 1.5)
    assert rows[("email", "support")]["cost"] == pytest.approx(118 / 6 + 1180 / 6 + 0.5)
    assert rows[("voice", "sales")]["cost"] == pytest.approx(118 / 3 + 1180 / 3 + 1.0)
    assert rows[("voice", "sales")]["cost_per_contact"] == pytest.approx((118 / 3 + 1180 / 3 + 1) / 2)
    # Total: 118 + 1180 + 3 = 1301 over 6 contacts.
    assert data["total"]["contacts"] == 6
    assert data["total"]["cost"] == pytest.approx(1301)
    assert data["total"]["cost_per_contact"] == pytest.approx(1301 / 6)
    assert set(data["rows"][0]) == {"channel", "queue", "contacts", "cost", "cost_per_contact"}


def test_by_component_rows_carry_their_groups_contacts_and_add_up() -> None:
    data = window_report(SETTINGS, ROLLUPS, FIRST, LAST, MARCH, ("channel", "component"))
    rows = rows_by(data, "channel", "component")
    # Components in the configured vocabulary's order: salaries, facilities, other.
    assert list(rows) == [
        ("email", "salaries"), ("email", "facilities"), ("email", "other"),
        ("voice", "salaries"), ("voice", "facilities"), ("voice", "other"),
    ]
    # Every voice row carries voice's 5 handled contacts, every e-mail row its 1.
    assert {r["contacts"] for k, r in rows.items() if k[0] == "voice"} == {5}
    assert {r["contacts"] for k, r in rows.items() if k[0] == "email"} == {1}
    assert rows[("voice", "facilities")]["cost"] == pytest.approx(59 + 118 / 3)  # 98.333
    assert rows[("voice", "salaries")]["cost"] == pytest.approx(590 + 1180 / 3)  # 983.333
    assert rows[("voice", "other")]["cost"] == pytest.approx(2.5)
    assert rows[("email", "facilities")]["cost_per_contact"] == pytest.approx(118 / 6)
    # Contacts are counted once per channel, not once per component: 5 + 1.
    assert data["total"]["contacts"] == 6
    assert sum(r["cost"] for r in data["rows"]) == pytest.approx(data["total"]["cost"])
    assert data["total"]["cost"] == pytest.approx(1301)
    only = window_report(SETTINGS, ROLLUPS, FIRST, LAST, MARCH, ("component",))
    assert [(r["component"], r["contacts"]) for r in only["rows"]] == [
        ("salaries", 6), ("facilities", 6), ("other", 6)
    ]
    assert [r["cost"] for r in only["rows"]] == pytest.approx([1180, 118, 3])


def test_a_calendar_month_window_equals_the_previous_month_figures() -> None:
    # February as a window and as the month period's previous window (now in March).
    data = window_report(SETTINGS, ROLLUPS, date(2026, 2, 1), date(2026, 2, 28), MARCH,
                         ("channel", "direction", "queue"))
    samples = compute_figures(SETTINGS, ROLLUPS, MARCH)
    month = {"period": "month", "window": "previous"}
    period_cost = sum(s.value for s in samples if s.name == "contactcenter_cost"
                      and all(s.labels[k] == v for k, v in month.items()))
    period_contacts = sum(s.value for s in samples if s.name == "contactcenter_contacts"
                          and all(s.labels[k] == v for k, v in month.items()))
    # February's whole rent 868 and salaries 8680 land on its 9 voice/sales contacts, + 4.5.
    assert period_cost == pytest.approx(868 + 8680 + 4.5)
    assert data["total"]["cost"] == pytest.approx(period_cost)
    assert data["total"]["contacts"] == period_contacts == 9


def test_cost_without_contacts_in_the_window_is_a_row_of_its_own() -> None:
    # Sunday 1 Feb 2026 has no contacts: rent 31 and salaries 310 find nobody.
    day = date(2026, 2, 1)
    data = window_report(SETTINGS, ROLLUPS, day, day, MARCH, ("channel",))
    assert data["rows"] == [
        {"channel": None, "contacts": 0, "cost": pytest.approx(341), "cost_per_contact": None}
    ]
    assert data["total"] == {"contacts": 0, "cost": pytest.approx(341), "cost_per_contact": None}
    parts = window_report(SETTINGS, ROLLUPS, day, day, MARCH, ("queue", "component"))
    assert [(r["queue"], r["component"], r["cost"]) for r in parts["rows"]] == [
        (None, "salaries", pytest.approx(310)),
        (None, "facilities", pytest.approx(31)),
    ]
    # As in the periods, a window's shared cost goes to the window's contacts: over 31 Jan -
    # 1 Feb, 28 + 31 rent and 280 + 310 salaries (+ 0.5) all land on the e-mail contact of
    # the 31st, and nothing is unallocated.
    data = window_report(SETTINGS, ROLLUPS, date(2026, 1, 31), day, MARCH, ("channel",))
    assert [(r["channel"], r["contacts"]) for r in data["rows"]] == [("email", 1)]
    assert data["rows"][0]["cost"] == pytest.approx(28 + 31 + 280 + 310 + 0.5)
    assert data["total"]["cost_per_contact"] == pytest.approx(649.5)
    # Scoped to voice only, the salaries find no voice contact there and stay unallocated.
    scoped = Settings(timezone="Europe/Oslo", costs=[
        cost(component="salaries", amount=8680, per="month", channels=["voice"]),
        cost(component="facilities", amount=868, per="month", allocate="contacts")])
    data = window_report(scoped, ROLLUPS, date(2026, 1, 31), day, MARCH, ("channel",))
    assert [(r["channel"], r["contacts"]) for r in data["rows"]] == [("email", 1), (None, 0)]
    assert [r["cost"] for r in data["rows"]] == pytest.approx([59, 590])
    assert data["total"]["cost"] == pytest.approx(649)
    assert data["total"]["cost_per_contact"] == pytest.approx(649)


def store_with(path: Path, contacts: list[Contact]) -> SqliteStore:
    store = SqliteStore(path, OSLO)
    store.commit("pbx", contacts, "1")
    return store


def call(cid: str, utc: datetime, handle: float = 60) -> Contact:
    return Contact(cid, "voice", "inbound", "support", utc.timestamp(), True, handle, handle, 0.0)


def test_window_across_the_autumn_daylight_saving_change(tmp_path: Path) -> None:
    # Europe/Oslo leaves summer time on Sunday 25 Oct 2026 at 03:00 CEST -> 02:00 CET, so
    # 25 Oct lasts 25 hours: from 24 Oct 22:00 UTC to 25 Oct 23:00 UTC.
    settings = Settings(timezone="Europe/Oslo", costs=[
        cost(component="facilities", amount=25, per="day", allocate="contacts")])
    store = store_with(tmp_path / "s.db", [
        call("a", datetime(2026, 10, 24, 21, 30, tzinfo=UTC)),  # 23:30 CEST on the 24th
        call("b", datetime(2026, 10, 24, 22, 30, tzinfo=UTC)),  # 00:30 CEST on the 25th
        call("c", datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),  # 02:30 CET, the second 02:30
        call("d", datetime(2026, 10, 25, 11, 30, tzinfo=UTC)),  # 12:30 CET: after "now"
    ])
    try:
        # Now: 25 Oct 12:00 CET = 11:00 UTC, 13 of the day's 25 real hours.
        now = datetime(2026, 10, 25, 12, tzinfo=OSLO)
        assert now.astimezone(UTC) == datetime(2026, 10, 25, 11, tzinfo=UTC)
        data = window_report_from_store(store, settings, date(2026, 10, 24),
                                        date(2026, 10, 31), now, ("channel",))
        # Rent: 25 on the 24th + 25 x 13/25 = 13 on the 25th = 38; nothing after now.
        # Contacts a, b, c (d starts after now).
        assert data["rows"] == [{"channel": "voice", "contacts": 3, "cost": pytest.approx(38),
                                 "cost_per_contact": pytest.approx(38 / 3)}]
        assert data["to"] == "2026-10-31"  # the window asked for, though it ends at now
        # The 25th alone, after the day: b and c are its contacts, its whole rent is 25.
        later = datetime(2026, 11, 2, tzinfo=OSLO)
        day = window_report_from_store(store, settings, date(2026, 10, 25), date(2026, 10, 25),
                                       later, ("queue",))
        assert day["rows"] == [{"queue": "support", "contacts": 3, "cost": pytest.approx(25),
                                "cost_per_contact": pytest.approx(25 / 3)}]
        day24 = window_report_from_store(store, settings, date(2026, 10, 24),
                                         date(2026, 10, 24), later, ("queue",))
        assert day24["total"]["contacts"] == 1  # only a, at 23:30 CEST
    finally:
        store.close()


def test_window_with_service_hours_across_the_spring_change() -> None:
    # [hours] mon-fri 08:00-18:00. March 2026 has 22 weekdays = 220 open hours; rent 22000
    # a month is 100 an open hour, 1000 a weekday. 29 Mar (Sunday) is the 23 h day.
    settings = Settings.model_validate({
        "timezone": "Europe/Oslo",
        "hours": {"mon-fri": "08:00-18:00"},
        "costs": [{"name": "Rent", "component": "facilities", "amount": 22000,
                   "per": "month", "allocate": "contacts"}],
    })
    rollups = [rollup(date(2026, 3, 27), "voice", "support", 1, 60),
               rollup(date(2026, 3, 30), "voice", "support", 1, 60)]
    # Fri 27 1000 + Sat 0 + Sun 0 + Mon 30 1000 = 2000 when the window is over.
    after = datetime(2026, 4, 2, 12, tzinfo=OSLO)
    data = window_report(settings, rollups, date(2026, 3, 27), date(2026, 3, 30), after,
                         ("channel",))
    assert data["total"]["cost"] == pytest.approx(2000)
    # On Monday 30 Mar at 10:00: 2 of its 10 open hours have passed: 1000 + 200.
    monday_10 = datetime(2026, 3, 30, 10, tzinfo=OSLO)
    data = window_report(settings, rollups, date(2026, 3, 27), date(2026, 3, 30), monday_10,
                         ("channel",))
    assert data["total"]["cost"] == pytest.approx(1200)
    assert data["total"]["cost_per_contact"] == pytest.approx(600)
    # The weekend alone: closed, so nothing accrues and nothing is unallocated.
    weekend = window_report(settings, rollups, date(2026, 3, 28), date(2026, 3, 29), after,
                            ("channel",))
    assert weekend["rows"] == [] and weekend["total"]["cost"] == 0


def test_dimensions_and_window_checks() -> None:
    assert parse_by("queue, channel") == ("channel", "queue")
    assert parse_by("component,direction") == ("direction", "component")
    with pytest.raises(WindowError, match="unknown dimension outcome"):
        parse_by("channel,outcome")
    with pytest.raises(WindowError, match="at least one"):
        parse_by(" , ")
    with pytest.raises(WindowError, match="before --from"):
        window_report(SETTINGS, [], date(2026, 2, 2), date(2026, 2, 1), MARCH)
    with pytest.raises(WindowError, match="longer than"):
        window_report(SETTINGS, [], date(2000, 1, 1), date(2026, 2, 1), MARCH)
    # A window after now: nothing has happened yet.
    future = window_report(SETTINGS, ROLLUPS, date(2026, 4, 1), date(2026, 4, 30), MARCH)
    assert future["rows"] == [] and future["total"] == {
        "contacts": 0, "cost": 0, "cost_per_contact": None}


def test_csv_and_table_renderings() -> None:
    data = window_report(SETTINGS, ROLLUPS, FIRST, LAST, MARCH, ("channel", "component"))
    text = render_window(data, "csv", ("channel", "component"))
    lines = text.splitlines()
    assert lines[0] == "channel,component,contacts,cost,cost_per_contact"
    assert len(lines) == 1 + len(data["rows"]) == 7
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert parsed[3] == {"channel": "voice", "component": "salaries", "contacts": "5",
                         "cost": repr(data["rows"][3]["cost"]),
                         "cost_per_contact": repr(data["rows"][3]["cost_per_contact"])}
    assert sum(float(r["cost"]) for r in parsed) == pytest.approx(1301)
    table = render_window(data, "table", ("channel", "component"))
    assert table.splitlines()[0] == "Cost per contact, 2026-01-30 to 2026-02-02 (4 days, EUR)"
    assert "1,301.00" in table.splitlines()[-1]
    assert json.loads(render_window(data, "json", ("channel", "component"))) == json.loads(
        json.dumps(data))
    # An unallocated row: an empty cell in CSV, "(unallocated)" in the table.
    sunday = window_report(SETTINGS, ROLLUPS, date(2026, 2, 1), date(2026, 2, 1), MARCH,
                           ("channel",))
    assert render_window(sunday, "csv", ("channel",)).splitlines()[1].startswith(",0,341")
    assert "(unallocated)" in render_window(sunday, "table", ("channel",))


# -- the CLI ---------------------------------------------------------------------------------
CONFIG = """\
currency = "EUR"
timezone = "Europe/Oslo"
store = "state.db"

[[sources]]
name = "helpdesk"
adapter = "csv"
path = "tickets.csv"
channel = "email"
queue = "support"
columns = { id = "id", started_at = "created", handle_seconds = "handle" }
time_format = "%Y-%m-%d %H:%M:%S"

[[costs]]
name = "Rent"
component = "facilities"
amount = 868
per = "month"
allocate = "contacts"
"""


@pytest.fixture
def center(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One ticket on 31 Jan and three on 1 Feb 2026 (local times)."""
    (tmp_path / "tickets.csv").write_text(
        "id,created,handle\n"
        "t1,2026-01-31 10:00:00,60\n"
        "t2,2026-02-01 09:00:00,60\nt3,2026-02-01 10:00:00,60\nt4,2026-02-01 11:00:00,60\n"
    )
    (tmp_path / "config.toml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "config.toml"


def run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["report", "--config.file", str(config), "--at", "2026-03-01T00:00", *args]) == 0
    return capsys.readouterr().out


def test_cli_window_json_csv_and_table(center: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Rent 28 on 31 Jan (one ticket) and 31 on 1 Feb (three tickets): 59 over 4 contacts.
    out = run(center, capsys, "--from", "2026-01-31", "--to", "2026-02-01", "--format", "json")
    data = json.loads(out)
    assert data == {
        "from": "2026-01-31", "to": "2026-02-01", "currency": "EUR",
        "rows": [{"channel": "email", "direction": "inbound", "queue": "support",
                  "contacts": 4, "cost": pytest.approx(59),
                  "cost_per_contact": pytest.approx(59 / 4)}],
        "total": {"contacts": 4, "cost": pytest.approx(59),
                  "cost_per_contact": pytest.approx(14.75)},
    }
    out = run(center, capsys, "--from", "2026-01-31", "--to", "2026-02-01", "--by",
              "component,channel", "--format", "csv")
    assert out.splitlines() == ["channel,component,contacts,cost,cost_per_contact",
                                "email,facilities,4,59,14.75"]
    out = run(center, capsys, "--from", "2026-02-01", "--to", "2026-02-01", "--by", "queue")
    # 1 Feb alone: rent 31 over its three tickets = 10.33 each.
    assert out.splitlines()[0] == "Cost per contact, 2026-02-01 to 2026-02-01 (1 day, EUR)"
    assert out.splitlines()[-2].split() == ["support", "3", "31.00", "10.33"]
    assert out.splitlines()[-1].split() == ["all", "3", "31.00", "10.33"]


def test_cli_period_report_is_unchanged(center: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Without --period the month is reported, exactly as with --period month.
    plain = run(center, capsys, "--format", "json")
    month = run(center, capsys, "--period", "month", "--format", "json")
    assert plain == month
    assert list(json.loads(plain)) == ["at", "currency", "period", "timezone", "windows"]
    assert run(center, capsys) == run(center, capsys, "--period", "month")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "channel"], "--by needs --from and --to"),
        (["--format", "csv"], "--format csv needs --from and --to"),
        (["--from", "2026-01-01"], "--from and --to go together"),
        (["--from", "2026-01-01", "--to", "2026-01-02", "--period", "day"], "exclude each other"),
        (["--from", "2026-01-02", "--to", "2026-01-01"], "before --from"),
        (["--from", "2026-01-01", "--to", "2026-01-02", "--by", "colour"], "unknown dimension"),
    ],
)
def test_cli_refuses_mixed_or_bad_arguments(
    center: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["report", "--config.file", str(center), *args])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


# -- GET /api/v1/report ------------------------------------------------------------------------
NOW = datetime(2026, 11, 2, 12, tzinfo=OSLO)


@pytest.fixture
def api(tmp_path: Path) -> Any:
    from collector.runtime import Exporter, LoadedConfig

    settings = Settings(store=tmp_path / "s.db", timezone="Europe/Oslo", currency="NOK", costs=[
        cost(component="facilities", amount=25, per="day", allocate="contacts")])
    exporter = Exporter(LoadedConfig(settings, (), "test"), clock=lambda: NOW.timestamp())
    exporter.store.commit("pbx", [
        call("a", datetime(2026, 10, 24, 21, 30, tzinfo=UTC)),  # 24 Oct local
        call("b", datetime(2026, 10, 24, 22, 30, tzinfo=UTC)),  # 25 Oct local
        call("c", datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),  # 25 Oct local
    ], "1")
    exporter.recompute(NOW)
    with served(exporter, max_connections=8, request_timeout=5) as srv:
        yield srv
    exporter.close()


def test_api_report_is_the_cli_json(api: Any) -> None:
    status, headers, body = api_get(api, "/api/v1/report?from=2026-10-24&to=2026-10-25&by=queue")
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    # Rent 25 a day over 24-25 Oct = 50 on contacts a, b, c.
    data = json.loads(body)
    assert data == {"from": "2026-10-24", "to": "2026-10-25", "currency": "NOK",
                    "rows": [{"queue": "support", "contacts": 3, "cost": pytest.approx(50),
                              "cost_per_contact": pytest.approx(50 / 3)}],
                    "total": {"contacts": 3, "cost": pytest.approx(50),
                              "cost_per_contact": pytest.approx(50 / 3)}}
    expected = window_report_from_store(api.exporter.store, api.exporter.settings,
                                        date(2026, 10, 24), date(2026, 10, 25), NOW, ("queue",))
    assert body == render_window(expected, "json", ("queue",)).encode()
    # Without by: channel, direction, queue, as on the command line.
    status, _, body = api_get(api, "/api/v1/report?from=2026-10-25&to=2026-10-25")
    assert status == 200
    assert json.loads(body)["rows"] == [{"channel": "voice", "direction": "inbound",
                                         "queue": "support", "contacts": 2, "cost": 25,
                                         "cost_per_contact": 12.5}]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("", "give from=YYYY-MM-DD once"),
        ("from=2026-10-01", "give to=YYYY-MM-DD once"),
        ("from=2026-10-01&from=2026-10-02&to=2026-10-03", "give from=YYYY-MM-DD once"),
        ("from=yesterday&to=2026-10-03", "from: not a date YYYY-MM-DD"),
        ("from=2026-10-05&to=2026-10-03", "to 2026-10-03 is before from 2026-10-05"),
        ("from=1990-01-01&to=2026-10-03", "the window is longer than 3660 days"),
        ("from=2026-10-01&to=2026-10-03&by=outcome", "by: unknown dimension outcome"),
        ("from=2026-10-01&to=2026-10-03&period=month", "unknown parameter period"),
    ],
)
def test_api_report_refuses_a_bad_query(api: Any, query: str, error: str) -> None:
    status, headers, body = api_get(api, "/api/v1/report?" + query)
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"].startswith(error)


def test_api_report_is_behind_basic_auth(api: Any) -> None:
    auth = require_basic_auth(api)
    query = "/api/v1/report?from=2026-10-24&to=2026-10-25"
    assert api_get(api, query)[0] == 401
    assert api_get(api, query, auth)[0] == 200


def test_api_report_runs_one_at_a_time_and_never_holds_up_a_scrape(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    store = api.exporter.store
    reading, release = threading.Event(), threading.Event()
    real = store.rollups_as_of

    def slow_read(first: date, now: datetime) -> list[Rollup]:
        reading.set()
        assert release.wait(10)
        return real(first, now)

    monkeypatch.setattr(store, "rollups_as_of", slow_read)
    answers: list[int] = []
    first = threading.Thread(
        target=lambda: answers.append(api_get(api, "/api/v1/report?from=2026-10-24&to=2026-10-25")[0]))
    first.start()
    try:
        assert reading.wait(5)
        # A second report while the first reads: refused at once, not queued.
        assert api_get(api, "/api/v1/report?from=2026-10-24&to=2026-10-25")[0] == 429
        # A scrape meanwhile is the snapshot's bytes, answered without waiting for the report.
        started = time.monotonic()
        status, _, body = api_get(api, "/metrics")
        assert status == 200 and b"contactcenter_contacts{" in body
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        first.join(10)
    assert answers == [200]


def test_api_report_answers_503_when_the_store_fails(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    def broken(first: date, now: datetime) -> list[Rollup]:
        raise sqlite3.OperationalError("disk I/O error")

    real = api.exporter.store.rollups_as_of
    monkeypatch.setattr(api.exporter.store, "rollups_as_of", broken)
    status, _, body = api_get(api, "/api/v1/report?from=2026-10-24&to=2026-10-25")
    assert status == 503
    assert json.loads(body) == {"error": "the store could not be read; see the exporter log"}
    # The lock was released: the next report works once the store does.
    monkeypatch.setattr(api.exporter.store, "rollups_as_of", real)
    assert api_get(api, "/api/v1/report?from=2026-10-24&to=2026-10-25")[0] == 200


def test_any_query_string_is_an_answer_never_an_exception() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from collector.report import ReportEndpoint

    endpoint = ReportEndpoint()

    class NoStore:
        def rollups_as_of(self, first: date, now: datetime) -> list[Rollup]:
            return []

    pieces = st.sampled_from(["from=", "to=", "by=", "&", "=", "2026-10-01", "2026-02-30",
                              "channel", ",", "%00", "%ZZ", "+", "period", "9999-12-31",
                              "0001-01-01", "component,queue", ";", "\u00e9"])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(pieces, max_size=12).map("".join) | st.text(max_size=60))
    def check(query: str) -> None:
        status, body = endpoint.answer(query, NoStore(), SETTINGS, MARCH)  # type: ignore[arg-type]
        assert status in (200, 400)
        data = json.loads(body)
        assert ("error" in data) == (status == 400)

    check()
