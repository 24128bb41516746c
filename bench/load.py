"""Bounded load test of the real exporter on loopback: concurrent scrapes at ~10k series while
ingest and recompute run, then scrapes while slowloris clients hold connections open.

    .venv/bin/python bench/load.py                 # 50 clients x 200 scrapes, 30 slow sockets
    .venv/bin/python bench/load.py --clients 10 --scrapes 20 --no-append   # a quick look

Every phase has a fixed number of requests and a time cap; nothing leaves 127.0.0.1. The
result table is printed and appended to bench/RESULTS.md (bench/LOAD-RESULTS.md when that
file does not exist yet).
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def cdr_line(uniqueid: str, start: datetime, billsec: int, disposition: str = "ANSWERED",
             dcontext: str = "support-in", userfield: str = "") -> str:
    """One Asterisk cdr_csv row in the 18-column layout (with uniqueid and userfield)."""
    answered = disposition == "ANSWERED"
    ring = 5
    answer = (start + timedelta(seconds=ring)).strftime("%Y-%m-%d %H:%M:%S") if answered else ""
    end = start + timedelta(seconds=ring + billsec)
    fields = [
        '""', '"5551234"', '"100"', f'"{dcontext}"', '"""Doe, John"" <5551234>"',
        '"SIP/trunk-0001"', '"SIP/100-0002"', '"Dial"', '"SIP/100,30"',
        f'"{start:%Y-%m-%d %H:%M:%S}"', f'"{answer}"', f'"{end:%Y-%m-%d %H:%M:%S}"',
        str(ring + billsec), str(billsec), f'"{disposition}"', '"DOCUMENTATION"',
        f'"{uniqueid}"', f'"{userfield}"',
    ]
    return ",".join(fields) + "\n"

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
queues = {{ {queues} }}
outcomes = {{ "SALE" = "sale" }}

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


PER_CLIENT = 8  # the exporter's default --web.max-connections-per-client
PLAIN = "import sys; from collector.cli import main; sys.exit(main())"
NODELAY = ("import sys; from collector.server import ExporterRequestHandler as H; "
           "H.disable_nagle_algorithm = True; from collector.cli import main; sys.exit(main())")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_rows(path: Path, queues: int, per_queue: int, start: int, now: datetime) -> int:
    """Calls in every queue spread over the last year, so every period has figures."""
    lines = []
    for q in range(queues):
        for k in range(per_queue):
            i = start + q * per_queue + k
            when = now - timedelta(minutes=5 + (i * 7919) % (360 * 24 * 60))
            answered = i % 6 != 0
            lines.append(cdr_line(f"{1700000000 + i}.{i}", when, 60 + i % 240 if answered else 0,
                                  "ANSWERED" if answered else "NO ANSWER", dcontext=f"ctx{q}",
                                  userfield="SALE" if i % 9 == 0 else ""))
    with path.open("a") as handle:
        handle.writelines(lines)
    return len(lines)


def count_series(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def client_address(index: int) -> str:
    """A loopback source address of its own for client `index` (Linux routes all of
    127.0.0.0/8 to lo): the exporter limits connections per client address, and N scrapers
    stand for N Prometheus servers, not one client holding N connections."""
    return f"127.0.{1 + index // 250}.{2 + index % 250}"


class Scraper(threading.Thread):
    """One client: `count` GETs of /metrics on a keep-alive connection, until `deadline`.

    With `interval` > 0 the requests are paced (one every `interval` seconds from `offset`)
    and latency counts from the scheduled moment, so a slow answer that delays the next
    request is not hidden (no coordinated omission). With 0 they go back to back.
    """

    def __init__(self, port: int, count: int, deadline: float, interval: float = 0.0,
                 offset: float = 0.0, source: str = "127.0.0.2") -> None:
        super().__init__(daemon=True)
        self.port, self.count, self.deadline, self.source = port, count, deadline, source
        self.interval, self.offset = interval, offset
        self.latencies: list[float] = []
        self.errors = 0
        self.error_kinds: dict[str, int] = {}

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                          source_address=(self.source, 0))

    def run(self) -> None:
        conn = self._connect()
        first = time.perf_counter() + self.offset
        for index in range(self.count):
            if time.monotonic() > self.deadline:
                break
            started = time.perf_counter()
            if self.interval:
                started = first + index * self.interval
                if started > time.perf_counter():
                    time.sleep(started - time.perf_counter())
            try:
                conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")
            except Exception as exc:  # noqa: BLE001 - counted, and a new connection
                self.errors += 1
                kind = type(exc).__name__ if not isinstance(exc, RuntimeError) else str(exc)
                self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
                conn.close()
                conn = self._connect()
                continue
            self.latencies.append(time.perf_counter() - started)
        conn.close()


