"""Ingest rate into PostgreSQL against SQLite, on the same generated CDR file (issue 14 item 7).

    .venv/bin/python bench/pg_ingest.py                   # 200k rows, two runs per store
    .venv/bin/python bench/pg_ingest.py --rows 20000 --runs 1 --no-append   # a quick look

The file is bench/backfill.py's (the sample generator's rows over consecutive days, in
bench/out/). Each run builds a fresh store and reads the whole file through the Exporter's
real ingest (Exporter.ingest: the adapter's batches, each committed with its read
position), the stores alternating SQLite, PostgreSQL, SQLite, ... Rows/s is rows read over
the wall-clock time of the ingest; CPU time is this process's only (PostgreSQL's own
backend is another process: its CPU is counted from /proc for the run). Both stores must
end with the same contacts and the same figures, or the run fails.

PostgreSQL is started here, the way the tests start theirs (no import of tests/): Debian's
initdb into a temp dir, pg_ctl on a free loopback port, SCRAM password over TCP, fsync and
synchronous_commit left at their defaults (on), torn down afterwards. Results print as a
table and are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pg_cluster  # bench/ is on sys.path
from backfill import _adapter, _cdr_file, _settings, machine
from load import free_port

REPO = Path(__file__).resolve().parent.parent


# -- a PostgreSQL server for the bench ------------------------------------------------------
@dataclass
class BenchPostgres:
    """A running cluster: `url` has no password; `password` goes to the store separately."""

    bindir: Path
    datadir: Path
    port: int
    password: str
    owner: str | None
    user: str = "cce_bench"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url, password=self.password, autocommit=True) as conn:
            conn.execute(sql)

    def fresh_database(self, name: str) -> str:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def backend_cpu_seconds(self) -> float:
        """User + system CPU of every process of the cluster so far (from /proc)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        pid_file = self.datadir / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0])
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid, ppid = int(entry.name), int(fields[1])
            if pid == postmaster or ppid == postmaster:
                # utime, stime, and the waited-for children's (exited backends)
                total += sum(int(v) for v in fields[11:15]) / ticks
        return total


