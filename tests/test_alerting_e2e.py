"""End-to-end alerting: exporter -> Prometheus (our rules) -> Alertmanager -> a webhook in the test.

The config prices every contact above the band, so ContactCostAboveBenchmark must reach the
webhook, firing, with its labels; the config is then changed to a price inside the band and
reloaded with SIGHUP, and a resolved notification must follow.
"""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.prom_helpers import (
    PROMETHEUS_DIR,
    PrometheusAPI,
    Server,
    http_get,
    require_binary,
    start_alertmanager,
    start_exporter,
    start_prometheus,
    wait_for,
)

pytestmark = pytest.mark.e2e

TIMEZONE = "Europe/Oslo"
CONTACTS_TODAY = 5
ABOVE_BAND = 50.0  # per contact; the voice band is 2.70-5.60
IN_BAND = 4.0


class Webhook:
    """A tiny Alertmanager webhook receiver on loopback that keeps every notification."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with received.lock:
                    received.notifications.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self, status: str, **labels: str) -> list[dict[str, Any]]:
        """Alerts with this status and these labels, from every notification so far."""
        with self.lock:
            found = [a for n in self.notifications for a in n["alerts"]]
        return [
            a
            for a in found
            if a["status"] == status and all(a["labels"].get(k) == v for k, v in labels.items())
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def cdr_rows(now: datetime) -> str:
    """CONTACTS_TODAY answered support calls a few minutes ago (local time), Master.csv format."""
    fmt = "%Y-%m-%d %H:%M:%S"
    midnight = now.replace(hour=0, minute=0, second=0)
    rows = []
    for n in range(CONTACTS_TODAY):
        start = max(now - timedelta(minutes=10 - n), midnight)
        answer, end = start + timedelta(seconds=3), start + timedelta(seconds=63)
        rows.append(
            f'"","4790000{n:03d}","22334400","support-in","""Caller {n}"" <4790000{n:03d}>",'
            f'"SIP/trunk-{n}","SIP/201-{n}","Queue","support,tT,,,300",'
            f'"{start:{fmt}}","{answer:{fmt}}","{end:{fmt}}",63,60,"ANSWERED","DOCUMENTATION",'
            f'"e2e-alert.{n}",""\n'
        )
    return "".join(rows)


def write_config(path: Path, workdir: Path, per_contact: float) -> None:
    path.write_text(
        f"""currency = "USD"
timezone = "{TIMEZONE}"
interval = "1s"
store = "{workdir / "store.db"}"

[benchmark]
low = 2.70
high = 5.60

[[sources]]
name = "pbx"
adapter = "asterisk_cdr"
path = "{workdir / "Master.csv"}"
interval = "1s"
queues = {{ "support-in" = "support" }}

[[costs]]
name = "Everything, priced per handled contact"
component = "other"
per_contact = {per_contact}
"""
    )


def render_rules(workdir: Path) -> list[Path]:
    """The shipped rules with test timings: for/keep_firing_for 1s, at least 1 contact."""
    alerts = (PROMETHEUS_DIR / "alert_rules.yml").read_text()
    alerts, changed = re.subn(r"(?m)^(\s+(?:for|keep_firing_for)): \S+$", r"\1: 1s", alerts)
    assert changed >= 4, "alert_rules.yml: no for:/keep_firing_for: to shorten"
    thresholds = (PROMETHEUS_DIR / "thresholds.yml").read_text()
    thresholds, changed = re.subn(
        r"(record: period_window:contactcenter_band_alert_min_contacts:threshold\n\s+expr: )"
        r"vector\(\d+\)",
        r"\g<1>vector(1)",
        thresholds,
    )
    assert changed == 5, "thresholds.yml: expected five watched (period, window) rows"
    out = [PROMETHEUS_DIR / "recording_rules.yml"]
    for name, text in (("thresholds.yml", thresholds), ("alert_rules.yml", alerts)):
        (workdir / name).write_text(text)
        out.append(workdir / name)
    return out


