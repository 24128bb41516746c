"""The `store` setting: a password in a URL's query is refused like user:password@, and a
store that is neither a path nor a usable postgresql:// URL is one line naming `store`.

libpq takes every connection keyword as a URI query parameter (the libpq manual's
"Connection URIs": postgresql://host/db?password=...&sslmode=require), so
`?password=` and `?sslpassword=` put the secret in the file just as `user:pw@` does; the
error names `store` and shows the value as ***, and --config.check never prints it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collector.config import ConfigError, load_settings
from collector.leader import check_store_url, redact_url
from tests.conftest import REPO

SECRET = "qs-Secret-41d9"


def store_error(tmp_path: Path, store: str) -> tuple[Path, ConfigError]:
    """A config file of only `store = "<store>"`, and the ConfigError loading it raises."""
    config = tmp_path / "c.toml"
    config.write_text(f'store = "{store}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    return config, caught.value


@pytest.mark.parametrize("query", [f"password={SECRET}", f"sslmode=require&sslpassword={SECRET}",
                                   f"pass%77ord={SECRET}"])  # %77 is 'w': libpq decodes it
def test_a_password_in_the_query_is_a_config_error_without_the_password(
    tmp_path: Path, query: str,
) -> None:
    config, error = store_error(tmp_path, f"postgresql://cce@db.example:5432/cc?{query}")
    (problem,) = error.problems
    assert problem.startswith(f"{config}: store: postgresql://cce@db.example:5432/cc?")
    assert "=***" in problem and "the password does not belong in the file" in problem
    assert SECRET not in str(error)


def test_other_query_parameters_stay_as_written() -> None:
    url = "postgresql://cce@db.example/cc?sslmode=require&application_name=cce"
    assert check_store_url(url) == url
    assert redact_url(url) == url


def test_config_check_command_never_prints_a_query_password(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'store = "postgresql://cce@127.0.0.1:5432/cc?password={SECRET}"\n')
    run = subprocess.run(
        [sys.executable, "-m", "collector", "--config.check", "--config.file", str(config)],
        cwd=REPO, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert "store: postgresql://cce@127.0.0.1:5432/cc?password=***:" in run.stderr
    assert SECRET not in run.stdout + run.stderr


@pytest.mark.parametrize(("store", "reason"), [
    # A mistyped scheme used to become a SQLite file "postgressql:/u@h/db" under the cwd.
    ("postgressql://u@h/db", "postgressql://u@h/db: only postgresql:// URLs are stores"),
    ("mysql://u:pw@h/db", "mysql://u:***@h/db: only postgresql:// URLs are stores"),
    # libpq would only say "failed to resolve host" at start-up, after the check passed.
    ("postgresql://u@h:abc/db", "postgresql://u@h:abc/db: the port is not a number"),
    ("postgresql://u@h:99999/db", "postgresql://u@h:99999/db: the port is not a number"),
    ("postgresql://u@h1:5432,h2:x/db", "postgresql://u@h1:5432,h2:x/db: the port is not a"),
])
def test_a_store_that_is_neither_a_path_nor_a_usable_url_is_one_line_naming_store(
    tmp_path: Path, store: str, reason: str,
) -> None:
    config, error = store_error(tmp_path, store)
    (problem,) = error.problems
    assert problem.startswith(f"{config}: store: {reason}"), problem
    assert "pw" not in problem


@pytest.mark.parametrize("store", ["state/x.db", "C:/x.db", "postgresql://u@h:5432/db",
                                   "postgresql://u@h1:5432,h2:5433/db",
                                   "postgresql://u@[::1]:5432/db"])
def test_paths_and_postgresql_urls_stay_valid(tmp_path: Path, store: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'store = "{store}"\n')
    assert str(load_settings(config).store) == store