@contextlib.contextmanager
def postgres_server() -> Iterator[BenchPostgres]:
    """initdb into a temp dir, pg_ctl start on 127.0.0.1 (as `postgres` when root), stop."""
    bindir = pg_cluster.find_bindir()
    if bindir is None:
        raise SystemExit(pg_cluster.NOT_INSTALLED)
    try:
        owner = pg_cluster.cluster_owner()
    except LookupError as exc:
        raise SystemExit(str(exc)) from None
    base = Path(tempfile.mkdtemp(prefix="cce-bench-pg-"))
    datadir = base / "data"
    server = BenchPostgres(bindir, datadir, free_port(), secrets.token_urlsafe(18), owner)
    try:
        pg_cluster.init_cluster(bindir, base, server.user, server.password, owner)
        started = pg_cluster.pg_ctl(bindir, datadir, owner, "-l", str(base / "postgres.log"),
                                    "-o", pg_cluster.loopback_options(server.port, datadir),
                                    "-w", "-t", "60", "start")
        started.check_returncode()
        yield server
    finally:
        if datadir.exists():
            pg_cluster.pg_ctl(bindir, datadir, owner, "-m", "fast", "-w", "stop", timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def code_state() -> str:
    """The commit, and how many files of the code under test differ from it (a shared tree
    where others are working)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=False).stdout.strip()

    changed = [line for line in git("status", "--porcelain", "--untracked-files=no", "--",
                                    "collector", "adapters").splitlines() if line]
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{head} + {len(changed)} uncommitted file(s)" if changed else head


def pg_version(server: BenchPostgres) -> str:
    result = subprocess.run([str(server.bindir / "postgres"), "--version"],
                            capture_output=True, text=True, check=False)
    found = re.search(r"\d+\.\d+", result.stdout)
    return found.group(0) if found else "unknown"


# -- one run ----------------------------------------------------------------------------------
def ingest_once(kind: str, path: Path, workdir: Path, server: BenchPostgres | None,
                run: int) -> dict[str, Any]:
    """A fresh store of `kind`, the whole file through Exporter.ingest; rate and figures."""
    from collector.pipeline import figures_at
    from collector.runtime import Exporter, LoadedConfig
    from collector.store import SqliteStore
    from collector.store_pg import PostgresStore

    settings = _settings()
    adapter = _adapter(settings, path)
    store: Any
    if kind == "sqlite":
        db = workdir / f"ingest-{run}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        store = SqliteStore(db, settings.tz, kpi=settings.kpi_definitions,
                            customer_key=settings.customer_key)
    else:
        assert server is not None
        url = server.fresh_database(f"ingest_{run}")
        store = PostgresStore(url, settings.tz, password=server.password,
                              kpi=settings.kpi_definitions, customer_key=settings.customer_key)
    exporter = Exporter(LoadedConfig(settings, (adapter,), "bench"), store=store)
    rows = 0

    def count(_source: str, batch: Any) -> None:
        nonlocal rows
        rows += len(batch.contacts) + len(batch.legs) + len(batch.rejections) + len(
            batch.excluded)

    exporter.on_batch = count
    try:
        backend = server.backend_cpu_seconds() if server and kind != "sqlite" else 0.0
        cpu, started = time.process_time(), time.perf_counter()
        stored = exporter.ingest("pbx")
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        if server and kind != "sqlite":
            backend = server.backend_cpu_seconds() - backend
        health = exporter.health.sources()["pbx"]
        if not health.up:
            raise RuntimeError(f"{kind}: the ingest failed: {health}")
        counts = store.counts()
        moment = datetime.fromtimestamp(store.newest_start("pbx") or 0, UTC)
        figures = figures_at(store, settings, moment, lambda: 0.0)
        body = dataclasses.replace(figures, duration=0.0).snapshot.body
    finally:
        exporter.close()
    return {"store": kind, "rows": rows, "stored": stored, "seconds": seconds, "cpu": cpu,
            "location": str(db) if kind == "sqlite" else url,
            "backend_cpu": backend, "rate": rows / seconds, "counts": counts, "body": body}


def migrate_once(sqlite_store: str, server: BenchPostgres) -> dict[str, Any]:
    """`migrate` of one ingested SQLite store into a fresh database, its checks included."""
    from collector.migrate import migrate_store

    url = server.fresh_database("migrated")
    started = time.perf_counter()
    result = migrate_store(sqlite_store, url, _settings(), datetime.now(UTC),
                           password=server.password)
    return {"seconds": time.perf_counter() - started, "rows": sum(result.rows.values()),
            "tables": result.rows}


def table(results: list[dict[str, Any]], rows: int, info: dict[str, str], pg: str,
          migrated: dict[str, Any] | None = None) -> str:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["store"], []).append(r)
    lines = [
        f"## bench/pg_ingest.py: {rows:,} CDR rows through Exporter.ingest, SQLite against "
        f"PostgreSQL ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {info['cpus']} CPUs ({info['cpu']}), {info['os']}, Python {info['python']}, "
        f"SQLite {info['sqlite']}, PostgreSQL {pg} on 127.0.0.1 (fsync on), load average at "
        f"the start {info['load']}, code {code_state()}.",
        "",
        "| store | runs | rows/s (median) | wall clock | exporter CPU | PostgreSQL backend CPU "
        "| rows per CPU second (both) | contacts stored |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, runs in by.items():
        rate = statistics.median(r["rate"] for r in runs)
        secs = statistics.median(r["seconds"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        backend = statistics.median(r["backend_cpu"] for r in runs)
        lines.append(
            f"| {kind} | {len(runs)} | {rate:,.0f} | {secs:.1f} s | {cpu:.1f} s | "
            f"{f'{backend:.1f} s' if kind != 'sqlite' else '-'} | "
            f"{rows / (cpu + backend):,.0f} | {sum(runs[0]['counts'].values()):,} |"
        )
    if "sqlite" in by and "postgresql" in by:
        ratio = (statistics.median(r["rate"] for r in by["postgresql"])
                 / statistics.median(r["rate"] for r in by["sqlite"]))
        cpu_ratio = (statistics.median(r["rows"] / (r["cpu"] + r["backend_cpu"])
                                       for r in by["postgresql"])
                     / statistics.median(r["rows"] / r["cpu"] for r in by["sqlite"]))
        lines += ["", f"PostgreSQL / SQLite: {ratio:.2f} of the rate in wall-clock time, "
                  f"{cpu_ratio:.2f} in rows per CPU second (the exporter's and, for "
                  "PostgreSQL, its backend's). Both stores ended with the same contacts per "
                  "source and a byte-equal exposition at the newest contact's moment."]
    if migrated is not None:
        parts = ", ".join(f"{k} {v:,}" for k, v in migrated["tables"].items() if v)
        lines += ["", f"`migrate` of the first SQLite store into a fresh PostgreSQL database, "
                  f"its checks included: {migrated['seconds']:.1f} s for {migrated['rows']:,} "
                  f"rows ({parts})."]
    return "\n".join(lines) + "\n"


def publish(text: str, *, append: bool) -> None:
    """Print a result table and (append) add it to the end of bench/RESULTS.md."""
    print(text)
    if append:
        with (REPO / "bench" / "RESULTS.md").open("a") as out:
            out.write("\n" + text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=2, help="runs per store (alternating)")
    parser.add_argument("--no-append", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    path, generated = _cdr_file(args.rows, False)
    if generated is not None:
        print(f"generated {path} in {generated:.1f}s", file=sys.stderr, flush=True)
    info = machine()
    results: list[dict[str, Any]] = []
    with postgres_server() as server, tempfile.TemporaryDirectory(
            prefix="pg-ingest-") as scratch:
        version = pg_version(server)
        for run in range(args.runs):
            for kind in ("sqlite", "postgresql"):
                result = ingest_once(kind, path, Path(scratch), server, run)
                results.append(result)
                print(f"{kind} run {run + 1}: {result['rows']:,} rows in "
                      f"{result['seconds']:.2f} s = {result['rate']:,.0f} rows/s "
                      f"(exporter CPU {result['cpu']:.1f} s, backend {result['backend_cpu']:.1f} s)",
                      file=sys.stderr, flush=True)
        migrated = migrate_once(results[0]["location"], server)
        print(f"migrate: {migrated['rows']:,} rows in {migrated['seconds']:.2f} s",
              file=sys.stderr, flush=True)
    first = results[0]
    for r in results[1:]:
        if r["counts"] != first["counts"] or r["body"] != first["body"]:
            raise SystemExit(f"{r['store']}: the stores differ after the same ingest: "
                             f"{r['counts']} against {first['counts']}")
    text = table(results, args.rows, info, version, migrated)
    publish(text, append=not args.no_append)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
