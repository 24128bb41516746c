"""Ctrl-C and SIGTERM stop the real exporter, its recompute worker included, without a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import free_port, http_get, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not Path("/proc/self/task").is_dir(), reason="finds the worker through Linux's /proc"
    ),
]

CONFIG = """\
timezone = "Europe/Oslo"
store = "state.db"
interval = "1s"

[[sources]]
name = "helpdesk"
adapter = "csv"
path = "tickets.csv"
channel = "email"
columns = { id = "id", started_at = "created", handle_seconds = "handle" }
time_format = "%Y-%m-%d %H:%M:%S"

[[costs]]
name = "Rent"
component = "facilities"
amount = 3000
per = "month"
"""


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc (children of each of its threads)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that does not reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], set[int]]:
    """The real CLI in its own session (like a terminal's foreground job), recomputing."""
    (tmp_path / "config.toml").write_text(CONFIG)
    (tmp_path / "tickets.csv").write_text("id,created,handle\nt1,2026-11-25 10:00:00,240\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "--config.file", "config.toml",
         "--web.listen-address", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("CONTACT_COST_")},
    )

    def recomputed() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"exporter exited: {proc.communicate()}")
        status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=1)
        return status == 200 and b"contactcenter_last_recompute_timestamp_seconds" in body

    wait_for(recomputed, 60, what="a first recompute")
    # The spawned recompute worker (and multiprocessing's resource tracker) are running.
    children = wait_for(lambda: descendants(proc.pid), 10, what="the worker process")
    return proc, children


def stop(proc: subprocess.Popen[bytes], children: set[int], sig: int, group: bool) -> str:
    if group:
        os.killpg(proc.pid, sig)  # what Ctrl-C in a terminal does: the whole foreground group
    else:
        proc.send_signal(sig)  # `kill PID`, or a supervisor stopping only the main process
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("the exporter did not stop within 30 s") from None
    wait_for(lambda: not any(alive(pid) for pid in children), 15, what="the worker to exit")
    return stderr.decode("utf-8", "replace")


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGINT, True), (signal.SIGTERM, True), (signal.SIGTERM, False),
     (signal.SIGINT, False)],
    ids=["ctrl-c", "sigterm-group", "sigterm", "sigint"],
)
def test_signals_stop_everything_quietly(tmp_path: Path, sig: int, group: bool) -> None:
    proc, children = start(tmp_path)
    stderr = stop(proc, children, sig, group)
    assert "Traceback" not in stderr, stderr
    assert "KeyboardInterrupt" not in stderr, stderr
    assert proc.returncode in (0, 130), (proc.returncode, stderr)
    assert f"received {signal.Signals(sig).name}, shutting down" in stderr


def test_the_worker_does_not_outlive_a_killed_exporter(tmp_path: Path) -> None:
    # kill -9 gives the exporter no chance to shut the pool down: the worker notices its
    # parent is gone and exits, instead of lingering with the store open.
    proc, children = start(tmp_path)
    proc.kill()
    proc.wait(timeout=10)
    try:
        wait_for(lambda: not any(alive(pid) for pid in children), 15, what="the worker to exit")
    finally:
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=10)
