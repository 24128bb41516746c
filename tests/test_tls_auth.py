"""--web.config.file: validation, TLS, client certificates and basic auth, up to a real Prometheus."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from collector import webconfig
from collector.server import ExporterHTTPServer
from collector.webconfig import WebConfig, WebConfigError, load_web_config

from .conftest import REPO, ExporterProcess, free_port, require_binary, wait_for
from .pki import Pki, make_pki

PASSWORD = "s3cret-scrape-pass"
# Cost 4 keeps the tests fast; production hashes use the default cost (12) or at least 10.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
EXAMPLE = REPO / "config" / "web-config.example.yml"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write_web_config(directory: Path, pki: Pki | None = None, client_auth: str | None = None,
                     users: bool = True, extra: str = "") -> Path:
    lines = []
    if pki is not None:
        lines += ["tls_server_config:", f"  cert_file: {pki.server_cert}",
                  f"  key_file: {pki.server_key}"]
        if client_auth:
            lines += [f"  client_auth_type: {client_auth}", f"  client_ca_file: {pki.ca_cert}"]
    if users:
        lines += ["basic_auth_users:", f"  prometheus: '{HASH}'"]
    path = directory / "web.yml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_server_config:\n  key_file: k.pem\n", "tls_server_config: cert_file is required"),
        ("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_auth_type: Maybe\n",
         "tls_server_config.client_auth_type: 'Maybe' is not one of"),
        ("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: TLS11\n",
         "tls_server_config.min_version: 'TLS11' is not supported"),
        ("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_ca_file: ca.pem\n",
         "client_ca_file is set but client_auth_type is NoClientCert"),
        ("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n"
         "  client_auth_type: RequireAndVerifyClientCert\n",
         "client_auth_type RequireAndVerifyClientCert needs client_ca_file"),
        ("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n",
         "tls_server_config.cert_file: "),
        ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users: the password of user "
         "'alice' is not a bcrypt hash"),
        ("basic_auth_user:\n  alice: x\n", "basic_auth_user: unknown field"),
        ("http_server_config:\n  headers:\n    Set-Cookie: a=b\n",
         "http_server_config.headers: header 'Set-Cookie' is not allowed"),
        ("tls_server_config: [\n", "not valid YAML at line"),
        ("- just a list\n", "(top level): expected a mapping"),
    ],
)
def test_bad_web_config_names_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_missing_web_config_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"web\.yml: file not found"):
        load_web_config(tmp_path / "web.yml")
    (tmp_path / "web.yml").write_text("# nothing enabled\n")
    web = load_web_config(tmp_path / "web.yml")
    assert not web.tls and not web.auth


def test_bad_web_config_stops_start_up(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'store = "{tmp_path / "s.db"}"\n')
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  alice: hunter2\n")
    done = subprocess.run(
        [sys.executable, "-m", "collector", "--config.file", str(config),
         "--web.config.file", str(web), "--web.listen-address", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"contact-cost-exporter: invalid web configuration: {web}: "
                               "basic_auth_users: the password of user 'alice'")
    assert "hunter2" not in done.stderr


def test_example_web_config_passes_promtool_and_loads(tmp_path: Path, pki: Pki) -> None:
    promtool = require_binary("promtool")
    example = tmp_path / "web-config.yml"
    shutil.copy(EXAMPLE, example)
    (tmp_path / "tls").mkdir()
    shutil.copy(pki.server_cert, tmp_path / "tls" / "server.crt")
    shutil.copy(pki.server_key, tmp_path / "tls" / "server.key")
    check = subprocess.run([promtool, "check", "web-config", str(example)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    web = load_web_config(example)  # relative names resolve against the file's directory
    assert web.tls
    assert web.auth.check(basic("prometheus", "change-me")["Authorization"])
    assert web.headers == {"Strict-Transport-Security": "max-age=31536000"}


# -- the server in-process ------------------------------------------------------------------------
@pytest.fixture
def serve(serve: Callable[..., ExporterHTTPServer]) -> Callable[..., ExporterHTTPServer]:
    """conftest's serve (stopped at teardown) with a web config and no webhooks."""

    def start(web: WebConfig, **kwargs: float) -> ExporterHTTPServer:
        return serve(web=web, webhooks=None, **kwargs)

    return start


