"""Progress bars for long one-shot work (a first `report`, `backfill`), on a terminal only.

tqdm draws them on stderr (stdout stays the report's), and only when stderr is a terminal:
piped into a file, run by cron or by systemd, nothing is written. A bar shows after the work
has taken `delay` seconds, so a quick incremental read stays quiet on a terminal too.

Rows read are the records a batch carries (contacts, call legs, rejected and excluded
records). For a file source the total is the file's line count, counted once when its
first batch arrives, so the bar can say the time left; a source read over HTTP has no
total and shows rows and rows per second only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from collector.model import Batch

DELAY_SECONDS = 0.5


def on_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


def screen(stream: TextIO) -> tuple[int, int]:
    """The terminal's size for tqdm, 80 x 24 where it reports none: a pty nobody sized says
    0 x 0, and tqdm then draws nothing at all."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return 80, 24
    return (size.columns if size.columns > 0 else 80), (size.lines if size.lines > 0 else 24)


def count_lines(path: Path) -> int | None:
    """Lines in a file (a last line without its newline counts); None if it cannot be read."""
    lines, last = 0, b"\n"
    try:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
    except OSError:
        return None
    return lines + (last != b"\n")


def rows_in(batch: Batch) -> int:
    """The records one batch carries, whatever became of them."""
    return len(batch.contacts) + len(batch.legs) + len(batch.rejections) + len(batch.excluded)


class IngestProgress:
    """One bar per source while it is read: rows read, rows per second, time left."""

    def __init__(
        self, stream: TextIO | None = None, delay: float = DELAY_SECONDS, interval: float = 0.1
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = on_terminal(self.stream)
        self.delay = delay
        self.interval = interval  # the least time between two redraws
        self._bar: tqdm[Any] | None = None
        self._files: set[str] = set()

    def start(self, source: str) -> None:
        self.finish()
        self._files = set()
        if self.enabled:
            cols, rows = screen(self.stream)
            self._bar = tqdm(
                total=None, desc=source, unit=" rows", unit_scale=True, file=self.stream,
                delay=self.delay, mininterval=self.interval, leave=False, ncols=cols,
                nrows=rows,
            )

    def batch(self, source: str, batch: Batch) -> None:
        """Runtime callback after each committed batch."""
        bar = self._bar
        if bar is None:
            return
        location = batch.location
        if location and location not in self._files and os.path.isfile(location):
            self._files.add(location)
            lines = count_lines(Path(location))
            if lines is not None:
                bar.total = (bar.total or 0) + lines
        bar.update(rows_in(batch))

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def hour_bar(total: int, stream: TextIO | None = None, delay: float = DELAY_SECONDS) -> tqdm[Any]:
    """The backfill's replay, one step per hour of history: hours done, hours/s, time left."""
    out = stream or sys.stderr
    cols, rows = screen(out)
    return tqdm(
        total=total, desc="backfill", unit=" hours", file=out, delay=delay,
        disable=not on_terminal(out), leave=False, ncols=cols, nrows=rows,
    )
