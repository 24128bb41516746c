"""[metrics]: periods, windows and dropped labels, and the series count --config.check prints.

The figures are the golden fixture's (tests/test_golden.py works them out by hand): at
26 Nov 12:00 the month/current voice/inbound support row has salaries 850, rent 297.5
and carrier 0.05 (300 s at 0.01/min), sales has salaries 1700, rent 297.5, carrier 0.10.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.config import ConfigError, load_settings
from collector.configcheck import check_config, report_check, series_estimate
from collector.metrics import Sample
from collector.runtime import load_config
from collector.series import MetricsSettings, count_series, limit_series
from collector.snapshot import build_snapshot

from .conftest import FIXTURES, ExporterProcess, golden_exporter, parse_exposition, wait_for

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=ZoneInfo("Europe/Oslo"))
MONTH = {"period": "month", "window": "current", "channel": "voice", "direction": "inbound"}


def test_dropped_component_is_summed_and_periods_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = golden_exporter(tmp_path, monkeypatch, NOW, metrics='periods = ["month"]\n'
                          'drop_labels = { contactcenter_cost = ["component"] }\n')
    try:
        text = exp.metrics_body().decode()
    finally:
        exp.close()
    values = parse_exposition(text)

    def value(name: str, **labels: str) -> float | None:
        return values.get((name, frozenset(labels.items())))

    # support: 850 + 297.5 + 0.05 = 1147.55, one series without `component`
    assert value("contactcenter_cost", **MONTH, queue="support") == pytest.approx(1147.55)
    # sales: 1700 + 297.5 + 0.10 = 1997.60
    assert value("contactcenter_cost", **MONTH, queue="sales") == pytest.approx(1997.60)
    assert 'component="salaries",direction' not in text.split("contactcenter_cost_unallocated")[0]
    # the ratio is computed from the full parts and is unchanged
    assert value("contactcenter_cost_per_contact", **MONTH, queue="support") == pytest.approx(
        1147.55
    )
    # unallocated keeps its component (not dropped there)
    assert any(n == "contactcenter_cost_unallocated" and ("component", "salaries") in ls
               for n, ls in values)
    # only month series: no day/week/quarter/year, both windows
    periods = {dict(ls).get("period") for _, ls in values} - {None}
    assert periods == {"month"}
    windows = {dict(ls).get("window") for _, ls in values} - {None}
    assert windows == {"current", "previous"}
    # the TYPE/HELP lines stay, and no sample carries the dropped label
    assert "# TYPE contactcenter_cost gauge" in text
    cost_lines = [ln for ln in text.splitlines() if ln.startswith("contactcenter_cost{")]
    assert cost_lines and all("component=" not in ln for ln in cost_lines)


def test_default_metrics_settings_leave_samples_untouched() -> None:
    samples = [Sample("contactcenter_cost", {"period": "day", "window": "current"}, 1.0)]
    assert limit_series(samples, MetricsSettings()) is samples


def test_limit_series_sums_in_first_seen_order() -> None:
    base = {"period": "day", "window": "current", "channel": "voice", "direction": "inbound"}
    samples = [
        Sample("contactcenter_cost", {**base, "queue": "a", "component": "salaries"}, 10.0),
        Sample("contactcenter_cost", {**base, "queue": "b", "component": "salaries"}, 1.0),
        Sample("contactcenter_cost", {**base, "queue": "a", "component": "rent"}, 2.5),
        Sample("contactcenter_cost", {**base, "period": "week", "queue": "a",
                                      "component": "rent"}, 99.0),
        Sample("contactcenter_cost_per_contact", {**base, "queue": "a"}, 3.0),
        Sample("contactcenter_fcr_window_seconds", {}, 7.0),
        Sample("contactcenter_cost_per_contact", {**base, "window": "previous", "queue": "a"},
               4.0),
    ]
    limits = MetricsSettings(periods=("day",), windows=("current",),
                             drop_labels={"contactcenter_cost": ("component", "queue")})
    out = limit_series(samples, limits)
    # a+b+a of the day: 10 + 1 + 2.5 = 13.5; the week row and the previous window left out;
    # the ratio kept as is, a family without period or window kept
    assert out == [
        Sample("contactcenter_cost", base, 13.5),
        Sample("contactcenter_cost_per_contact", {**base, "queue": "a"}, 3.0),
        Sample("contactcenter_fcr_window_seconds", {}, 7.0),
    ]
    # a family with a period but no window is filtered by its period only
    kept = limit_series([Sample("x", {"period": "day"}, 1.0), Sample("x", {"period": "week"},
                                                                     2.0)], limits)
    assert kept == [Sample("x", {"period": "day"}, 1.0)]
    snap = build_snapshot(out, {"currency": "EUR", "timezone": "UTC", "version": "x"}, 0.0,
                          0.0, None, limits)
    assert (b'contactcenter_cost{channel="voice",direction="inbound",period="day",'
            b'window="current"} 13.5\n') in snap.body


@pytest.mark.parametrize(
    ("metrics", "says"),
    [
        ('drop_labels = { contactcenter_cost_per_contact = ["queue"] }', "not a sum"),
        ('drop_labels = { contactcenter_cost = ["period"] }', "periods and windows instead"),
        ('drop_labels = { contactcenter_cost = ["outcome"] }', "has no label 'outcome'"),
        ('drop_labels = { contactcenter_nope = ["queue"] }', "is not a figure family"),
        ('periods = ["fortnight"]', "periods[0]: Input should be 'day'"),
        ("periods = []", "at least one"),
    ],
)
def test_bad_metrics_section_is_one_readable_problem(tmp_path: Path, metrics: str,
                                                     says: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[metrics]\n{metrics}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert any(says in p and "metrics" in p for p in caught.value.problems), caught.value.problems


def test_count_series_by_hand() -> None:
    # 10 period windows, 6 slices (1 channel x 2 directions x 3 queues), 3 components,
    # 1 outcome
    counts = count_series(MetricsSettings(), slices=6, components=3, queues=3, outcomes=1,
                          channels=1)
    assert counts["contactcenter_contacts"] == 60
    assert counts["contactcenter_cost"] == 180  # x 3 components
    assert counts["contactcenter_cost_unallocated"] == 30
    assert counts["contactcenter_outcomes"] == 30  # 10 x 3 queues x 1 outcome
    assert counts["contactcenter_benchmark_low"] == 2  # the channel and "default"
    assert counts["contactcenter_service_level_threshold_seconds"] == 4  # 3 and "default"
    assert counts["contactcenter_fcr_window_seconds"] == 1
    # month only, cost without component and queue: one per (channel, direction) = 2, x 2
    limited = count_series(
        MetricsSettings(periods=("month",),
                        drop_labels={"contactcenter_cost": ("component", "queue")}),
        slices=6, components=3, queues=3, outcomes=1, channels=1,
    )
    assert limited["contactcenter_cost"] == 4
    assert limited["contactcenter_contacts"] == 12


def test_config_check_prints_a_bound_the_exporter_stays_under(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = golden_exporter(tmp_path, monkeypatch, NOW, metrics="")
    try:
        text = exp.metrics_body().decode()
    finally:
        exp.close()
    actual = sum(1 for ln in text.splitlines()
                 if ln.startswith("contactcenter_") and not ln.startswith("contactcenter_source")
                 and not ln.startswith("contactcenter_scheduler")
                 and not ln.startswith("contactcenter_info")
                 and not ln.startswith("contactcenter_recompute")
                 and not ln.startswith("contactcenter_last_recompute")
                 and not ln.startswith("contactcenter_store")
                 and not ln.startswith("contactcenter_webhook")
                 and not ln.startswith("contactcenter_config"))
    config = load_config(tmp_path / "config.toml")
    try:
        _, counts = series_estimate(config)
    finally:
        for adapter in config.adapters:
            adapter.close()
    bound = sum(counts.values())
    # The fixture produces 2 queues (support, sales) of voice/inbound; the bound also counts
    # queue `other`, outbound and the other channels the asterisk source may give.
    assert actual <= bound
    assert actual > 0


def test_config_check_output_names_the_series(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(FIXTURES / "golden" / "Master.csv", tmp_path / "Master.csv")
    text = (FIXTURES / "golden" / "config.toml").read_text()
    (tmp_path / "all.toml").write_text(text)
    (tmp_path / "few.toml").write_text(
        text + '\n[metrics]\nperiods = ["month"]\nwindows = ["current"]\n'
        'drop_labels = { contactcenter_cost = ["component"] }\n'
    )

    def printed(name: str) -> int:
        assert report_check(check_config(tmp_path / name, {})) == 0
        line = next(ln for ln in capsys.readouterr().out.splitlines()
                    if ln.startswith("series: "))
        return int(line.split()[3].replace(",", ""))

    full, few = printed("all.toml"), printed("few.toml")
    # one period window of ten, and cost without its 3 components (salaries, facilities,
    # telephony): every family with a period shrinks tenfold, cost thirtyfold; the bands,
    # thresholds and FCR window (no period) stay; the projected families (current window of
    # week..year only) shrink fourfold: so overall at least eightfold
    assert few * 8 <= full
    assert few < full


def test_the_running_exporter_applies_metrics_and_a_reload_changes_it(
    tmp_path: Path, start_exporter: Callable[..., ExporterProcess]
) -> None:
    # The real CLI: figures come from the recompute worker process, so [metrics] must
    # travel with the settings; a SIGHUP with another [metrics] applies at the next tick.
    shutil.copy(FIXTURES / "golden" / "Master.csv", tmp_path / "Master.csv")
    base = (FIXTURES / "golden" / "config.toml").read_text().replace('"60s"', '"1s"')
    config = tmp_path / "config.toml"
    config.write_text(base + '\n[metrics]\nperiods = ["month"]\n'
                              'drop_labels = { contactcenter_cost = ["component"] }\n')
    exporter = start_exporter(config)

    def cost_lines() -> list[str]:
        return [ln for ln in exporter.metrics().splitlines()
                if ln.startswith("contactcenter_cost{")]

    lines = wait_for(cost_lines, what="cost series")
    assert all("component=" not in ln and 'period="month"' in ln for ln in lines)
    config.write_text(base + '\n[metrics]\nperiods = ["year"]\n')
    exporter.proc.send_signal(signal.SIGHUP)
    lines = wait_for(lambda: [ln for ln in cost_lines() if 'period="year"' in ln],
                     what="year series after the reload")
    assert all("component=" in ln for ln in cost_lines())
    assert not [ln for ln in cost_lines() if 'period="month"' in ln]


def test_backfill_writes_the_series_metrics_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector.backfill import write_openmetrics

    exp = golden_exporter(tmp_path, monkeypatch, NOW, metrics='periods = ["month"]\n'
                          'drop_labels = { contactcenter_cost = ["component"] }\n')
    try:
        # two hours of 25 Nov (the golden CDR has calls in November), well before NOW
        start = end = datetime(2026, 11, 25).date()
        path, hours, _ = write_openmetrics(exp.store, exp.config.settings, start, end, NOW,
                                           tmp_path / "out")
    finally:
        exp.close()
    assert hours == 24
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("contactcenter_")]
    cost = [ln for ln in lines if ln.startswith("contactcenter_cost{")]
    assert cost and all("component=" not in ln for ln in cost)
    assert all('period="month"' in ln for ln in lines if "period=" in ln)
