"""A real PostgreSQL for the tests: Debian's binaries, initdb into a temp dir, pg_ctl on a
loopback port, password (SCRAM) over TCP, torn down afterwards.

Debian installs initdb/postgres under /usr/lib/postgresql/<version>/bin, off PATH; the
newest version there is used (a pg_ctl elsewhere on PATH is only taken when it sits beside
an initdb). initdb refuses to run as root, so as root the cluster belongs to the
`postgres` system user (runuser). With CI=true a missing binary fails the test; otherwise
it skips, as tests/conftest.py's require_binary does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

SUPERUSER = "cce_admin"
PASSWORD = "pg-test-Secret-7f3a"  # only ever passed through the environment or pgpass


def pg_bindir() -> Path:
    """The directory with initdb, pg_ctl and postgres; fails in CI, skips elsewhere."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for bindir in reversed(candidates):
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    initdb = shutil.which("initdb")
    if initdb is not None and (Path(initdb).parent / "pg_ctl").exists():
        return Path(initdb).parent
    message = "PostgreSQL is not installed (apt-get install postgresql)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


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
        result = subprocess.run(
            _as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l",
                       str(self.log), "-o", self.options, "-w", "-t", "60", *args], self.owner),
            capture_output=True, text=True, check=False, timeout=90,
        )
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


def _as_owner(argv: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


def _start(base: Path) -> tuple[PostgresServer, str | None]:
    bindir = pg_bindir()
    owner = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and there is no `postgres` user to own the cluster")
        owner = "postgres"
    datadir, log = base / "data", base / "postgres.log"
    pwfile = base / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if owner:
        info = pwd.getpwnam(owner)
        for path in (base, pwfile):
            os.chown(path, info.pw_uid, info.pw_gid)
    subprocess.run(
        _as_owner([str(bindir / "initdb"), "-D", str(datadir), "-U", SUPERUSER,
                   f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                   "--encoding=UTF8", "--locale=C"], owner),
        check=True, capture_output=True, text=True,
    )
    pwfile.unlink()
    port = free_port()
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {datadir} -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
    result = subprocess.run(
        _as_owner([str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(log), "-o", options,
                   "-w", "-t", "60", "start"], owner),
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        text = log.read_text() if log.exists() else ""
        pytest.fail(f"pg_ctl start failed: {result.stdout}{result.stderr}\n{text}")
    return PostgresServer(bindir, datadir, port, log, owner, options), owner


def _stop(server: PostgresServer, owner: str | None) -> None:
    subprocess.run(
        _as_owner([str(server.bindir / "pg_ctl"), "-D", str(server.datadir), "-m", "immediate",
                   "-w", "stop"], owner),
        capture_output=True, check=False, timeout=60,
    )


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
