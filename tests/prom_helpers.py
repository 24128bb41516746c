"""Helpers for tests that drive real binaries: promtool, prometheus, alertmanager, the exporter."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import free_port, require_binary

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = REPO / "config" / "prometheus"

__all__ = ["free_port", "require_binary"]  # shared with the other tests, from conftest


def require_yaml() -> Any:
    """The PyYAML module, under the same rule as a binary: a failure in CI, a skip elsewhere."""
    try:
        import yaml
    except ImportError:
        message = "PyYAML is not installed (pip install pyyaml)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return yaml


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 30.0,
    every: float = 0.2,
    servers: Sequence[Server] = (),
) -> T:
    """Poll `probe` until it returns something truthy, or fail after `timeout` seconds.

    `every` is the pause between probes, not a guess at how long something takes.
    If one of `servers` exits meanwhile, fail at once; failures show the servers' logs.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = probe()
        except (OSError, ValueError, KeyError) as exc:  # not up yet, or a partial answer
            result, last_error = None, exc
        if result:
            return result
        for server in servers:
            if server.proc is not None and server.proc.poll() is not None:
                pytest.fail(
                    f"{what}: {server.name} exited with {server.proc.returncode}\n"
                    + server.log_tail()
                )
        if time.monotonic() > deadline:
            logs = "".join(f"\n--- {s.name} log ---\n{s.log_tail()}" for s in servers)
            pytest.fail(
                f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error}){logs}"
            )
        time.sleep(every)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post(url: str, timeout: float = 5.0) -> int:
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


class Server:
    """A subprocess on loopback, its log in a file; always stopped by `stop()`."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, cwd: Path | None = None):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd, env=_child_env()
        )
        log.close()
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The test decides every setting through the config file it writes.
    for key in list(env):
        if key.startswith("CONTACT_COST_"):
            del env[key]
    return env


class PrometheusAPI:
    """The few Prometheus HTTP API calls the tests need."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        status, body = http_get(f"{self.base_url}{path}?{query}")
        payload = json.loads(body)
        if status != 200 or payload.get("status") != "success":
            raise ValueError(f"{path} {params}: HTTP {status}: {payload.get('error', payload)}")
        return payload["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        result = data["result"]
        return result if isinstance(result, list) else [result]

    def ready(self) -> bool:
        status, _ = http_get(f"{self.base_url}/-/ready")
        return status == 200


GRAFANA_DIR = REPO / "grafana"
DASHBOARD_FILES = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
# Grafana's own interval variables, filled the way Grafana would for a short range.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


def load_dashboard(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def iter_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """All panels, including those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for item in board.get("panels", []):
        out.append(item)
        out.extend(item.get("panels", []))
    return [p for p in out if p.get("type") != "row"]


def fill_variables(expr: str, values: dict[str, str]) -> str:
    """Replace $name and ${name} with values (longest names first, so $__range_x stays intact)."""
    names = sorted({**GRAFANA_BUILTINS, **values}.items(), key=lambda kv: -len(kv[0]))
    for name, value in names:
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """Raw exporter metric names (contactcenter_*, no colon) an expression refers to."""
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        name = match.group(0)
        if name.startswith("contactcenter_") and ":" not in name:
            names.add(name)
    return names


def recorded_names(expr: str) -> set[str]:
    """Recording-rule names (level:metric:operation) an expression refers to."""
    return {m.group(0) for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_]*:[a-zA-Z0-9_:]+", expr)}


# --- real servers on loopback ------------------------------------------------------------


def exporter_argv(config: Path, port: int) -> list[str]:
    """The exporter CLI: the console script beside this interpreter, else `python -m collector`."""
    script = Path(sys.executable).with_name("contact-cost-exporter")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "collector"]
    return [*base, "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}"]


def start_exporter(workdir: Path, config: Path, port: int | None = None) -> tuple[Server, int]:
    """Start the exporter on `config`; return once /healthz answers 200 (first recompute done)."""
    port = port or free_port()
    server = Server(
        "exporter", exporter_argv(config, port), workdir / "exporter.log", cwd=workdir
    ).start()
    wait_for(
        "the exporter's /healthz",
        lambda: http_get(f"http://127.0.0.1:{port}/healthz", timeout=2)[0] == 200,
        timeout=90,
        servers=[server],
    )
    return server, port


def start_prometheus(
    workdir: Path,
    exporter_port: int,
    rule_files: Sequence[Path],
    alertmanager_port: int | None = None,
) -> tuple[Server, PrometheusAPI]:
    """A real Prometheus scraping the exporter every second and evaluating rules every second."""
    binary = require_binary("prometheus")
    port = free_port()
    alerting = ""
    if alertmanager_port is not None:
        alerting = (
            "alerting:\n  alertmanagers:\n    - static_configs:\n"
            f"        - targets: ['127.0.0.1:{alertmanager_port}']\n"
        )
    rules = "".join(f"  - {json.dumps(str(path))}\n" for path in rule_files)
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n{rules}{alerting}"
        "scrape_configs:\n  - job_name: contact-cost-exporter\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
    )
    server = Server(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
            "--log.level=warn",
        ],
        workdir / "prometheus.log",
    ).start()
    api = PrometheusAPI(f"http://127.0.0.1:{port}")
    wait_for("Prometheus to be ready", api.ready, timeout=30, servers=[server])
    return server, api


def start_alertmanager(workdir: Path, webhook_url: str) -> tuple[Server, int]:
    """A real Alertmanager, clustering off, routing everything to `webhook_url` at once."""
    binary = require_binary("prometheus-alertmanager")
    port = free_port()
    config = workdir / "alertmanager.yml"
    config.write_text(
        "route:\n  receiver: test-webhook\n"
        "  group_by: [alertname, channel, period, window]\n"
        "  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n"
        "receivers:\n  - name: test-webhook\n    webhook_configs:\n"
        f"      - url: {json.dumps(webhook_url)}\n        send_resolved: true\n"
    )
    server = Server(
        "alertmanager",
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        workdir / "alertmanager.log",
    ).start()
    wait_for(
        "Alertmanager to be ready",
        lambda: http_get(f"http://127.0.0.1:{port}/-/ready", timeout=2)[0] == 200,
        timeout=30,
        servers=[server],
    )
    return server, port


def scrape_names(text: str) -> set[str]:
    """Metric names in an exposition: from samples and from # HELP / # TYPE lines."""
    names = set()
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names
