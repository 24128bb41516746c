"""The recording rules' evaluation time at scale, with a replica pair, before and after
they count a replica set once (issue 14): what the one-replica selector costs Prometheus.

    .venv/bin/python bench/rules_eval.py --queues 200            # ~100k series per replica
    .venv/bin/python bench/rules_eval.py --queues 20 --evals 5   # a quick look

Two loopback HTTP servers serve one synthetic exposition each (the same figures under two
instances, as two replicas of one store do: periods x windows x channels x queues, cost by
component, every figure part the rules read). A real Prometheus scrapes both every 2 s
and evaluates recording_rules.yml every 2 s; the bench adds up the rules'
evaluationTime (the service-hours subquery left out, the same in both) from /api/v1/rules over a fixed number of evaluations, once with the rules
given (--old: a file of the rules before the change) and once with the shipped rules.
Loopback only; Prometheus runs in a temporary directory and is stopped afterwards.
"""

from __future__ import annotations

import argparse
import http.server
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from collector.model import PERIODS, WINDOWS

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "config" / "prometheus" / "recording_rules.yml"
CHANNELS = ("voice", "email", "chat", "sms", "social")
COMPONENTS = ("salaries", "licences", "telephony", "facilities", "other")
PARTS = (
    "contactcenter_contacts", "contactcenter_contacts_abandoned",
    "contactcenter_contacts_abandoned_short", "contactcenter_contacts_answered_in_threshold",
    "contactcenter_wait_seconds", "contactcenter_handle_time_seconds",
    "contactcenter_contacts_identified", "contactcenter_contacts_repeat",
)


def exposition(queues: int) -> tuple[bytes, int]:
    lines = ["contactcenter_last_recompute_timestamp_seconds 1.7e9"]
    for period in PERIODS:
        for window in WINDOWS:
            for channel in CHANNELS:
                for q in range(queues):
                    base = (f'period="{period}",window="{window}",channel="{channel}",'
                            f'direction="inbound",queue="q{q}"')
                    for part in PARTS:
                        lines.append(f"{part}{{{base}}} {q + 10}")
                    for component in COMPONENTS:
                        lines.append(f'contactcenter_cost{{{base},component="{component}"}} {q}')
    return ("\n".join(lines) + "\n").encode(), len(lines)


def serve(body: bytes) -> tuple[http.server.ThreadingHTTPServer, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def measure(rules: Path, ports: list[int], evals: int, workdir: Path) -> list[float]:
    port = free_port()
    targets = json.dumps([f"127.0.0.1:{p}" for p in ports])
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 2s\n"
        f"rule_files: [{json.dumps(str(rules))}]\n"
        f"scrape_configs:\n  - job_name: cce\n    static_configs:\n      - targets: {targets}\n"
    )
    data = workdir / f"data-{port}"
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    times: list[float] = []
    try:
        deadline = time.monotonic() + 300
        last = ""
        while len(times) < evals and time.monotonic() < deadline:
            time.sleep(1)
            try:
                groups = get(f"http://127.0.0.1:{port}/api/v1/rules?type=record")["data"]["groups"]
                up = get(f"http://127.0.0.1:{port}/api/v1/query?query=count(up%3D%3D1)")
            except OSError:
                continue
            result = up["data"]["result"]
            if not result or result[0]["value"][1] != "2":
                continue  # both replicas scraped before counting
            # every recording group (the rules before the change had three)
            stamp = "".join(g["lastEvaluation"] for g in groups)
            # the rules' own times, without the service-hours subquery (a day at 1m
            # steps, the same before and after)
            total = sum(r["evaluationTime"] for g in groups for r in g["rules"]
                        if "closed_timestamp" not in r["name"])
            if stamp != last and all(g["evaluationTime"] > 0 for g in groups):
                if last:  # skip the first evaluation after both were scraped
                    times.append(total)
                last = stamp
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--queues", type=int, default=200)
    parser.add_argument("--evals", type=int, default=10)
    parser.add_argument("--old", type=Path, help="the rules before the change, to compare")
    args = parser.parse_args()
    body, series = exposition(args.queues)
    servers = [serve(body) for _ in range(2)]
    ports = [port for _, port in servers]
    print(f"{series} series per replica, 2 replicas, {args.evals} evaluations each")
    with tempfile.TemporaryDirectory() as tmp:
        for name, rules in (("given (--old)", args.old), ("shipped", RULES)):
            if rules is None:
                continue
            times = measure(rules, ports, args.evals, Path(tmp))
            if not times:
                print(f"{name}: no evaluation measured", file=sys.stderr)
                return 1
            print(f"{name:14} rule evaluation: median {statistics.median(times) * 1000:.0f} ms, "
                  f"max {max(times) * 1000:.0f} ms over {len(times)}")
    for server, _ in servers:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