def _wrk_ms(text: str) -> float:
    value = float(re.sub(r"[a-z]+$", "", text))
    unit = re.sub(r"^[0-9.]+", "", text)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk_phase(port: int, connections: int, seconds: int) -> dict[str, Any] | None:
    """Back-to-back scrapes from wrk (a C client), bounded by time, on loopback only.

    None when wrk is not installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    result = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s",
         "-H", "Accept-Encoding: gzip", f"http://127.0.0.1:{port}/metrics"],
        capture_output=True, text=True, timeout=seconds + 30, check=False,
    )
    out = result.stdout
    dist = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    total = re.search(r"(\d+) requests in ([0-9.]+)s", out)
    if result.returncode != 0 or not dist or total is None:
        raise SystemExit("wrk failed:\n" + out + result.stderr)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    kinds = {"socket": errors} if errors else {}
    if non2xx:
        kinds["non-2xx"] = int(non2xx.group(1))
    max_ms = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, re.M)
    requests = int(total.group(1))
    return {"requests": requests, "errors": sum(kinds.values()), "kinds": kinds,
            "p50_ms": _wrk_ms(dist["50"]), "p99_ms": _wrk_ms(dist["99"]),
            "max_ms": _wrk_ms(max_ms.group(1)) if max_ms else float("nan"),
            "rps": requests / float(total.group(2)), "seconds": float(total.group(2))}


def scrape_phase(port: int, clients: int, scrapes: int, cap: float,
                 rate: float = 0.0) -> dict[str, float]:
    """`clients` x `scrapes` requests; at `rate` requests/s in all, or back to back if 0."""
    deadline = time.monotonic() + cap
    interval = clients / rate if rate else 0.0
    threads = [Scraper(port, scrapes, deadline, interval, interval * i / clients,
                       client_address(i)) for i in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(cap + 15)
    took = time.monotonic() - began
    latencies = sorted(x for t in threads for x in t.latencies)
    kinds: dict[str, int] = {}
    for t in threads:
        for kind, n in t.error_kinds.items():
            kinds[kind] = kinds.get(kind, 0) + n
    return {
        "requests": len(latencies) + sum(t.errors for t in threads),
        "ok": len(latencies),
        "errors": sum(t.errors for t in threads),
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
        "max_ms": 1000 * latencies[-1] if latencies else float("nan"),
        "seconds": took,
        "rps": len(latencies) / took if took else 0.0,
        "kinds": kinds,  # type: ignore[dict-item]
    }


class Slowloris(threading.Thread):
    """`count` sockets that send a request line and then one header byte at a time."""

    def __init__(self, port: int, count: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.count, self.stop = port, count, stop
        self.opened = 0
        self.dropped_by_server = 0

    def run(self) -> None:
        socks: list[socket.socket | None] = []
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(sock)
            self.opened += 1
        while not self.stop.wait(0.5):
            for index, held in enumerate(socks):
                if held is None:
                    continue
                try:
                    held.sendall(b"X")  # a header that never ends
                except OSError:
                    self.dropped_by_server += 1
                    socks[index] = None
        for held in socks:
            if held is not None:
                held.close()


class Appender(threading.Thread):
    """Appends rows to the CDR while the scrapes run, so ingest has work every tick."""

    def __init__(self, path: Path, queues: int, start: int, now: datetime,
                 stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.path, self.queues, self.next, self.now, self.stop = path, queues, start, now, stop
        self.appended = 0

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.appended += write_rows(self.path, self.queues, 1, self.next, self.now)
            self.next += self.queues


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=90, help="queues (sets the series count)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--scrapes", type=int, default=200, help="per client")
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="requests per second in all for the paced phase")
    parser.add_argument("--cap", type=float, default=60.0, help="seconds per phase at most")
    parser.add_argument("--slow", type=int, default=30, help="slowloris sockets")
    parser.add_argument("--slow-clients", type=int, default=10)
    parser.add_argument("--slow-scrapes", type=int, default=100)
    parser.add_argument("--no-append", action="store_true", help="print only")
    parser.add_argument("--server-nodelay", action="store_true",
                        help="diagnosis: run the server with TCP_NODELAY on its sockets")
    args = parser.parse_args()

    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="cce-load-") as tmp:
        folder = Path(tmp)
        cdr = folder / "Master.csv"
        rows = write_rows(cdr, args.queues, 40, 0, now)
        queues = ", ".join(f'"ctx{q}" = "q{q:03d}"' for q in range(args.queues))
        config = folder / "config.toml"
        config.write_text(CONFIG.format(store=folder / "state.db", cdr=cdr, queues=queues))
        port = free_port()
        log = (folder / "exporter.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-c", NODELAY if args.server_nodelay else PLAIN,
             "--config.file", str(config),
             "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            series = wait_ready(port, rows, proc, folder / "exporter.log")
            stop = threading.Event()
            appender = Appender(cdr, args.queues, rows, now, stop)
            appender.start()
            load = scrape_phase(port, args.clients, args.scrapes, args.cap, args.rate)
            saturated = scrape_phase(port, args.clients, args.scrapes, args.cap)
            # wrk connects from 127.0.0.1 only: at most the per-client limit of connections.
            native = wrk_phase(port, min(args.clients, PER_CLIENT), 10)
            slow_stop = threading.Event()
            slow = Slowloris(port, args.slow, slow_stop)
            slow.start()
            deadline = time.monotonic() + 10
            while slow.opened < args.slow and time.monotonic() < deadline:
                time.sleep(0.05)
            during = scrape_phase(port, args.slow_clients, args.slow_scrapes, args.cap)
            # Hold the slow sockets past the server's 10 s request timeout: it must drop them.
            held_until = time.monotonic() + 12
            while slow.dropped_by_server < slow.opened and time.monotonic() < held_until:
                time.sleep(0.2)
            after = scrape_phase(port, 1, 5, 10)
            during["errors"] += after["errors"]
            slow_stop.set()
            stop.set()
            slow.join(5)
            appender.join(5)
            alive = proc.poll() is None
        finally:
            proc.terminate()
            code = proc.wait(30)
            log.close()
        table = report(args, series, rows, appender.appended, load, during, slow, code, alive,
                       saturated, native)
    print(table)
    if not args.no_append:
        target = REPO / "bench" / "RESULTS.md"
        if not target.exists():
            target = REPO / "bench" / "LOAD-RESULTS.md"
        with target.open("a") as handle:
            handle.write("\n" + table)
        print(f"appended to {target.relative_to(REPO)}")
    ok = load["errors"] == 0 and during["errors"] == 0 and load["p99_ms"] < 50
    return 0 if ok else 1


def wait_ready(port: int, rows: int, proc: subprocess.Popen[bytes], log_path: Path) -> int:
    """Wait (bounded) until the first recompute shows every row; the series count then."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the exporter exited:\n" + (log_path.read_text()[-3000:]))
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/metrics")
            body = conn.getresponse().read()
            conn.close()
        except OSError:
            time.sleep(0.2)
            continue
        marker = f'contactcenter_source_records_total{{source="pbx"}} {float(rows)}'.encode()
        if marker in body and b"contactcenter_cost_per_contact{" in body:
            return count_series(body)
        time.sleep(0.2)
    raise SystemExit("the exporter did not ingest the rows within 120 s")


