"""A throwaway PostgreSQL cluster on loopback: find the binaries, initdb, pg_ctl as its owner.

Shared by bench/pg_ingest.py (and the benches that take its server) and tests/pg_helpers.py
(the test fixtures, which import it as `bench.pg_cluster`; bench/ never imports tests/): each
decides its own server options and what a failure does (a test fails or skips, a bench exits).

Debian installs initdb/postgres under /usr/lib/postgresql/<version>/bin, off PATH; the newest
version there is used (a pg_ctl elsewhere on PATH is only taken when it sits beside an
initdb). initdb refuses to run as root, so as root the cluster belongs to the `postgres`
system user (runuser).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

NOT_INSTALLED = "PostgreSQL is not installed (apt-get install postgresql)"


def find_bindir() -> Path | None:
    """The directory with initdb, pg_ctl and postgres (the newest version), or None."""
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
    return None


def cluster_owner() -> str | None:
    """The system user the cluster runs as: `postgres` when we are root, else ourselves
    (None). LookupError when root has no `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise LookupError("running as root and there is no `postgres` user to own the "
                          "cluster") from None
    return "postgres"


def as_owner(argv: list[str], owner: str | None) -> list[str]:
    """The command line, run as `owner` (runuser) when there is one."""
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


def init_cluster(bindir: Path, base: Path, user: str, password: str,
                 owner: str | None) -> Path:
    """initdb into base/data: superuser `user` with `password` (SCRAM over TCP, trust on the
    socket), UTF8, C locale; base (and the password file, removed afterwards) handed to
    `owner` first. The data directory."""
    datadir, pwfile = base / "data", base / "pwfile"
    pwfile.write_text(password + "\n")
    if owner:
        info = pwd.getpwnam(owner)
        for path in (base, pwfile):
            os.chown(path, info.pw_uid, info.pw_gid)
    try:
        subprocess.run(
            as_owner([str(bindir / "initdb"), "-D", str(datadir), "-U", user,
                      f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                      "--encoding=UTF8", "--locale=C"], owner),
            check=True, capture_output=True, text=True,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    return datadir


def loopback_options(port: int, datadir: Path) -> str:
    """The server's -o options every cluster here has: TCP on 127.0.0.1:port only, the
    socket in the data directory."""
    return f"-c listen_addresses=127.0.0.1 -p {port} -k {datadir}"


def pg_ctl(bindir: Path, datadir: Path, owner: str | None, *args: str,
           timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run pg_ctl on the cluster as its owner (start, stop, restart ... with their options),
    output captured, never raising on its exit status."""
    return subprocess.run(
        as_owner([str(bindir / "pg_ctl"), "-D", str(datadir), *args], owner),
        capture_output=True, text=True, check=False, timeout=timeout,
    )
