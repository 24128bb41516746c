"""Backfill: last quarter's hourly gauges into TSDB blocks, queried on a real Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.backfill import hours_between

from .conftest import free_port, http_get, require_binary, wait_for
from .test_e2e import cdr_line

pytestmark = pytest.mark.e2e

CONFIG = """
currency = "USD"
timezone = "UTC"
store = "{store}"

[[sources]]
name = "pbx"
adapter = "asterisk_cdr"
path = "{cdr}"
usegmtime = true
queues = {{ "support-in" = "support" }}

[[costs]]
name = "Team"
component = "salaries"
amount = 240
per = "day"

[[costs]]
name = "Per call fee"
component = "other"
per_contact = 1.0
"""


def last_quarter(today: date) -> tuple[date, date]:
    first_this = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    last = first_this - timedelta(days=1)
    return date(last.year, 3 * ((last.month - 1) // 3) + 1, 1), last


def test_hours_between_counts_real_hours_on_dst_days() -> None:
    oslo = ZoneInfo("Europe/Oslo")
    assert len(list(hours_between(date(2026, 3, 29), date(2026, 3, 29), oslo))) == 23
    assert len(list(hours_between(date(2026, 10, 25), date(2026, 10, 25), oslo))) == 25
    assert len(list(hours_between(date(2026, 11, 2), date(2026, 11, 3), oslo))) == 48


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, check=False)


def test_backfill_last_quarter_into_prometheus(tmp_path: Path) -> None:
    prometheus = require_binary("prometheus")
    require_binary("promtool")
    start, end = last_quarter(datetime.now(UTC).date())
    day_a = start + timedelta(days=14)
    day_b = end - timedelta(days=1)
    rows = [cdr_line(f"a.{i}", datetime.combine(day_a, datetime.min.time(), UTC)
                     + timedelta(hours=9, minutes=10 * i), 100) for i in range(4)]
    rows.append(cdr_line("a.x", datetime.combine(day_a, datetime.min.time(), UTC)
                         + timedelta(hours=15), 0, "NO ANSWER"))
    rows += [cdr_line(f"b.{i}", datetime.combine(day_b, datetime.min.time(), UTC)
                      + timedelta(hours=8, minutes=5 * i), 60) for i in range(10)]
    (tmp_path / "Master.csv").write_text("".join(rows))
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(store=tmp_path / "state.db", cdr=tmp_path / "Master.csv"))

    out = tmp_path / "backfill"
    result = run_cli("backfill", "--config.file", str(config), "--start", start.isoformat(),
                     "--end", end.isoformat(), "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    hours = ((end - start).days + 1) * 24
    assert f"over {hours} hours" in result.stdout
    text = (out / "backfill.om").read_text()
    assert text.endswith("# EOF\n")
    assert "# TYPE contactcenter_cost_per_contact gauge" in text
    assert any((out / "blocks").iterdir())

    port = free_port()
    proc = subprocess.Popen(
        [prometheus, f"--storage.tsdb.path={out / 'blocks'}", "--storage.tsdb.retention.time=3650d",
         f"--web.listen-address=127.0.0.1:{port}", f"--config.file={write_empty_prom(tmp_path)}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_get(base + "/-/ready", timeout=1)[0] == 200, timeout=60,
                 what="prometheus ready")
        query = ('contactcenter_cost_per_contact{period="day",window="previous",'
                 'channel="voice",direction="inbound",queue="support"}')
        first = datetime.combine(start + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=12)
        last = datetime.combine(end, datetime.min.time(), UTC) + timedelta(hours=12)
        params = urllib.parse.urlencode({"query": query, "start": first.timestamp(),
                                         "end": last.timestamp(), "step": "1d"})
        status, body = http_get(f"{base}/api/v1/query_range?{params}")
        assert status == 200, body
        [series] = json.loads(body)["data"]["result"]
        values = {datetime.fromtimestamp(t, UTC).date(): float(v) for t, v in series["values"]}
        # Day A: 240 of salaries + 4 x 1.00 fee over 4 handled calls = 61.00 per call.
        assert values[day_a + timedelta(days=1)] == pytest.approx(61.0)
        # Day B: 240 + 10 x 1.00 over 10 calls = 25.00 per call.
        assert values[day_b + timedelta(days=1)] == pytest.approx(25.0)
        # Days without calls have no ratio (absent, not zero or NaN).
        assert len(values) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def write_empty_prom(tmp_path: Path) -> Path:
    path = tmp_path / "prometheus.yml"
    path.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    return path


def test_backfill_refuses_the_last_three_hours(tmp_path: Path) -> None:
    (tmp_path / "Master.csv").write_text("")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(store=tmp_path / "state.db", cdr=tmp_path / "Master.csv"))
    today = datetime.now(UTC).date()
    result = run_cli("backfill", "--config.file", str(config), "--start",
                     (today - timedelta(days=2)).isoformat(), "--end", today.isoformat(),
                     "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    assert "overlaps the last 3 hours" in result.stderr
    assert not (tmp_path / "out" / "backfill.om").exists()
