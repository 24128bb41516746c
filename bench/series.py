"""Series at scale: 200 queues x 5 channels, the series each [metrics] setting gives, the
recompute tick, and /metrics against prometheus-client rendering the same families, on
SQLite and on PostgreSQL.

    .venv/bin/python bench/series.py                # 200 queues x 5 channels, 300 scrapes
    .venv/bin/python bench/series.py --queues 20 --scrapes 50 --no-append   # a quick look
    .venv/bin/python bench/series.py --only "periods = [month]" --stores postgresql

For each configuration (all periods; and [metrics] limits that bring it near 100k series)
and each store (a fresh SQLite file; a fresh database on a PostgreSQL server the bench
starts itself, as bench/pg_ingest.py does) the bench ingests one generated CSV export, times three
recomputes in process (the tick: store -> figures -> rendered snapshot), then starts the
real exporter on that store and scrapes /metrics over one keep-alive connection. Side by
side in the same run, prometheus-client serves the very same families (parsed from that
exposition) with a custom collector, the way an exporter that builds GaugeMetricFamily
objects per scrape does, and is scraped the same way. Loopback only; every phase has a
fixed number of requests. Results print as a table and are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from load import free_port  # bench/ is on sys.path
from pg_ingest import BenchPostgres, code_state, postgres_server, publish
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.parser import text_string_to_metric_families

CHANNELS = ("voice", "email", "chat", "sms", "social")
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)  # the exporter's clock
# Days before NOW that land a contact in every window: today, yesterday, last week,
# last month, last quarter, last year.
DAYS_BACK = (0, 1, 8, 35, 100, 380)

CONFIG = """
currency = "USD"
timezone = "UTC"
interval = "1h"
store = "{store}"

[[sources]]
name = "export"
adapter = "csv"
path = "{csv}"
columns = {{ id = "id", started_at = "start", handle_seconds = "handle", queue = "queue", \
channel = "channel", direction = "direction", wait_seconds = "wait", customer = "customer", \
handled = "handled" }}
queues = {{ {queues} }}
channels = {{ {channels} }}

[[costs]]
name = "Salaries"
component = "salaries"
amount = 900000
per = "month"

[[costs]]
name = "Licences"
component = "licences"
amount = 40
per = "month"
seats = 400

[[costs]]
name = "Hardware"
component = "hardware"
amount = 120000
amortize_months = 36
from = "2025-01-01"

[[costs]]
name = "Rent"
component = "facilities"
amount = 30000
per = "month"
allocate = "contacts"

[[costs]]
name = "Carrier"
component = "telephony"
per_contact = 0.05
channels = ["voice"]
{metrics}
"""

LIMITS = {
    "all periods (default)": "",
    "periods = [month]": '[metrics]\nperiods = ["month"]\n',
    "periods = [month], cost without component": (
        '[metrics]\nperiods = ["month"]\n'
        'drop_labels = { contactcenter_cost = ["component"] }\n'
    ),
}


def write_export(path: Path, queues: int) -> int:
    """One contact per (queue, channel, direction, window day), handled with a wait."""
    rows = 0
    with path.open("w") as out:
        out.write("id,start,handle,queue,channel,direction,wait,customer,handled\n")
        for q in range(queues):
            for channel in CHANNELS:
                for direction in ("inbound", "outbound"):
                    for back in DAYS_BACK:
                        start = NOW - timedelta(days=back, hours=1)
                        rows += 1
                        out.write(f"{rows},{start:%Y-%m-%dT%H:%M:%S+00:00},{120 + rows % 300},"
                                  f"q{q},{channel},{direction},{rows % 40},+4790{rows:06d},"
                                  f"{'0' if rows % 9 == 0 else '1'}\n")
    return rows


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def scrape_times(port: int, path: str, count: int, deadline: float,
                 gzipped: bool = False) -> tuple[list[float], int]:
    """`count` GETs over one keep-alive connection (stops at `deadline`); body size.
    `gzipped`: ask as Prometheus does (Accept-Encoding: gzip), body read but not inflated."""
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times: list[float] = []
    size = 0
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            times.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"GET {path} on :{port} answered {response.status}")
            size = len(body)
    finally:
        conn.close()
    return times, size


class SameFamilies:
    """A prometheus-client custom collector yielding the exposition's families afresh per
    scrape, the way collect() is written in client_python's custom-collector guide."""

    def __init__(self, text: str) -> None:
        self.families = [
            (f.name, f.documentation, f.type, [(s.labels, s.value) for s in f.samples])
            for f in text_string_to_metric_families(text)
        ]

    def collect(self) -> Iterator[Metric]:
        for name, doc, kind, samples in self.families:
            if kind != "gauge":
                continue  # the health block's counters: the figures are the comparison
            family = GaugeMetricFamily(name, doc, labels=sorted(samples[0][0]) if samples else [])
            for labels, value in samples:
                family.add_metric([labels[k] for k in sorted(labels)], value)
            yield family


