"""Progress bars: on a terminal (a pty) `report` and `backfill` show rows read, rows/s and the
time left; with stderr not a terminal they write nothing of the kind."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.model import Batch, Contact, Rejection
from collector.progress import IngestProgress, count_lines, hour_bar, rows_in

ROWS = 120_000  # about 2 s of ingest on the shared CI machine: longer than the 0.5 s delay

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
amount = 3000
per = "month"
"""


def read_all(fd: int, process: subprocess.Popen[bytes], deadline: float) -> bytes:
    """Everything the pty's other end writes until the process has exited and it is drained."""
    out = bytearray()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the slave side is closed
                break
            if not chunk:
                break
            out += chunk
        elif process.poll() is not None:
            break
    return bytes(out)


@pytest.fixture(scope="module")
def center(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A large export: tickets every 20 s through October 2026 (local times)."""
    root = tmp_path_factory.mktemp("progress")
    with (root / "tickets.csv").open("w") as out:
        out.write("id,created,handle\n")
        for n in range(ROWS):
            day, rest = divmod(n * 20, 86400)
            hour, rest = divmod(rest, 3600)
            out.write(f"t{n},2026-10-{1 + day % 28:02d} {hour:02d}:{rest // 60:02d}:"
                      f"{rest % 60:02d},120\n")
    (root / "config.toml").write_text(CONFIG)
    return root


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACT_COST_")}
    env.update(COLUMNS="120", LINES="40", TERM="xterm")
    return env


def run_on_pty(cwd: Path, *args: str) -> tuple[int, str]:
    """Run the CLI with stderr (and stdout) on a pseudo-terminal; returns (code, output)."""
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "collector", *args], cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=slave, stderr=slave, env=clean_env(),
        )
        os.close(slave)
        slave = -1
        output = read_all(master, process, time.monotonic() + 120)
        code = process.wait(30)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return code, output.decode("utf-8", "replace")


def fresh(center: Path, tmp_path: Path) -> Path:
    """A copy of the center with an empty store, so the report reads the whole export."""
    for name in ("tickets.csv", "config.toml"):
        (tmp_path / name).write_bytes((center / name).read_bytes())
    return tmp_path


# A tqdm frame: "helpdesk:  42%|████▏     | 50.4k/120k [00:01<00:01, 41.2k rows/s]"
FRAME = re.compile(
    r"helpdesk: +(\d+)%\|.*?\| *([\d.]+k?)/([\d.]+k?) \[(\d\d:\d\d)<(\d\d:\d\d), *([\d.]+k?) rows/s\]"
)


def test_first_report_on_a_terminal_shows_rows_rate_and_time_left(
    center: Path, tmp_path: Path
) -> None:
    root = fresh(center, tmp_path)
    code, output = run_on_pty(root, "report", "--config.file", "config.toml",
                              "--from", "2026-10-01", "--to", "2026-10-31", "--format", "csv")
    assert code == 0, output
    frames = FRAME.findall(output)
    assert frames, output[-2000:]
    # The total is the file's lines: 120,000 rows + the header = "120k".
    assert {f[2] for f in frames} == {"120k"}
    percents = [int(f[0]) for f in frames]
    assert percents == sorted(percents) and 0 < percents[-1] <= 100
    # The report itself is still there, every ticket counted once.
    assert "email,inbound,support,120000," in output
    # A second report reads nothing new: quick, so no bar at all.
    code, output = run_on_pty(root, "report", "--config.file", "config.toml", "--format", "json")
    assert code == 0
    assert "rows/s" not in output


def test_report_not_on_a_terminal_writes_no_bar(center: Path, tmp_path: Path) -> None:
    root = fresh(center, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "collector", "report", "--config.file", "config.toml",
         "--from", "2026-10-01", "--to", "2026-10-31", "--format", "csv"],
        cwd=root, capture_output=True, env=clean_env(), timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert b"rows/s" not in result.stderr and b"\r" not in result.stderr
    assert b"%|" not in result.stderr
    assert result.stdout.splitlines()[1].startswith(b"email,inbound,support,120000,")
    assert b"stored 120000 new contacts" in result.stderr  # the log line is still there


def test_backfill_on_a_terminal_shows_hours_and_time_left(center: Path, tmp_path: Path) -> None:
    root = fresh(center, tmp_path)
    # 1-7 Oct 2026: 7 x 24 = 168 hours replayed.
    code, output = run_on_pty(root, "backfill", "--config.file", "config.toml",
                              "--start", "2026-10-01", "--end", "2026-10-07",
                              "--output", str(tmp_path / "out"))
    assert code == 0, output[-2000:]
    assert FRAME.search(output), "no ingest bar"
    hours = re.findall(r"backfill: +(\d+)%\|.*?\| *(\d+)/168 \[\d\d:\d\d<\d\d:\d\d, *"
                       r"[\d.]+ hours/s\]", output)
    assert hours, output[-2000:]
    assert "wrote " in output and " over 168 hours" in output


# -- the pieces, in-process --------------------------------------------------------------------
def contact(n: int) -> Contact:
    return Contact(f"c{n}", "voice", "inbound", "q", 1.0e9 + n, True, 1.0, 1.0, 0.0)


def test_rows_in_counts_every_record_of_a_batch() -> None:
    rejected = Rejection("bad_time", 3, "x")
    batch = Batch([contact(1), contact(2)], [rejected], "p", "f", excluded=[rejected])
    assert rows_in(batch) == 4  # 2 contacts + 1 rejected + 1 excluded


def test_count_lines(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"h\n1\n2\n")
    (tmp_path / "b").write_bytes(b"h\n1\n2")  # last line without its newline
    (tmp_path / "c").write_bytes(b"")
    assert [count_lines(tmp_path / n) for n in "abc"] == [3, 3, 0]
    assert count_lines(tmp_path / "missing") is None


@pytest.fixture
def terminal() -> Iterator[tuple[int, io.TextIOWrapper]]:
    master, slave = pty.openpty()
    stream = io.TextIOWrapper(os.fdopen(slave, "wb", buffering=0), encoding="utf-8")
    yield master, stream
    stream.close()
    os.close(master)


def drain(fd: int) -> str:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        out += os.read(fd, 65536)
    return out.decode()


def test_ingest_bar_on_a_terminal_totals_the_file(
    tmp_path: Path, terminal: tuple[int, io.TextIOWrapper]
) -> None:
    master, stream = terminal
    export = tmp_path / "x.csv"
    export.write_text("id\n" + "".join(f"{n}\n" for n in range(9)))  # 10 lines
    progress = IngestProgress(stream, delay=0, interval=0)
    assert progress.enabled
    progress.start("pbx")
    progress.batch("pbx", Batch([contact(n) for n in range(4)], [], "p", str(export)))
    progress.batch("pbx", Batch([contact(n) for n in range(5)], [], "p", str(export)))
    progress.finish()
    shown = drain(master)
    # 10 lines in the file: 4 of them read, then 9 (tqdm's unit_scale writes 4.00/10.0).
    assert "pbx:  40%|" in shown and "| 4.00/10.0 [" in shown
    assert "pbx:  90%|" in shown and "| 9.00/10.0 [" in shown and " rows/s]" in shown


def test_quiet_when_not_a_terminal(tmp_path: Path) -> None:
    stream = io.StringIO()
    progress = IngestProgress(stream, delay=0)
    assert not progress.enabled
    progress.start("pbx")
    progress.batch("pbx", Batch([contact(1)], [], "p", str(tmp_path)))
    progress.finish()
    with hour_bar(24, stream, delay=0) as bar:
        for _ in range(24):
            bar.update()
    assert stream.getvalue() == ""
