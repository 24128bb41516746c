"""The command line's shared flags: given before or after the subcommand, they mean the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.cli import build_parser


@pytest.mark.parametrize("command", ["report", "backfill", "whatif"])
def test_config_file_and_log_level_before_the_subcommand_are_kept(command: str) -> None:
    # argparse lets a subparser's own default overwrite a value the main parser took, so
    # `--config.file x.toml report` used to read contact-cost.toml ("file not found").
    extra = ["--start", "2026-11-01", "--end", "2026-11-02", "--output", "out"] \
        if command == "backfill" else []
    before = build_parser().parse_args(
        ["--config.file", "x.toml", "--log.level", "error", command, *extra])
    assert (before.config_file, before.log_level) == (Path("x.toml"), "error")
    after = build_parser().parse_args(
        [command, "--config.file", "y.toml", "--log.level", "warn", *extra])
    assert (after.config_file, after.log_level) == (Path("y.toml"), "warn")
    neither = build_parser().parse_args([command, *extra])
    assert (neither.config_file, neither.log_level) == (Path("contact-cost.toml"), "info")
