"""The projection's backtest (bench/forecast.py): on the generated year, the projection
made at half of each month's open time is within 3% of what the month came to."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from datetime import date
from pathlib import Path
from statistics import mean
from zoneinfo import ZoneInfo

BENCH = Path(__file__).resolve().parent.parent / "bench" / "forecast.py"


def _forecast():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_forecast", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_forecast"] = module
    spec.loader.exec_module(module)
    return module


def test_generated_year_error_at_half_the_month_is_under_3_percent() -> None:
    forecast = _forecast()
    from collector.config import Settings
    from collector.store import SqliteStore

    settings = Settings.model_validate(forecast.GENERATED_SETTINGS)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "g.db", ZoneInfo(settings.timezone))
        assert forecast.generate_year(store, settings, 7) > 100_000
        rows = forecast.backtest(store, settings, [date(2025, m, 1) for m in range(2, 13)])
        store.close()
    assert len(rows) == 33  # 11 months x 3 points
    half = [r for r in rows if r["share"] == 0.5]
    errors = [forecast.ape(r["cost"] / r["contacts"], r["real_cost"] / r["real_contacts"])
              for r in half]
    assert mean(errors) < 3.0
    # The projection is a forecast, not the answer read back: some error remains.
    assert max(forecast.ape(r["contacts"], r["real_contacts"]) for r in half) > 0.0
