"""Live reload of the real process: SIGHUP and POST /-/reload; new costs, sources, refusals."""

from __future__ import annotations

import base64
import http.client
import json
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
import pytest

from adapters.generic_webhook import generic_signature

from .conftest import ExporterProcess, parse_exposition, wait_for
from .test_e2e import cdr_line

pytestmark = pytest.mark.e2e

HEAD = """
currency = "USD"
timezone = "{timezone}"
interval = "1s"
store = "{store}"
"""
SOURCE = """
[[sources]]
name = "{name}"
adapter = "asterisk_cdr"
path = "{path}"
interval = "1s"
usegmtime = true
queues = {{ "support-in" = "support", "sales-out" = "telesales" }}
directions = {{ "sales-out" = "outbound" }}
"""
COST = """
[[costs]]
name = "Outsourced handling"
component = "other"
per_contact = {per_contact}
"""
SUPPORT = {"period": "year", "window": "current", "channel": "voice", "direction": "inbound",
           "queue": "support"}
SALES = {**SUPPORT, "direction": "outbound", "queue": "telesales"}


def basic_auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


def write_config(tmp_path: Path, sources: tuple[str, ...] = ("pbx",), per_contact: float = 2.0,
                 timezone: str = "UTC", extra: str = "") -> Path:
    text = HEAD.format(timezone=timezone, store=tmp_path / "state.db")
    for name in sources:
        text += SOURCE.format(name=name, path=tmp_path / f"{name}.csv")
    text += COST.format(per_contact=per_contact) + extra
    config = tmp_path / "config.toml"
    config.write_text(text)
    return config