class Stack:
    def __init__(self, workdir: Path, config: Path, webhook: Webhook):
        self.workdir, self.config, self.webhook = workdir, config, webhook
        self.servers: list[Server] = []
        self.exporter: Server
        self.exporter_port = 0
        self.api: PrometheusAPI


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    now = datetime.now(ZoneInfo(TIMEZONE)).replace(microsecond=0, tzinfo=None)
    (tmp_path / "Master.csv").write_text(cdr_rows(now))
    config = tmp_path / "contact-cost.toml"
    write_config(config, tmp_path, ABOVE_BAND)
    webhook = Webhook()
    stack = Stack(tmp_path, config, webhook)
    try:
        alertmanager, am_port = start_alertmanager(tmp_path, webhook.url)
        stack.servers.append(alertmanager)
        stack.exporter, stack.exporter_port = start_exporter(tmp_path, config)
        stack.servers.append(stack.exporter)
        prometheus, stack.api = start_prometheus(
            tmp_path, stack.exporter_port, render_rules(tmp_path), alertmanager_port=am_port
        )
        stack.servers.append(prometheus)
        yield stack
    finally:
        for server in reversed(stack.servers):
            server.stop()
        webhook.close()


def cost_per_voice_contact_today(stack: Stack) -> float | None:
    result = stack.api.query(
        'period_window_channel:contactcenter_cost_per_contact:ratio{period="day",window="current",channel="voice"}'
    )
    return float(result[0]["value"][1]) if result else None


def test_above_band_fires_then_resolves_after_reload(stack: Stack) -> None:
    labels = {
        "alertname": "ContactCostAboveBenchmark",
        "severity": "warning",
        "channel": "voice",
        "period": "day",
        "window": "current",
    }
    wait_for(
        "cost per voice contact above the band in Prometheus",
        lambda: cost_per_voice_contact_today(stack) == ABOVE_BAND,
        timeout=30,
        servers=stack.servers,
    )
    (firing,) = wait_for(
        "ContactCostAboveBenchmark firing at the webhook",
        lambda: stack.webhook.alerts("firing", **labels),
        timeout=45,
        servers=stack.servers,
    )
    # Aggregated over instances by the recording rules: exactly these labels.
    assert firing["labels"] == labels
    assert "50.00 USD" in firing["annotations"]["description"]
    assert "2.70 to 5.60" in firing["annotations"]["description"]
    assert firing["annotations"]["summary"]
    # The other watched current window fires too; the previous ones have no contacts.
    wait_for(
        "the week-to-date alert",
        lambda: stack.webhook.alerts("firing", **{**labels, "period": "week"}),
        timeout=30,
        servers=stack.servers,
    )
    assert not stack.webhook.alerts("firing", alertname="ContactCostBelowBenchmark")
    assert not stack.webhook.alerts("resolved", **labels)

    # Back inside the band: rewrite the config and reload it (SIGHUP, as Prometheus does).
    write_config(stack.config, stack.workdir, IN_BAND)
    assert stack.exporter.proc is not None
    stack.exporter.proc.send_signal(signal.SIGHUP)
    wait_for(
        "cost per voice contact back in the band in Prometheus",
        lambda: cost_per_voice_contact_today(stack) == IN_BAND,
        timeout=30,
        servers=stack.servers,
    )
    (resolved,) = wait_for(
        "ContactCostAboveBenchmark resolved at the webhook",
        lambda: stack.webhook.alerts("resolved", **labels),
        timeout=45,
        servers=stack.servers,
    )
    assert resolved["endsAt"] >= firing["startsAt"]
    # The exporter stayed up: the alert resolved on the value, not on missing series.
    assert http_get(f"http://127.0.0.1:{stack.exporter_port}/healthz")[0] == 200
    assert not stack.webhook.alerts("firing", alertname="ContactCostExporterDown")
