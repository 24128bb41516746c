"""A real PostgreSQL for the tests: Debian's binaries, initdb into a temp dir, pg_ctl on a
loopback port, password (SCRAM) over TCP, torn down afterwards.

Finding the binaries, initdb and pg_ctl (as the `postgres` user when root) are
bench/pg_cluster.py's, shared with the benches. With CI=true a missing binary fails the
test; otherwise it skips, as tests/conftest.py's require_binary does.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import pg_cluster  # bench/ is no package: a namespace one from the repo root
from tests.conftest import free_port

SUPERUSER = "cce_admin"
PASSWORD = "pg-test-Secret-7f3a"  # only ever passed through the environment or pgpass


def pg_bindir() -> Path:
    """The directory with initdb, pg_ctl and postgres; fails in CI, skips elsewhere."""
    bindir: Path | None = pg_cluster.find_bindir()
    if bindir is not None:
        return bindir
    if os.environ.get("CI") == "true":
        pytest.fail(pg_cluster.NOT_INSTALLED)
    pytest.skip(pg_cluster.NOT_INSTALLED)


@dataclass
class PostgresServer:
    """A running cluster; `url` has no password (it comes from the environment)."""

    bindir: Path
    datadir: Path
    port: int
    log: Path
    owner: str | None = None  # the system user pg_ctl runs as (root's tests: postgres)
    options: str = ""  # the server's -o options, for a restart

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on this cluster (stop, start, restart ...), waiting for it."""
        result = pg_cluster.pg_ctl(self.bindir, self.datadir, self.owner, "-l", str(self.log),
                                   "-o", self.options, "-w", "-t", "60", *args, timeout=90)
        if result.returncode != 0:
            pytest.fail(f"pg_ctl {' '.join(args)} failed: {result.stdout}{result.stderr}")

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every session is ended (FATAL, then closed), the server
        is back on the same port when this returns."""
        self.pg_ctl("restart", "-m", "fast")

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement as the superuser, autocommit; its rows."""
        import psycopg

        with psycopg.connect(self.url_for(dbname), password=PASSWORD, autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []


def _start(base: Path) -> tuple[PostgresServer, str | None]:
    bindir = pg_bindir()
    try:
        owner: str | None = pg_cluster.cluster_owner()
    except LookupError as exc:
        pytest.fail(str(exc))
    datadir = pg_cluster.init_cluster(bindir, base, SUPERUSER, PASSWORD, owner)
    log = base / "postgres.log"
    port = free_port()
    options = (pg_cluster.loopback_options(port, datadir) + " -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
    result = pg_cluster.pg_ctl(bindir, datadir, owner, "-l", str(log), "-o", options,
                               "-w", "-t", "60", "start")
    if result.returncode != 0:
        text = log.read_text() if log.exists() else ""
        pytest.fail(f"pg_ctl start failed: {result.stdout}{result.stderr}\n{text}")
    return PostgresServer(bindir, datadir, port, log, owner, options), owner


def _stop(server: PostgresServer, owner: str | None) -> None:
    pg_cluster.pg_ctl(server.bindir, server.datadir, owner, "-m", "immediate", "-w", "stop",
                      timeout=60)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One cluster for the session, in a temp dir the `postgres` user may enter."""
    base = Path(tempfile.mkdtemp(prefix="cce-pg-"))
    server, owner = _start(base)
    try:
        yield server
    finally:
        _stop(server, owner)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_server: PostgresServer, request: pytest.FixtureRequest,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database for one test; its URL (no password: PGPASSWORD carries it)."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    postgres_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    postgres_server.admin(f'CREATE DATABASE "{name}"')
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    try:
        yield postgres_server.url_for(name)
    finally:
        postgres_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
