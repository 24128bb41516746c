"""A store written by a newer exporter stops the real CLI with one line, not a traceback.

serve and the one-shot commands open the store the same way; a schema newer than this
exporter's (meta 'schema' faked to 99 here, as a later release would leave it) must be
refused by the command a user runs, with where and why, and exit 1.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.store import SqliteStore
from tests.conftest import REPO, free_port


@pytest.mark.parametrize("command", ["serve", "report"])
def test_a_newer_store_is_one_line_and_exit_1(tmp_path: Path, command: str) -> None:
    db = tmp_path / "cc.db"
    SqliteStore(db, ZoneInfo("Europe/Oslo")).close()  # schema created as this version's
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    (tmp_path / "c.toml").write_text(f'store = "{db}"\n')
    args = (["--web.listen-address", f"127.0.0.1:{free_port()}"] if command == "serve"
            else ["report"])
    run = subprocess.run(
        [sys.executable, "-m", "collector", "--config.file", str(tmp_path / "c.toml"), *args],
        cwd=REPO, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "cannot open the store" in lines[0]
    assert "store schema 99 is newer than this exporter's" in lines[0]