def run_one(name: str, metrics: str, queues: int, scrapes: int, workdir: Path,
            server: BenchPostgres | None = None) -> dict[str, Any]:
    """One configuration on one store: SQLite, or with `server` a fresh PostgreSQL database
    (its password through CONTACT_COST_STORE_PASSWORD, here and in the exporter's env)."""
    from collector.config import STORE_PASSWORD_ENV
    from collector.runtime import Exporter, load_config

    csv = workdir / "export.csv"
    rows = write_export(csv, queues)
    store: Path | str = workdir / "store.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACT_COST_")}
    if server is not None:
        store = server.fresh_database("series")
        os.environ[STORE_PASSWORD_ENV] = env[STORE_PASSWORD_ENV] = server.password
    qmap = ", ".join(f'"q{q}" = "q{q}"' for q in range(queues))
    cmap = ", ".join(f'"{c}" = "{c}"' for c in CHANNELS)
    config = workdir / "config.toml"
    config.write_text(CONFIG.format(store=store, csv=csv, queues=qmap, channels=cmap,
                                    metrics=metrics))
    exp = Exporter(load_config(config))
    os.environ.pop(STORE_PASSWORD_ENV, None)
    try:
        started = time.perf_counter()
        stored = exp.ingest("export")
        ingest = time.perf_counter() - started
        ticks = []
        for _ in range(3):
            started = time.perf_counter()
            snapshot = exp.recompute(NOW)
            ticks.append(time.perf_counter() - started)
        series, body = snapshot.series, snapshot.body
    finally:
        exp.close()
    result: dict[str, Any] = {"config": name, "rows": rows, "stored": stored, "series": series,
                              "store": "PostgreSQL" if server is not None else "SQLite",
                              "ingest_s": ingest, "tick_s": statistics.median(ticks),
                              "bytes": len(body)}

    # the real exporter on this store, scraped over loopback
    port = free_port()
    log = (workdir / "exporter.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "--config.file", str(config),
         "--web.listen-address", f"127.0.0.1:{port}"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                status, text = _get(port, "/metrics")
                if status == 200 and "contactcenter_cost{" in text:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "exporter.log").read_text())
            time.sleep(0.2)
        ours, size = scrape_times(port, "/metrics", scrapes, time.monotonic() + 120)
        result["ours_p50"], result["ours_p99"] = percentile(ours, 0.5), percentile(ours, 0.99)
        result["ours_n"], result["served_bytes"] = len(ours), size
        zipped, zsize = scrape_times(port, "/metrics", scrapes, time.monotonic() + 120, True)
        result["ours_gz_p99"], result["gz_bytes"] = percentile(zipped, 0.99), zsize
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()

    # prometheus-client, the same families, scraped the same way
    registry = CollectorRegistry()
    same = SameFamilies(text)
    registry.register(same)
    result["client_series"] = sum(len(f[3]) for f in same.families if f[2] == "gauge")
    started = time.perf_counter()
    generate_latest(registry)
    result["client_render_s"] = time.perf_counter() - started
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        theirs, _ = scrape_times(port, "/metrics", max(5, scrapes // 10),
                                 time.monotonic() + 180)
        theirs_gz, _ = scrape_times(port, "/metrics", max(5, scrapes // 20),
                                    time.monotonic() + 120, True)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    result["client_p50"], result["client_p99"] = (percentile(theirs, 0.5),
                                                  percentile(theirs, 0.99))
    result["client_n"] = len(theirs)
    result["client_gz_p99"] = percentile(theirs_gz, 0.99)
    result["speedup_p50"] = result["client_p50"] / result["ours_p50"]
    return result


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def table(results: list[dict[str, Any]], queues: int) -> str:
    lines = [
        f"## bench/series.py: {queues} queues x {len(CHANNELS)} channels x 2 directions, "
        f"{' and '.join(dict.fromkeys(r['store'] for r in results))} "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {_cpu_model()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, code {code_state()})",
        "",
        "| store | [metrics] | series | tick (recompute + render) | /metrics p50 | /metrics p99 | "
        "prometheus-client p50 | p99 | ours faster (p50) | gzip p99: ours, client | body, gzip |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['store']} | {r['config']} | {r['series']:,} | {_ms(r['tick_s'])} | "
            f"{_ms(r['ours_p50'])} | "
            f"{_ms(r['ours_p99'])} (n={r['ours_n']}) | {_ms(r['client_p50'])} | "
            f"{_ms(r['client_p99'])} (n={r['client_n']}) | {r['speedup_p50']:.0f}x | "
            f"{_ms(r['ours_gz_p99'])}, {_ms(r['client_gz_p99'])} | "
            f"{r['bytes'] / 1e6:.1f} MB, {r['gz_bytes'] / 1e6:.1f} MB |"
        )
    ingests = ", ".join(f"{r['store']} ({r['config']}) {r['ingest_s']:.2f} s" for r in results)
    lines += ["", f"Ingest of the {results[0]['rows']:,} rows: {ingests}. The tick is the "
              "median of three in-process recomputes; a scrape serves the "
              "snapshot's bytes as rendered, prometheus-client builds and renders the families "
              "on every scrape.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=200)
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--only", choices=sorted(LIMITS), help="one configuration")
    parser.add_argument("--stores", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql (default: both)")
    parser.add_argument("--no-append", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not stores or set(stores) - {"sqlite", "postgresql"}:
        parser.error("--stores: sqlite, postgresql or both")
    results = []
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(postgres_server()) if "postgresql" in stores else None
        for name, metrics in LIMITS.items():
            if args.only and name != args.only:
                continue
            for kind in stores:
                with tempfile.TemporaryDirectory(prefix="series-bench-") as scratch:
                    result = run_one(name, metrics, args.queues, args.scrapes, Path(scratch),
                                     server if kind == "postgresql" else None)
                    results.append(result)
                    print(result, file=sys.stderr)
    for r in results:  # the same export gives the same series on either store
        same = [o for o in results if o["config"] == r["config"]]
        if any(o["series"] != r["series"] or o["stored"] != r["stored"] for o in same):
            raise SystemExit(f"{r['config']}: the stores differ: "
                             f"{[(o['store'], o['stored'], o['series']) for o in same]}")
    text = table(results, args.queues)
    publish(text, append=not args.no_append)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
