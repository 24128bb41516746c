"""Ctrl-C stops `report` and `backfill` with one line and exit status 130, no traceback.

Issue 9 item 6 asks it of the exporter; the one-shot commands had kept Python's default
SIGINT behaviour, so an interrupted first ingest printed a KeyboardInterrupt traceback from
wherever it was (the file read, the store's executemany, an import).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


def example_config(tmp_path: Path) -> Path:
    """The example configuration on the committed samples (80k CDR rows: several seconds to
    ingest, so the signal lands mid-ingest), with the store in tmp_path."""
    text = (ROOT / "config" / "example.toml").read_text()
    text = text.replace('store = "state/contact-cost.db"', f'store = "{tmp_path / "s.db"}"')
    text = text.replace('"config/samples/', f'"{ROOT / "config" / "samples"}/')
    assert str(tmp_path / "s.db") in text and str(ROOT / "config" / "samples") in text
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "command",
    [["report"], ["backfill", "--start", "2026-11-01", "--end", "2026-11-30", "--output", "bf"]],
    ids=["report", "backfill"],
)
def test_ctrl_c_in_a_one_shot_command_is_quiet(tmp_path: Path, command: list[str]) -> None:
    config = example_config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", command[0], "--config.file", str(config),
         *command[1:]],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("CONTACT_COST_")},
    )
    try:
        # The store exists once the exporter is built: the ingest has started.
        wait_for(lambda: (tmp_path / "s.db").exists() or proc.poll() is not None, 60,
                 what="the ingest to start")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    stderr = err.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    assert "KeyboardInterrupt" not in stderr, stderr
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert stderr.rstrip().endswith("contact-cost-exporter: interrupted"), stderr
