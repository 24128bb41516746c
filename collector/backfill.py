"""History backfill: the gauges as they would have been each hour, as timestamped OpenMetrics.

A new Prometheus starts empty while the exports go back months. This replays the cost model
hour by hour over the store and writes one OpenMetrics file that
`promtool tsdb create-blocks-from openmetrics` turns into TSDB blocks.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from collector.config import Settings
from collector.metrics import (
    FIGURES,
    INFO,
    RECOMPUTED,
    MetricFamily,
    family_header,
    render_labels,
)
from collector.pipeline import exporter_info, figures_at
from collector.series import limit_series
from collector.store import Store

RECENT_LIMIT = timedelta(hours=3)
STEP = timedelta(hours=1)


class BackfillError(Exception):
    """The window cannot be backfilled (for example it overlaps the last 3 hours)."""


def hours_between(start: date, end: date, tz: ZoneInfo) -> Iterator[datetime]:
    """Every hour from local midnight of `start` to the last hour of `end`, inclusive.

    Steps are real hours (taken in UTC), so a 23 h and a 25 h day get 23 and 25 samples.
    """
    moment = datetime.combine(start, time(0), tz).astimezone(UTC)
    stop = datetime.combine(end + timedelta(days=1), time(0), tz).astimezone(UTC)
    while moment < stop:
        yield moment.astimezone(tz)
        moment += STEP


def _backfill_help(family: MetricFamily) -> str:
    """The family's HELP, saying the samples were backfilled hourly, not recomputed live."""
    return family.help.removesuffix(RECOMPUTED) + " Backfilled hourly."


def write_openmetrics(
    store: Store,
    settings: Settings,
    start: date,
    end: date,
    now: datetime,
    output: Path,
    on_hour: Callable[[], object] | None = None,
) -> tuple[Path, int, int]:
    """Write <output>/backfill.om; returns (path, hours, samples). `on_hour` after each hour."""
    tz = settings.tz
    last = datetime.combine(end + timedelta(days=1), time(0), tz)
    if last > now - RECENT_LIMIT:
        raise BackfillError(
            f"the window ends at {last.isoformat()}, which overlaps the last 3 hours "
            f"(before {(now - RECENT_LIMIT).astimezone(tz).isoformat()}): Prometheus already "
            "holds that time in its head block. Use an earlier --end."
        )
    if end < start:
        raise BackfillError(f"--end {end} is before --start {start}")
    output.mkdir(parents=True, exist_ok=True)
    families: tuple[MetricFamily, ...] = (*FIGURES, INFO)
    hours = samples = 0
    with tempfile.TemporaryDirectory(dir=output) as scratch:
        parts = {f.name: (Path(scratch) / f.name).open("w") for f in families}
        try:
            info = render_labels(exporter_info(settings))
            for moment in hours_between(start, end, tz):
                stamp = f"{moment.timestamp():.0f}"
                # [metrics] as on /metrics, so backfilled history has the live series
                figures = figures_at(store, settings, moment).samples
                for sample in limit_series(figures, settings.metrics):
                    parts[sample.name].write(
                        f"{sample.name}{render_labels(sample.labels)} {sample.value!r} {stamp}\n"
                    )
                    samples += 1
                parts[INFO.name].write(f"{INFO.name}{info} 1 {stamp}\n")
                samples += 1
                hours += 1
                if on_hour is not None:
                    on_hour()
        finally:
            for handle in parts.values():
                handle.close()
        target = output / "backfill.om"
        with target.open("w") as out:
            for family in families:
                out.write(family_header(family, _backfill_help(family)))
                with (Path(scratch) / family.name).open() as part:
                    shutil.copyfileobj(part, out)
            out.write("# EOF\n")
    return target, hours, samples


def create_blocks(openmetrics: Path, blocks_dir: Path) -> tuple[list[str], bool]:
    """Run promtool when it is installed; return the command and whether it ran."""
    promtool = shutil.which("promtool")
    command = [
        promtool or "promtool",
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        # One block a day instead of promtool's 2 h default: a quarter makes 92 blocks,
        # not 1,100, so both promtool and Prometheus load it in seconds.
        "--max-block-duration=24h",
        str(openmetrics),
        str(blocks_dir),
    ]
    if promtool is None:
        return command, False
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackfillError(f"promtool failed: {result.stderr.strip() or result.stdout.strip()}")
    return command, True
