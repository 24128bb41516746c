"""The store contract tests' two backends: `make_store`, parametrised SQLite / PostgreSQL.

A test module that names `pytest_plugins = ("tests.store_backends",)` and takes
`make_store` runs once on a SQLite file and once on a database of the session's real
PostgreSQL (tests/pg_helpers.py: skipped when PostgreSQL is not installed, failed with
CI=true). The factory and its helpers are tests/store_factory.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg_helpers import postgres_db, postgres_server  # noqa: F401 - fixtures
from tests.store_factory import BACKENDS, StoreFactory


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores of the backend this test run is for (see the module docstring)."""
    factory = StoreFactory(request.param, tmp_path, request)
    try:
        yield factory
    finally:
        factory.close()