def report(args: argparse.Namespace, series: int, rows: int, appended: int,
           load: dict[str, float], during: dict[str, float], slow: Slowloris, code: int,
           alive: bool, saturated: dict[str, float], native: dict[str, Any] | None) -> str:
    def row(name: str, r: dict[str, float]) -> str:
        kinds = ", ".join(f"{k}={v}" for k, v in r["kinds"].items()) or "none"  # type: ignore[attr-defined]
        return (f"| {name} | {int(r['requests'])} | {int(r['errors'])} ({kinds}) | "
                f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | "
                f"{r['rps']:.0f} | {r['seconds']:.1f} |")

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        f"## Load: concurrent scrapes and slow clients ({stamp})",
        "",
        f"`bench/load.py`: the real exporter (`python -m collector`) on 127.0.0.1 with "
        f"{series} series ({args.queues} queues, {rows} CDR rows at start), recompute and "
        f"ingest every 1 s while a thread appends rows ({appended} appended during the run). "
        f"Keep-alive clients sending `Accept-Encoding: gzip`, as Prometheus does, each from "
        f"its own loopback address (127.0.x.y); the slowloris sockets all from 127.0.0.1. "
        f"Server sockets: {'TCP_NODELAY (diagnostic run)' if args.server_nodelay else 'as shipped'}. "
        f"Machine: {machine()}.",
        "",
        "| phase | requests | errors | p50 ms | p99 ms | max ms | req/s | seconds |",
        "|---|---|---|---|---|---|---|---|",
        row(f"{args.clients} clients x {args.scrapes} scrapes at {args.rate:.0f} req/s in all",
            load),
        row(f"stress: {args.clients} clients x {args.scrapes} scrapes back to back", saturated),
        *([row(f"stress: {min(args.clients, PER_CLIENT)} connections from one address back "
               "to back for 10 s (wrk)", native)]
          if native else []),
        row(f"{args.slow_clients} clients x {args.slow_scrapes} scrapes while {slow.opened} "
            f"slowloris sockets trickle headers", during),
        "",
        f"Slowloris sockets closed by the server within 12 s: {slow.dropped_by_server} of "
        f"{slow.opened} (request timeout 10 s). Exporter still up after the run: "
        f"{'yes' if alive else 'NO'}; exit code on SIGTERM: {code}. "
        f"Target: no errors, p99 under 50 ms.",
        "",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
