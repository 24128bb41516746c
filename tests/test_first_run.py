"""A first `make run` in a fresh clone leaves the tree clean: samples and state go to ignored paths.

The whole `make test` cannot run inside a test (it would recurse), so this runs `make run`
itself in a fresh clone, stops the exporter with SIGTERM once it has read the samples, and
then checks what `make test` needs: the committed samples are byte-identical, the tests
that compare them with the generator pass in the clone, and `git status --porcelain` is
empty, so every file the run wrote is ignored.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, free_port, http_get, wait_for

pytestmark = pytest.mark.e2e

VENV = Path(sys.prefix)  # the venv running the tests stands in for the clone's .venv


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc (the children of each of its threads)."""
    todo, seen = [pid], set()
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            todo.extend(c for c in children if c not in seen)
            seen.update(children)
    return seen


def exporter_pid(make_pid: int) -> int | None:
    """The contact-cost-exporter process that `make run` started."""
    for child in sorted(descendants(make_pid)):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"contact-cost-exporter") for part in cmdline[:2]):
            return child
    return None


def sample_value(body: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", body, re.M)
    return float(match.group(1)) if match else None


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_make_run_in_a_fresh_clone_leaves_the_tree_clean(tmp_path: Path, stop: str) -> None:
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("needs git and make")
    if not Path("/proc/self/task").is_dir():
        pytest.skip("finds the exporter's processes through Linux's /proc")
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    if not (VENV / "bin" / "contact-cost-exporter").exists():
        pytest.skip("the tests do not run in the project's venv")
    clone = tmp_path / "clone"
    git("clone", "--quiet", str(REPO), str(clone), cwd=tmp_path)
    committed = digests(clone / "config" / "samples")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACT_COST_")}
    env["PYTHONPATH"] = str(clone)  # the clone's code, not the checkout the venv points at
    log = (tmp_path / "make-run.log").open("wb")
    # `-o .installed`: treat the venv as installed, so make does not pip install into it.
    make = subprocess.Popen(
        ["make", "--no-print-directory", "-o", f"{VENV}/.installed", f"VENV={VENV}", "run",
         f"ARGS=--web.listen-address=127.0.0.1:{port}"],
        cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        generated = clone / "state" / "samples"

        def read_everything() -> bool:
            if make.poll() is not None:
                raise AssertionError((tmp_path / "make-run.log").read_text())
            status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            if status != 200:
                return False
            text = body.decode()
            calls = len((generated / "Master.csv").read_bytes().splitlines())
            tickets = len((generated / "tickets.csv").read_bytes().splitlines()) - 1
            name = "contactcenter_source_records_total"
            # The exporter read the generated files, not config/samples/.
            return (
                sample_value(text, name, source="pbx") == calls
                and sample_value(text, name, source="helpdesk") == tickets
                and "contactcenter_last_recompute_timestamp_seconds" in text
            )

        wait_for(read_everything, 180, interval=0.5, what="the exporter to read the samples")
        pid = exporter_pid(make.pid)
        assert pid is not None
        workers = wait_for(lambda: descendants(pid), 10, what="the recompute worker")
        if stop == "sigterm":  # a supervisor stopping the exporter: make passes its status on
            os.kill(pid, signal.SIGTERM)
            assert make.wait(timeout=60) == 0, (tmp_path / "make-run.log").read_text()
        else:  # Ctrl-C reaches the whole foreground group: make, the exporter, the worker
            os.killpg(make.pid, signal.SIGINT)
            assert make.wait(timeout=60) in (-signal.SIGINT, 130, 0)
        wait_for(lambda: not any(alive(w) for w in workers | {pid}), 15, what="all to exit")
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
        log.close()
    output = (tmp_path / "make-run.log").read_text()
    assert "Traceback" not in output, output
    assert git("status", "--porcelain", cwd=clone) == ""
    # The tests that failed after a first run when it rewrote config/samples/ pass in the
    # clone right after it (the rest of `make test` cannot run inside a test).
    after = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_generate_samples.py", "-k", "committed_samples"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert after.returncode == 0 and "2 passed" in after.stdout, after.stdout + after.stderr
    assert digests(clone / "config" / "samples") == committed
    ignored = git("status", "--porcelain", "--ignored", cwd=clone).splitlines()
    assert "!! state/" in ignored, ignored  # samples and the store, both ignored
    assert all(line.startswith("!! ") for line in ignored), ignored
