"""Shared test helpers: real binaries (fail in CI when missing), free ports, the exporter process."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test decides every setting itself: a CONTACT_COST_* variable of the shell that
    runs the suite (a developer's own override) is removed for the test's duration."""
    from collector.config import ENV_PREFIX

    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def require_binary(name: str) -> str:
    """Path of a real binary. In CI (CI=true) a missing one fails the test; else it skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install prometheus prometheus-alertmanager)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last one
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}: {last_error}")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def parse_exposition(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Exposition text -> {(name, labels): value} using prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return values


class ExporterProcess:
    """The real CLI as a subprocess on a free loopback port."""

    def __init__(self, config: Path, cwd: Path, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"exporter-{self.port}.log"
        args = [
            sys.executable,
            "-m",
            "collector",
            "--config.file",
            str(config),
            "--web.listen-address",
            f"127.0.0.1:{self.port}",
            *(extra_args or []),
        ]
        self._log_handle = self.log.open("wb")
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"exporter exited: {self.log.read_text()}")
            return http_get(self.url + "/healthz", timeout=1)[0] == 200

        wait_for(ready, timeout, what="exporter /healthz")

    def metrics(self) -> str:
        status, body = http_get(self.url + "/metrics")
        assert status == 200, body
        return body.decode()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_handle.close()
        return int(self.proc.returncode)


@pytest.fixture
def start_exporter(tmp_path: Path) -> Iterator[Callable[..., ExporterProcess]]:
    """Start exporters with `start_exporter(config_path, extra_args=[...])`; all stop at teardown."""
    started: list[ExporterProcess] = []

    def start(config: Path, extra_args: list[str] | None = None, cwd: Path | None = None,
              env: dict[str, str] | None = None, ready: bool = True) -> ExporterProcess:
        proc = ExporterProcess(config, cwd or tmp_path, extra_args, env)
        started.append(proc)
        if ready:
            proc.wait_ready()
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def empty_exporter(tmp_path: Path) -> Iterator[Any]:
    """An in-process exporter with no sources and one recompute done: for HTTP-surface tests."""
    from datetime import UTC, datetime

    from collector.config import Settings
    from collector.runtime import Exporter, LoadedConfig

    exp = Exporter(LoadedConfig(Settings(store=tmp_path / "s.db"), (), "test"))
    exp.recompute(datetime(2026, 11, 26, 12, tzinfo=UTC))
    yield exp
    exp.close()


@pytest.fixture
def serve(empty_exporter: Any) -> Iterator[Callable[..., Any]]:
    """Start in-process HTTP servers on the empty exporter with `serve(**server_kwargs)`; all
    stop at teardown."""
    with contextlib.ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(served(empty_exporter, **kwargs))


def pbx_with_queue_log(tmp_path: Path, cdr: str) -> Path:
    """A config in tmp_path of an Asterisk CDR source "pbx" (Master.csv holding `cdr`) and the
    asterisk-11 queue_log fixture as source "queues" enriching it; returns the config's path."""
    shutil.copy(FIXTURES / "queue_log" / "asterisk-11.queue_log", tmp_path / "queue_log")
    (tmp_path / "Master.csv").write_text(cdr)
    config = tmp_path / "c.toml"
    config.write_text(f'''
store = "{tmp_path / 'state.db'}"
[[sources]]
name = "pbx"
adapter = "asterisk_cdr"
path = "{tmp_path / 'Master.csv'}"
usegmtime = true
max_future = "36500d"
[[sources]]
name = "queues"
adapter = "asterisk_queue_log"
path = "{tmp_path / 'queue_log'}"
cdr_source = "pbx"
queues = {{ support = "support" }}
max_future = "36500d"
''')
    return config


def golden_exporter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, now: datetime,
                    metrics: str | None = None) -> Any:
    """The golden fixture (config + Master.csv) in tmp_path, run in-process at `now`: its 4 CDRs
    ingested and one recompute done. `metrics`, if given, is appended as a [metrics] section.
    CONTACT_COST_* variables are cleared so the config file decides every setting."""
    from collector.runtime import Exporter, load_config

    shutil.copy(FIXTURES / "golden" / "Master.csv", tmp_path / "Master.csv")
    text = (FIXTURES / "golden" / "config.toml").read_text()
    if metrics is not None:
        text += "\n[metrics]\n" + metrics
    (tmp_path / "config.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    exp = Exporter(load_config("config.toml"), clock=lambda: now.timestamp())
    assert exp.ingest("pbx") == 4
    exp.recompute(now)
    return exp


def start_server(exporter: Any, **kwargs: Any) -> Any:
    """An ExporterHTTPServer for `exporter` on a free loopback port, serving from a daemon
    thread; the caller shuts it down and closes it."""
    import threading

    from collector.server import ExporterHTTPServer

    srv = ExporterHTTPServer(("127.0.0.1", 0), exporter, **kwargs)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return srv


@contextlib.contextmanager
def served(exporter: Any, **kwargs: Any) -> Iterator[Any]:
    """start_server's server for the `with` block; shut down and closed when it ends."""
    srv = start_server(exporter, **kwargs)
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def api_get(srv: Any, path: str,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET `path` from an in-process server: status, response headers, body."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), body


def require_basic_auth(srv: Any) -> dict[str, str]:
    """Put `srv` behind basic auth with one user, finance:s3cret (a web.yml beside its store);
    returns the request headers that log in as that user."""
    import base64

    import bcrypt

    from collector.webconfig import load_web_config

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    path = Path(srv.exporter.settings.store).parent / "web.yml"
    path.write_text(f"basic_auth_users:\n  finance: '{hashed}'\n")
    srv.web = load_web_config(path)
    token = base64.b64encode(b"finance:s3cret").decode()
    return {"Authorization": f"Basic {token}"}