def client_context(pki: Pki, cert: bool = False, rogue: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    if rogue:
        context.load_cert_chain(pki.other_client_cert, pki.other_client_key)
    return context


def https(srv: ExporterHTTPServer, context: ssl.SSLContext, method: str, path: str,
          headers: dict[str, str] | None = None, body: bytes | None = None
          ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", srv.server_address[1], timeout=5,
                                       context=context)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_tls_and_basic_auth_cover_every_route_but_webhooks(
    tmp_path: Path, pki: Pki, serve: Callable[[WebConfig], ExporterHTTPServer]
) -> None:
    srv = serve(load_web_config(write_web_config(
        tmp_path, pki, extra="http_server_config:\n  headers:\n"
                             "    Strict-Transport-Security: max-age=60\n")))
    srv.webhooks = type("Hooks", (), {"handle": lambda *a: (404, "text/plain", b"no such\n")})()
    context = client_context(pki)
    good = basic("prometheus", PASSWORD)
    for path in ("/", "/metrics", "/healthz"):
        status, headers, _ = https(srv, context, "GET", path, good)
        assert status == 200, path
        assert headers["Strict-Transport-Security"] == "max-age=60"
        for wrong in ({}, basic("prometheus", "nope"), basic("mallory", PASSWORD),
                      {"Authorization": "Basic !!!"}, {"Authorization": "Bearer x"}):
            status, headers, body = https(srv, context, "GET", path, wrong)
            assert status == 401, (path, wrong)
            assert headers["WWW-Authenticate"].startswith("Basic realm=")
            assert b"contactcenter" not in body
    assert https(srv, context, "POST", "/-/reload", basic("x", "y"), b"")[0] == 401
    # Webhooks keep their own signature auth: no basic auth asked for.
    status, _, body = https(srv, context, "POST", "/webhooks/generic/x", {}, b"{}")
    assert (status, body) == (404, b"no such\n")


def test_successful_checks_are_cached_failures_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = webconfig.bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(webconfig.bcrypt, "checkpw", counting)
    auth = webconfig.BasicAuth({"prometheus": HASH})
    header = basic("prometheus", PASSWORD)["Authorization"]
    assert all(auth.check(header) for _ in range(20))
    assert len(calls) == 1
    assert not any(auth.check(basic("prometheus", "wrong")["Authorization"]) for _ in range(3))
    assert len(calls) == 4
    # An unknown user still costs one bcrypt, so user names cannot be told by timing.
    assert not auth.check(basic("nobody", PASSWORD)["Authorization"])
    assert len(calls) == 5
    assert not auth.check(basic("prometheus", "x" * 100)["Authorization"])  # > 72 bytes


def test_plain_http_to_the_tls_port_fails_cleanly(
    tmp_path: Path, pki: Pki, serve: Callable[[WebConfig], ExporterHTTPServer],
    capfd: pytest.CaptureFixture[str],
) -> None:
    srv = serve(load_web_config(write_web_config(tmp_path, pki)))
    for _ in range(3):
        conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
        conn.request("GET", "/metrics", headers=basic("prometheus", PASSWORD))
        response = conn.getresponse()
        assert response.status == 400
        assert b"HTTP request to an HTTPS server" in response.read()
        conn.close()
    # Garbage that is neither HTTP nor TLS, and a client that hangs up at once.
    with socket.create_connection(srv.server_address[:2], timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05hello")
        try:
            answer = sock.recv(100)  # a TLS alert at most, then the server hangs up
        except ConnectionResetError:
            answer = b""
        assert not answer.startswith(b"HTTP")
    socket.create_connection(srv.server_address[:2], timeout=5).close()
    status, _, _ = https(srv, client_context(pki), "GET", "/healthz",
                         basic("prometheus", PASSWORD))
    assert status == 200
    assert "Traceback" not in capfd.readouterr().err


def test_slow_tls_handshake_does_not_block_others(
    tmp_path: Path, pki: Pki, serve: Callable[[WebConfig], ExporterHTTPServer]
) -> None:
    srv = serve(load_web_config(write_web_config(tmp_path, pki)), request_timeout=30)
    stalled = [socket.create_connection(srv.server_address[:2], timeout=5) for _ in range(5)]
    try:
        for sock in stalled[:2]:
            sock.sendall(b"\x16")  # the first byte of a ClientHello, then nothing
        started = time.monotonic()
        status, _, _ = https(srv, client_context(pki), "GET", "/metrics",
                             basic("prometheus", PASSWORD))
        assert status == 200
        assert time.monotonic() - started < 5
    finally:
        for sock in stalled:
            sock.close()


def test_require_and_verify_client_cert(
    tmp_path: Path, pki: Pki, serve: Callable[[WebConfig], ExporterHTTPServer]
) -> None:
    srv = serve(load_web_config(write_web_config(tmp_path, pki, "RequireAndVerifyClientCert",
                                                 users=False)))
    assert https(srv, client_context(pki, cert=True), "GET", "/healthz")[0] == 200
    for context in (client_context(pki), client_context(pki, rogue=True)):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            # TLS 1.3: the server's refusal arrives with the first read, not the handshake.
            https(srv, context, "GET", "/healthz")
    assert https(srv, client_context(pki, cert=True), "GET", "/healthz")[0] == 200


def test_verify_client_cert_if_given(
    tmp_path: Path, pki: Pki, serve: Callable[[WebConfig], ExporterHTTPServer]
) -> None:
    srv = serve(load_web_config(write_web_config(tmp_path, pki, "VerifyClientCertIfGiven",
                                                 users=False)))
    assert https(srv, client_context(pki), "GET", "/healthz")[0] == 200
    assert https(srv, client_context(pki, cert=True), "GET", "/healthz")[0] == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https(srv, client_context(pki, rogue=True), "GET", "/healthz")


def test_min_version_tls13_refuses_tls12(
    tmp_path: Path, pki: Pki, serve: Callable[[WebConfig], ExporterHTTPServer]
) -> None:
    path = write_web_config(tmp_path, pki, users=False)
    path.write_text(path.read_text().replace("tls_server_config:\n",
                                             "tls_server_config:\n  min_version: TLS13\n"))
    srv = serve(load_web_config(path))
    old = client_context(pki)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https(srv, old, "GET", "/healthz")
    assert https(srv, client_context(pki), "GET", "/healthz")[0] == 200


# -- end to end: the real exporter and a real Prometheus ----------------------------------------------
PROMETHEUS_CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: good
    scheme: https
    tls_config:
      ca_file: {ca}
    basic_auth:
      username: prometheus
      password: {password}
    static_configs:
      - targets: ["127.0.0.1:{port}"]
  - job_name: bad
    scheme: https
    tls_config:
      ca_file: {ca}
    basic_auth:
      username: prometheus
      password: not-the-password
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


def query_up(api: str) -> dict[str, float]:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": "up"})
    with urllib.request.urlopen(url, timeout=5) as response:
        data = json.load(response)
    return {r["metric"]["job"]: float(r["value"][1]) for r in data["data"]["result"]}


@pytest.mark.e2e
def test_prometheus_scrapes_over_tls_with_basic_auth(
    tmp_path: Path, pki: Pki, start_exporter: Callable[..., ExporterProcess]
) -> None:
    prometheus = require_binary("prometheus")
    config = tmp_path / "config.toml"
    config.write_text(f'store = "{tmp_path / "s.db"}"\ninterval = "1s"\n')
    exporter = start_exporter(
        config, ["--web.config.file", str(write_web_config(tmp_path, pki))], ready=False
    )
    context = client_context(pki)

    def exporter_ready() -> bool:
        if exporter.proc.poll() is not None:
            raise AssertionError(exporter.log.read_text())
        return https_port(exporter.port, context, "/healthz") == 200

    wait_for(exporter_ready, what="exporter over https")
    prom_config = tmp_path / "prometheus.yml"
    prom_config.write_text(PROMETHEUS_CONFIG.format(ca=pki.ca_cert, password=PASSWORD,
                                                    port=exporter.port))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        def both_scraped() -> dict[str, float] | None:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "prometheus.log").read_text())
            up = query_up(f"http://127.0.0.1:{port}")
            return up if up.get("good") == 1 and up.get("bad") == 0 else None

        up = wait_for(both_scraped, timeout=60, interval=0.25, what='up{job="good"} == 1 and '
                      'up{job="bad"} == 0')
        assert up == {"good": 1.0, "bad": 0.0}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert PASSWORD not in exporter.log.read_text()


def https_port(port: int, context: ssl.SSLContext, path: str) -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
    try:
        conn.request("GET", path, headers=basic("prometheus", PASSWORD))
        return conn.getresponse().status
    finally:
        conn.close()