def values(exporter: ExporterProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return parse_exposition(exporter.metrics())


def value(exporter: ExporterProcess, name: str, **labels: str) -> float | None:
    return values(exporter).get((name, frozenset(labels.items())))


def wait_value(exporter: ExporterProcess, expected: float | None, name: str,
               **labels: str) -> None:
    def matches() -> bool:
        return value(exporter, name, **labels) == expected

    wait_for(matches, what=f"{name}{labels} == {expected}")


def wait_ticks(exporter: ExporterProcess, ticks: int = 2) -> None:
    """Wait until the exporter has recomputed `ticks` more times (interval 1s)."""
    start = value(exporter, "contactcenter_last_recompute_timestamp_seconds") or 0
    wait_for(lambda: (value(exporter, "contactcenter_last_recompute_timestamp_seconds") or 0)
             >= start + ticks, what=f"{ticks} more recomputes")


def post_reload(exporter: ExporterProcess) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=10)
    try:
        conn.request("POST", "/-/reload", body=b"")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def calls(tmp_path: Path) -> datetime:
    """Two answered support calls in pbx.csv and one sale in pbx2.csv, a minute ago."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=60)
    if start.year != datetime.now(UTC).year:
        pytest.skip("the first minute of the year has no past in the current year")
    (tmp_path / "pbx.csv").write_text(cdr_line("1.1", start, 120) + cdr_line("1.2", start, 60))
    (tmp_path / "pbx2.csv").write_text(cdr_line("2.1", start, 300, dcontext="sales-out"))
    return start


def test_sighup_reload_costs_sources_and_refusals(
    tmp_path: Path, calls: datetime, start_exporter: Callable[..., ExporterProcess]
) -> None:
    exporter = start_exporter(write_config(tmp_path))
    wait_value(exporter, 4.0, "contactcenter_cost", **SUPPORT, component="other")
    assert value(exporter, "contactcenter_config_last_reload_successful") == 1
    started_at = value(exporter, "contactcenter_config_last_reload_success_timestamp_seconds")

    # A valid change: a new price per contact and a second source.
    write_config(tmp_path, ("pbx", "pbx2"), per_contact=3.0)
    exporter.proc.send_signal(signal.SIGHUP)
    wait_value(exporter, 6.0, "contactcenter_cost", **SUPPORT, component="other")
    wait_value(exporter, 1, "contactcenter_source_up", source="pbx2")
    wait_value(exporter, 3.0, "contactcenter_cost", **SALES, component="other")
    assert value(exporter, "contactcenter_config_last_reload_successful") == 1
    reloaded_at = value(exporter, "contactcenter_config_last_reload_success_timestamp_seconds")
    assert reloaded_at is not None and started_at is not None and reloaded_at > started_at

    # A removed source stops: its series go, later rows in its file are not read,
    # and the contacts it stored stay in the figures.
    write_config(tmp_path, ("pbx2",), per_contact=3.0)
    exporter.proc.send_signal(signal.SIGHUP)
    wait_value(exporter, None, "contactcenter_source_up", source="pbx")
    with (tmp_path / "pbx.csv").open("a") as handle:
        handle.write(cdr_line("1.3", calls, 30))
    wait_ticks(exporter, 3)
    current = values(exporter)
    assert not any(labels == frozenset({("source", "pbx")}) for _, labels in current)
    assert current[("contactcenter_contacts", frozenset(SUPPORT.items()))] == 2
    assert current[("contactcenter_source_up", frozenset({("source", "pbx2")}))] == 1

    # An invalid config is refused with a logged reason; the last good one stays in force.
    good = (tmp_path / "config.toml").read_text()
    reloaded_at = value(exporter, "contactcenter_config_last_reload_success_timestamp_seconds")
    (tmp_path / "config.toml").write_text(good.replace('currency = "USD"', 'currency = "usd"'))
    exporter.proc.send_signal(signal.SIGHUP)
    wait_value(exporter, 0, "contactcenter_config_last_reload_successful")
    wait_ticks(exporter)
    after = values(exporter)
    assert after[("contactcenter_cost", frozenset({**SUPPORT, "component": "other"}.items()))] == 6
    assert after[("contactcenter_config_last_reload_success_timestamp_seconds", frozenset())] \
        == reloaded_at
    log = exporter.log.read_text()
    assert "reload refused, keeping the last good config" in log
    assert "currency: 'usd' is not an ISO 4217 code" in log

    # A changed time zone needs a restart: refused, naming the field.
    write_config(tmp_path, ("pbx2",), per_contact=3.0, timezone="Europe/Oslo")
    exporter.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "timezone: changed from UTC to Europe/Oslo" in exporter.log.read_text(),
             what="time zone change refused")
    assert value(exporter, "contactcenter_config_last_reload_successful") == 0

    # Back to a valid config: success again, and the process never restarted.
    write_config(tmp_path, ("pbx", "pbx2"), per_contact=1.0)
    exporter.proc.send_signal(signal.SIGHUP)
    wait_value(exporter, 1, "contactcenter_config_last_reload_successful")
    wait_value(exporter, 3.0, "contactcenter_contacts", **SUPPORT)  # pbx reads on from its position
    wait_value(exporter, 3.0, "contactcenter_cost", **SUPPORT, component="other")
    assert exporter.proc.poll() is None


def test_post_reload_needs_the_lifecycle_flag(
    tmp_path: Path, calls: datetime, start_exporter: Callable[..., ExporterProcess]
) -> None:
    plain = start_exporter(write_config(tmp_path))
    status, _ = post_reload(plain)
    assert status == 404
    plain.stop()

    exporter = start_exporter(write_config(tmp_path), ["--web.enable-lifecycle"])
    wait_value(exporter, 4.0, "contactcenter_cost", **SUPPORT, component="other")
    write_config(tmp_path, per_contact=5.0)
    assert post_reload(exporter) == (200, b"config reloaded\n")
    wait_value(exporter, 10.0, "contactcenter_cost", **SUPPORT, component="other")

    (tmp_path / "config.toml").write_text("currency = [\n")
    status, body = post_reload(exporter)
    assert status == 500
    assert body.startswith(b"reload failed: ") and b"not valid TOML" in body
    assert value(exporter, "contactcenter_config_last_reload_successful") == 0

    write_config(tmp_path, per_contact=5.0)
    text = (tmp_path / "config.toml").read_text().replace("state.db", "other.db")
    (tmp_path / "config.toml").write_text(text)
    status, body = post_reload(exporter)
    assert status == 500
    assert b"store: changed from" in body and b"needs a restart" in body
    assert not (tmp_path / "other.db").exists()
    assert value(exporter, "contactcenter_cost", **SUPPORT, component="other") == 10.0
    assert "reload refused" in exporter.log.read_text()


def request(exporter: ExporterProcess, method: str, path: str, headers: dict[str, str],
            body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_reload_rereads_web_config_and_webhook_routes(
    tmp_path: Path, calls: datetime, start_exporter: Callable[..., ExporterProcess]
) -> None:
    old, new = basic_auth("prometheus", "old-pass"), basic_auth("prometheus", "new-pass")
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{bcrypt_hash('old-pass')}'\n")
    exporter = start_exporter(write_config(tmp_path),
                              ["--web.enable-lifecycle", "--web.config.file", str(web)],
                              ready=False)
    wait_for(lambda: request(exporter, "GET", "/healthz", old)[0] == 200, what="ready")
    assert request(exporter, "POST", "/webhooks/generic/hooks", {}, b"{}")[0] == 404

    hook = '\n[[sources]]\nname = "hooks"\nadapter = "generic_webhook"\nwebhook_secret = "whs"\n'
    write_config(tmp_path, extra=hook)
    web.write_text(f"basic_auth_users:\n  prometheus: '{bcrypt_hash('new-pass')}'\n")
    assert request(exporter, "POST", "/-/reload", old, b"") == (200, b"config reloaded\n")
    assert request(exporter, "GET", "/metrics", old)[0] == 401
    assert request(exporter, "GET", "/metrics", new)[0] == 200
    stamp = str(int(time.time()))
    event = json.dumps({"id": "e1", "channel": "chat", "start": int(calls.timestamp()),
                        "handle_seconds": 60}).encode()
    signed = {"X-Contact-Cost-Timestamp": stamp,
              "X-Contact-Cost-Signature": generic_signature("whs", stamp, event),
              "Content-Type": "application/json"}
    assert request(exporter, "POST", "/webhooks/generic/hooks", signed, event) == \
        (200, b"accepted\n")

    web.write_text("basic_auth_users:\n  prometheus: not-a-hash\n")
    status, body = request(exporter, "POST", "/-/reload", new, b"")
    assert status == 500
    assert f"{web}: basic_auth_users: the password of user 'prometheus'".encode() in body
    assert request(exporter, "GET", "/metrics", new)[0] == 200  # the last good one stays
