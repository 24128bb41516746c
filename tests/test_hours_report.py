"""`report --at` and `backfill` follow the service hours: the same pure cost model, end to end."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.backfill import write_openmetrics
from collector.cli import main
from collector.runtime import Exporter, load_config

OSLO = ZoneInfo("Europe/Oslo")

# 21 weekdays in November 2026 x 10 h = 210 open hours; rent 21000 = 100 an open hour,
# 1000 a weekday, allocated by contacts.
CONFIG = """\
currency = "EUR"
timezone = "Europe/Oslo"
store = "state.db"

[hours]
mon-fri = "08:00-18:00"

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
amount = 21000
per = "month"
allocate = "contacts"
"""


@pytest.fixture
def center(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tickets every 30 minutes at :15 and :45 from 08:15 to 17:45, Mon 23 - Wed 25 Nov 2026."""
    rows = ["id,created,handle"]
    for day in (23, 24, 25):
        for n in range(20):
            hour, minute = 8 + n // 2, 15 + 30 * (n % 2)
            rows.append(f"t{day}-{n},2026-11-{day} {hour:02d}:{minute:02d}:00,240")
    (tmp_path / "tickets.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "config.toml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "config.toml"


def report(config: Path, at: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["report", "--config.file", str(config), "--at", at, "--period", "day",
                 "--format", "json"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    current: dict[str, Any] = data["windows"]["current"]
    return current


def test_report_at_during_and_outside_hours(
    center: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Wednesday 10:00: 2 of 10 open hours = 200 over the 4 tickets of 08:15-09:45 = 50 each.
    at_10 = report(center, "2026-11-25T10:00", capsys)
    assert at_10["contacts"] == 4
    assert at_10["cost"] == pytest.approx(200)
    assert at_10["cost_per_contact"] == pytest.approx(50)
    # 16:00: 8 h = 800 over 16 tickets, still 50.
    at_16 = report(center, "2026-11-25T16:00", capsys)
    assert at_16["contacts"] == 16 and at_16["cost_per_contact"] == pytest.approx(50)
    # 20:00, after closing: the day's whole 1000 over its 20 tickets, 50; nothing accrues
    # after 18:00.
    at_20 = report(center, "2026-11-25T20:00", capsys)
    assert at_20["contacts"] == 20 and at_20["cost"] == pytest.approx(1000)
    # 07:00, before opening: no ticket yet and nothing accrued, so nothing unallocated.
    at_07 = report(center, "2026-11-25T07:00", capsys)
    assert at_07["contacts"] == 0 and at_07["cost_unallocated"] == {"facilities": 0}
    # Sunday 22 November, closed all day: no cost on the day at all.
    sunday = report(center, "2026-11-22T15:00", capsys)
    assert sunday["cost"] == 0 and sunday["cost_unallocated"] == {"facilities": 0}


def test_report_without_hours_keeps_calendar_time(
    center: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    center.write_text(CONFIG.replace('[hours]\nmon-fri = "08:00-18:00"\n', ""))
    # Calendar time: 21000/30 = 700 a day; at 10:00 10/24 x 700 = 291.67 over 4 tickets.
    at_10 = report(center, "2026-11-25T10:00", capsys)
    assert at_10["cost_per_contact"] == pytest.approx(291.666667 / 4)
    # The closed Sunday's 700 x 15/24 = 437.50 is unallocated.
    sunday = report(center, "2026-11-22T15:00", capsys)
    assert sunday["cost_unallocated"] == {"facilities": pytest.approx(437.5)}


def test_backfill_writes_the_open_gauge_and_steady_day_figures(center: Path) -> None:
    config = load_config(center)
    exporter = Exporter(config)
    try:
        exporter.ingest("helpdesk")
        path, hours, _ = write_openmetrics(
            exporter.store, config.settings, date(2026, 11, 25), date(2026, 11, 25),
            datetime(2026, 12, 1, tzinfo=OSLO), center.parent / "out",
        )
    finally:
        exporter.close()
    text = path.read_text()
    assert hours == 24

    def hourly(name: str, labels: str = "") -> dict[int, float]:
        pattern = re.compile(rf"^{name}{re.escape(labels)} (\S+) (\d+)$", re.M)
        return {
            datetime.fromtimestamp(int(stamp), OSLO).hour: float(value)
            for value, stamp in pattern.findall(text)
        }

    assert hourly("contactcenter_open") == {h: 1.0 if 8 <= h < 18 else 0.0 for h in range(24)}
    day = '{channel="email",direction="inbound",period="day",queue="support",window="current"}'
    per_contact = hourly("contactcenter_cost_per_contact", day)
    # From 09:00 (2 tickets, 100) to 23:00 (20 tickets, 1000): always 50 a ticket.
    assert set(range(9, 24)) <= set(per_contact)
    assert all(value == pytest.approx(50) for value in per_contact.values())
