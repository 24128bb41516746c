"""Bounded soak of the real exporter on loopback: does the process's memory stay flat?

    .venv/bin/python bench/soak.py                        # one hour, a sample every 30 s
    .venv/bin/python bench/soak.py --seconds 300 --tracemalloc   # where the growth comes from

The exporter (`collector.cli main`) runs as a child process at a 1 s recompute and read
interval, with an Asterisk CDR file and a generic CSV export that both grow every second,
and is scraped once a second (keep-alive, gzip, as Prometheus does), with the landing page
and /healthz now and then. Every `--sample` seconds the script records the main process's
RSS, the recompute worker's RSS, open file descriptors and threads. It stops by itself
after `--seconds`; nothing leaves 127.0.0.1.

The curve goes to bench/out/soak-<stamp>.csv as it is measured (so a partial run still
leaves one), and a summary table replaces the `soak.py` section of bench/RESULTS.md.
With `--tracemalloc` the exporter traces its allocations and dumps a snapshot at every
sample; the script prints the 25 lines whose allocations grew most between the first
sample after warm-up and the last.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The bench scripts share the CDR row writer, the exporter's command line and a free port
# (bench/ is on sys.path).
from load import PLAIN, cdr_line, free_port

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
RESULTS = REPO / "bench" / "RESULTS.md"
BEGIN, END = "<!-- soak.py: begin -->", "<!-- soak.py: end -->"

CONFIG = """
currency = "USD"
timezone = "UTC"
interval = "1s"
store = "{store}"

[benchmark]
low = 2.70
high = 5.60

[[sources]]
name = "pbx"
adapter = "asterisk_cdr"
path = "{cdr}"
interval = "1s"
usegmtime = true
queues = {{ "support-in" = "support", "sales-out" = "telesales" }}
directions = {{ "sales-out" = "outbound" }}
outcomes = {{ "SALE" = "sale" }}

[[sources]]
name = "helpdesk"
adapter = "csv"
path = "{tickets}"
channel = "email"
queues = {{ "support" = "support", "billing" = "billing" }}
time_format = "%Y-%m-%d %H:%M:%S"

[sources.columns]
id = "Ticket ID"
started_at = "Created at"
handle_seconds = "Handle time (s)"
queue = "Group"

[[costs]]
name = "Outsourced handling"
component = "other"
per_contact = 2.0

[[costs]]
name = "Carrier minutes"
component = "telephony"
per_minute = 0.6
channels = ["voice"]

[[costs]]
name = "Licences"
component = "licences"
amount = 900.0
per = "month"
"""

# load.py's PLAIN, with allocations traced: at every SIGUSR1 a tracemalloc snapshot, and one
# line of where the memory is: Python objects (traced), SQLite's own allocator, glibc's heap
# in use and free-but-kept (fragmentation), and live objects.
TRACED = (
    "import ctypes, ctypes.util, gc, os, signal, sqlite3, sys, time, tracemalloc\n"
    "tracemalloc.start(1)\n"
    "class Mallinfo2(ctypes.Structure):\n"
    "    _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks',\n"
    "                'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]\n"
    "libc = ctypes.CDLL(ctypes.util.find_library('c'))\n"
    "libc.mallinfo2.restype = Mallinfo2\n"
    "lite = ctypes.CDLL(ctypes.util.find_library('sqlite3'))\n"
    "lite.sqlite3_memory_used.restype = ctypes.c_int64\n"
    "def dump(signum, frame):\n"
    "    path = os.environ['SOAK_TRACE_DIR'] + '/%.0f.snap' % time.time()\n"
    "    tracemalloc.take_snapshot().dump(path + '.part'); os.replace(path + '.part', path)\n"
    "    m = libc.mallinfo2()\n"
    "    with open(os.environ['SOAK_TRACE_DIR'] + '/memory.csv', 'a') as out:\n"
    "        out.write('%.0f,%d,%d,%d,%d,%d,%d\\n' % (time.time(),\n"
    "                  tracemalloc.get_traced_memory()[0], lite.sqlite3_memory_used(),\n"
    "                  m.uordblks + m.hblkhd, m.fordblks, m.arena, len(gc.get_objects())))\n"
    "signal.signal(signal.SIGUSR1, dump)\n"
    "from collector.cli import main; sys.exit(main())\n"
)
MEMORY_FIELDS = ("time", "python_traced", "sqlite_used", "malloc_in_use", "malloc_free_kept",
                 "main_arena", "gc_objects")


class Appender(threading.Thread):
    """Every second: `rate` CDR rows and `rate` CSV tickets started a few minutes ago."""

    def __init__(self, cdr: Path, tickets: Path, rate: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.cdr, self.tickets, self.rate, self.stop = cdr, tickets, rate, stop
        self.appended = 0

    def run(self) -> None:
        while not self.stop.wait(1.0):
            now = datetime.now(UTC).replace(microsecond=0)
            calls, tickets = [], []
            for _ in range(self.rate):
                i = self.appended
                when = now - timedelta(minutes=2 + i % 50)
                answered = i % 6 != 0
                calls.append(cdr_line(
                    f"{1700000000 + i}.{i}", when, 60 + i % 240 if answered else 0,
                    "ANSWERED" if answered else "NO ANSWER",
                    "sales-out" if i % 4 == 0 else "support-in", "SALE" if i % 9 == 0 else ""))
                group = "billing" if i % 3 == 0 else "support"
                tickets.append(f"T{i},{when:%Y-%m-%d %H:%M:%S},{120 + i % 600},{group}\n")
                self.appended += 1
            with self.cdr.open("a") as handle:
                handle.writelines(calls)
            with self.tickets.open("a") as handle:
                handle.writelines(tickets)


class Scraper(threading.Thread):
    """/metrics once a second on one keep-alive connection; / and /healthz every 10th time."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.ok = 0
        self.errors = 0
        self.last_body = b""

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        count = 0
        while not self.stop.wait(1.0):
            count += 1
            paths = ["/metrics"] + (["/", "/healthz"] if count % 10 == 0 else [])
            for path in paths:
                try:
                    conn.request("GET", path, headers={"Accept-Encoding": "identity"})
                    response = conn.getresponse()
                    body = response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}")
                    if path == "/metrics":
                        self.last_body = body
                    self.ok += 1
                except (OSError, RuntimeError, http.client.HTTPException):
                    self.errors += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()


def status_kb(pid: int, field: str) -> int:
    """A field of /proc/<pid>/status (VmRSS in kB, Threads); 0 if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(rf"^{field}:\s+(\d+)", text, re.M)
    return int(found.group(1)) if found else 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(x) for x in task.read_text().split()]
    return found


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def worker_rss_kb(pid: int) -> int:
    """The largest child: the recompute worker (the other child is the resource tracker)."""
    return max((status_kb(child, "VmRSS") for child in children(pid)), default=0)


def metric(body: bytes, name: str) -> float:
    total = 0.0
    for line in body.decode(errors="replace").splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_ready(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the exporter exited:\n" + log_path.read_text()[-3000:])
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the exporter was not ready within 60 s")


def top_growth(trace_dir: Path, skip: int) -> list[str]:
    """The lines whose traced allocations grew most from the first snapshot after `skip`."""
    snaps = sorted(trace_dir.glob("*.snap"))
    if len(snaps) <= skip + 1:
        return ["(not enough tracemalloc snapshots)"]
    first = tracemalloc.Snapshot.load(str(snaps[skip]))
    last = tracemalloc.Snapshot.load(str(snaps[-1]))
    minutes = (int(snaps[-1].stem.split(".")[0]) - int(snaps[skip].stem.split(".")[0])) / 60
    lines = [f"tracemalloc: growth over {minutes:.1f} min (snapshot {skip} to {len(snaps) - 1})"]
    for stat in last.compare_to(first, "lineno")[:25]:
        lines.append(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  "
                     f"{stat.traceback}")
    return lines


def summarise(rows: list[dict[str, float]], args: argparse.Namespace, appended: int,
              scraper: Scraper, code: int | None) -> str:
    def at(minute: float) -> dict[str, float] | None:
        candidates = [r for r in rows if r["elapsed_s"] >= minute * 60 - args.sample / 2]
        return candidates[0] if candidates else None

    marks = [m for m in (0, 5, 10, 15, 30, 45, 60, 90, 120) if m * 60 <= rows[-1]["elapsed_s"]]
    table = ["| minute | main RSS MB | worker RSS MB | main fds | main threads | contacts stored |",
             "|---|---|---|---|---|---|"]
    shown: list[dict[str, float]] = []
    for minute in [*marks, rows[-1]["elapsed_s"] / 60]:
        row = at(minute) if minute in marks else rows[-1]
        if row is None or any(row is seen for seen in shown):
            continue
        shown.append(row)
        table.append(f"| {row['elapsed_s'] / 60:.1f} | {row['main_rss_kb'] / 1024:.1f} | "
                     f"{row['worker_rss_kb'] / 1024:.1f} | {int(row['fds'])} | "
                     f"{int(row['threads'])} | {int(row['records'])} |")

    def slope(key: str, after_minutes: float) -> float:
        """Least-squares MB per minute over the samples after `after_minutes`."""
        pts = [(r["elapsed_s"] / 60, r[key] / 1024) for r in rows
               if r["elapsed_s"] >= after_minutes * 60]
        if len(pts) < 3:
            return float("nan")
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        den = sum((x - mx) ** 2 for x, _ in pts)
        return sum((x - mx) * (y - my) for x, y in pts) / den if den else float("nan")

    warm = min(10.0, rows[-1]["elapsed_s"] / 120)
    half = rows[-1]["elapsed_s"] / 120  # minutes: the second half of the run
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    marker = args.tree / "COMMIT"  # a `git archive` copy has no .git: its commit, written down
    commit = marker.read_text().strip() if marker.exists() else subprocess.run(
        ["git", "-C", str(args.tree), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False).stdout.strip()
    return "\n".join([
        BEGIN,
        f"## Soak: memory over {rows[-1]['elapsed_s'] / 60:.0f} minutes ({stamp})",
        "",
        f"`bench/soak.py --seconds {args.seconds:g}`: the real exporter on 127.0.0.1 at a 1 s "
        f"recompute and read interval, an Asterisk CDR file and a CSV export each growing by "
        f"{args.rate} rows a second ({appended} rows each in all), /metrics scraped every "
        f"second ({scraper.ok} answers, {scraper.errors} errors). Code: {args.tree}"
        f"{' at ' + commit if commit else ''}. RSS is VmRSS from /proc.",
        "",
        *table,
        "",
        f"Main RSS slope after minute {warm:.0f}: {slope('main_rss_kb', warm):+.3f} MB/min, "
        f"over the second half: {slope('main_rss_kb', half):+.3f} MB/min; worker: "
        f"{slope('worker_rss_kb', warm):+.3f} MB/min. Exit code on SIGTERM: {code}. "
        f"Full curve: `bench/out/{args.csv.name}`.",
        END,
        "",
    ])


def write_results(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3600.0, help="how long (stops itself)")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--rate", type=int, default=5, help="rows per second into each export")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the exporter's allocations and print the top growth")
    parser.add_argument("--tree", type=Path, default=REPO,
                        help="run the exporter from this source tree (e.g. a git archive)")
    parser.add_argument("--no-results", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    if args.seconds > 4 * 3600:
        parser.error("--seconds is capped at 4 hours")
    OUT.mkdir(parents=True, exist_ok=True)
    args.csv = OUT / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%S}.csv"

    with tempfile.TemporaryDirectory(prefix="cce-soak-") as tmp:
        folder = Path(tmp)
        cdr, tickets = folder / "Master.csv", folder / "tickets.csv"
        cdr.write_text("")
        tickets.write_text("Ticket ID,Created at,Handle time (s),Group\n")
        config = folder / "config.toml"
        config.write_text(CONFIG.format(store=folder / "state.db", cdr=cdr, tickets=tickets))
        trace_dir = folder / "trace"
        trace_dir.mkdir()
        port = free_port()
        log_path = folder / "exporter.log"
        env = {**os.environ, "PYTHONPATH": str(args.tree), "SOAK_TRACE_DIR": str(trace_dir)}
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", TRACED if args.tracemalloc else PLAIN,
                 "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}",
                 "--log.level", "warn"],
                cwd=args.tree, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        stop = threading.Event()
        appender = Appender(cdr, tickets, args.rate, stop)
        scraper = Scraper(port, stop)
        rows: list[dict[str, float]] = []
        code: int | None = None
        try:
            wait_ready(port, proc, log_path)
            appender.start()
            scraper.start()
            began = time.monotonic()
            with args.csv.open("w", newline="") as handle:
                fields = ["elapsed_s", "main_rss_kb", "worker_rss_kb", "fds", "threads",
                          "records", "scrapes_ok", "scrape_errors"]
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                while True:
                    elapsed = time.monotonic() - began
                    if proc.poll() is not None:
                        print("the exporter exited early", file=sys.stderr)
                        break
                    if args.tracemalloc:
                        os.kill(proc.pid, signal.SIGUSR1)
                    row = {
                        "elapsed_s": round(elapsed, 1),
                        "main_rss_kb": status_kb(proc.pid, "VmRSS"),
                        "worker_rss_kb": worker_rss_kb(proc.pid),
                        "fds": fd_count(proc.pid),
                        "threads": status_kb(proc.pid, "Threads"),
                        "records": metric(scraper.last_body, "contactcenter_source_records_total"),
                        "scrapes_ok": scraper.ok,
                        "scrape_errors": scraper.errors,
                    }
                    rows.append(row)
                    writer.writerow(row)
                    handle.flush()
                    print(f"{elapsed / 60:6.1f} min  main {row['main_rss_kb'] / 1024:7.1f} MB  "
                          f"worker {row['worker_rss_kb'] / 1024:7.1f} MB  fds {row['fds']}  "
                          f"threads {row['threads']}  records {int(row['records'])}", flush=True)
                    if elapsed >= args.seconds:
                        break
                    time.sleep(min(args.sample, max(0.0, args.seconds - elapsed)))
        finally:
            stop.set()
            appender.join(5)
            scraper.join(15)
            proc.terminate()
            try:
                code = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(10)
        errors = log_path.read_text(errors="replace")
        if errors.strip():
            print("exporter log (last 2000 chars):\n" + errors[-2000:])
        if args.tracemalloc:
            print("\n".join(top_growth(trace_dir, skip=min(2, len(rows) - 2))))
            memory = trace_dir / "memory.csv"
            if memory.exists():
                print("where the main process's memory is, per sample (MB; objects):")
                print("  " + "  ".join(MEMORY_FIELDS[1:]))
                for line in memory.read_text().splitlines():
                    values = [int(x) for x in line.split(",")[1:]]
                    print("  " + "  ".join(f"{v / 2**20:.2f}" for v in values[:-1])
                          + f"  {values[-1]}")
    if not rows:
        return 1
    section = summarise(rows, args, appender.appended, scraper, code)
    print(section)
    if not args.no_results:
        write_results(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
