"""Many sites in one view: the site rules and the totals across sites (global_rules.yml), checked
by promtool and against a real Prometheus scraping two exporters as two sites.

The exporters are the real CLI on loopback, each with its own export and costs; the
Prometheus gives each scrape job a `site` target label, as one Prometheus scraping every
site would (a site's own Prometheus adds `site` as an external label instead). The north
site runs two replicas: a second exporter on the same export and config (its own store,
so the same figures, as replicas of one PostgreSQL store serve), a second target of the
north job, which the rules must count once.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import parse_exposition
from tests.pg_helpers import postgres_db, postgres_server
from tests.prom_helpers import (
    PROMETHEUS_DIR,
    PrometheusAPI,
    Server,
    free_port,
    http_get,
    require_binary,
    require_yaml,
    start_exporter,
    wait_for,
)

__all__ = ["postgres_db", "postgres_server"]  # fixtures used by name below

RULES = [PROMETHEUS_DIR / "recording_rules.yml", PROMETHEUS_DIR / "global_rules.yml"]
DAY = {"period": "day", "window": "current"}

CONFIG = """
currency = "EUR"
timezone = "UTC"
interval = "1s"
store = "state.db"

[[sources]]
name = "helpdesk"
adapter = "csv"
path = "contacts.csv"
channel = "{channel}"
columns = {{ id = "id", started_at = "start", handle_seconds = "handle", handled = "handled" }}

[[costs]]
name = "Handling"
component = "salaries"
per_contact = {per_contact}
"""


def _rules(name: str) -> list[dict[str, Any]]:
    doc = require_yaml().safe_load((PROMETHEUS_DIR / name).read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_global_rules_are_clean_and_each_has_a_promql_test() -> None:
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "rules", "global_rules.yml"], cwd=PROMETHEUS_DIR,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    test = require_yaml().safe_load((PROMETHEUS_DIR / "tests" / "site_rules_test.yaml")
                                    .read_text())
    tested = {case["expr"].split("{")[0].strip()
              for group in test["tests"] for case in group.get("promql_expr_test", [])}
    site_rules = {r["record"] for r in _rules("recording_rules.yml")
                  if r["record"].startswith("site_")}
    global_rules = {r["record"] for r in _rules("global_rules.yml")}
    assert len(site_rules) == 6 and len(global_rules) == 6
    assert (site_rules | global_rules) - tested == set()
    for name in global_rules:
        assert name.count(":") == 2, name
        # across sites from the sites' parts, never from a site ratio
        expr = next(r["expr"] for r in _rules("global_rules.yml") if r["record"] == name)
        assert ":ratio" not in expr, expr


def _site(workdir: Path, channel: str, per_contact: float, handled: list[bool]) -> Path:
    """A site's config and export: contacts started in the last minute of today (UTC)."""
    workdir.mkdir()
    now = datetime.now(UTC)
    start = max(now.replace(hour=0, minute=0, second=0, microsecond=0), now - timedelta(seconds=60))
    rows = ["id,start,handle,handled"] + [
        f"{channel}-{i},{start:%Y-%m-%dT%H:%M:%S+00:00},120,{1 if h else 0}"
        for i, h in enumerate(handled)
    ]
    (workdir / "contacts.csv").write_text("\n".join(rows) + "\n")
    (workdir / "config.toml").write_text(CONFIG.format(channel=channel, per_contact=per_contact))
    return workdir / "config.toml"


def _prometheus(workdir: Path, sites: dict[str, list[int]]) -> tuple[Server, PrometheusAPI]:
    binary = require_binary("prometheus")
    port = free_port()
    jobs = "".join(
        f"  - job_name: {site}\n    static_configs:\n"
        f"      - targets: {[f'127.0.0.1:{p}' for p in ports]}\n        labels: {{site: {site}}}\n"
        for site, ports in sites.items()
    )
    rules = "".join(f"  - {json.dumps(str(path))}\n" for path in RULES)
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n{rules}scrape_configs:\n{jobs}"
    )
    server = Server("prometheus", [
        binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
    ], workdir / "prometheus.log").start()
    api = PrometheusAPI(f"http://127.0.0.1:{port}")
    wait_for("Prometheus to be ready", api.ready, timeout=30, servers=[server])
    return server, api


def _value(api: PrometheusAPI, expr: str) -> dict[str, float] | None:
    """{site or "": value} of an instant query, or None while it has no result."""
    result = api.query(expr)
    if not result:
        return None
    return {r["metric"].get("site", ""): float(r["value"][1]) for r in result}


def test_two_sites_into_one_prometheus_cost_per_contact_is_total_over_total(
    tmp_path: Path,
) -> None:
    require_binary("prometheus")
    # north: voice, 2.00 per handled contact, 3 handled -> cost 6, contacts 3 (2.00 each)
    # south: email, 5.00 per handled contact, 1 handled + 1 not -> cost 5, contacts 1 (5.00)
    # the center: (6 + 5) / (3 + 1) = 2.75; an average of the two sites' ratios is 3.5
    # north runs two replicas serving the same figures: counted once, or the center would
    # be (6 + 6 + 5) / (3 + 3 + 1) = 2.43
    north_cfg = _site(tmp_path / "north", "voice", 2.0, [True, True, True])
    south_cfg = _site(tmp_path / "south", "email", 5.0, [True, False])
    replica_dir = tmp_path / "north-replica"
    replica_dir.mkdir()
    replica_cfg = replica_dir / "config.toml"
    replica_cfg.write_text(north_cfg.read_text().replace(
        'path = "contacts.csv"', f'path = "{north_cfg.parent / "contacts.csv"}"'))
    servers: list[Server] = []
    try:
        north, north_port = start_exporter(north_cfg.parent, north_cfg)
        servers.append(north)
        replica, replica_port = start_exporter(replica_dir, replica_cfg)
        servers.append(replica)
        south, south_port = start_exporter(south_cfg.parent, south_cfg)
        servers.append(south)
        # the exporters' own figures, read from /metrics
        for port, cost, contacts in (
            (north_port, 6.0, 3.0), (replica_port, 6.0, 3.0), (south_port, 5.0, 1.0)
        ):
            values = parse_exposition(http_get(f"http://127.0.0.1:{port}/metrics")[1].decode())
            got_cost = sum(v for (name, labels), v in values.items()
                           if name == "contactcenter_cost" and DAY.items() <= dict(labels).items())
            got_contacts = sum(v for (name, labels), v in values.items()
                               if name == "contactcenter_contacts"
                               and DAY.items() <= dict(labels).items())
            assert (got_cost, got_contacts) == (pytest.approx(cost), contacts)
        prometheus, api = _prometheus(
            tmp_path, {"north": [north_port, replica_port], "south": [south_port]})
        servers.append(prometheus)

        day = '{period="day",window="current"}'
        by_site = wait_for(
            "both sites' cost per contact",
            lambda: (v if (v := _value(api, "site_period_window:contactcenter_cost_per_contact:"
                                             f"ratio{day}")) and len(v) == 2 else None),
            timeout=60, servers=servers,
        )
        # The global rules run in their own group: wait for an evaluation that saw both
        # sites (its contacts equal the two sites' contacts, whatever those are), then check.

        def global_saw_both() -> bool:
            sites = _value(api, f"site_period_window:contactcenter_contacts:sum{day}")
            total = _value(api, f"period_window:contactcenter_contacts:sum_over_sites{day}")
            return bool(sites and len(sites) == 2 and total
                        and total[""] == sum(sites.values()))

        wait_for("a global evaluation over both sites", global_saw_both, timeout=30,
                 servers=servers)
        total = _value(api, f"period_window:contactcenter_cost_per_contact:ratio_over_sites{day}")
        assert total == {"": pytest.approx(2.75)}
        assert by_site == {"north": pytest.approx(2.0), "south": pytest.approx(5.0)}
        assert _value(api, f"period_window:contactcenter_cost:sum_over_sites{day}") == {
            "": pytest.approx(11.0)}
        assert _value(api, f"period_window:contactcenter_contacts:sum_over_sites{day}") == {
            "": 4.0}
        # the raw series in the same Prometheus: a plain sum over sum counts north twice
        raw = _value(api, f"sum(contactcenter_cost{day}) / sum(contactcenter_contacts{day})")
        assert raw == {"": pytest.approx(17 / 7)}
        # ...and the center's own rules (no site label) count it once, too
        assert _value(api, f"period_window:contactcenter_cost_per_contact:ratio{day}") == {
            "": pytest.approx(2.75)}
        # the per-channel figure across sites keeps each site's channel
        channels = {r["metric"]["channel"]: float(r["value"][1]) for r in api.query(
            f"period_window_channel:contactcenter_cost_per_contact:ratio_over_sites{day}")}
        assert channels == {"voice": pytest.approx(2.0), "email": pytest.approx(5.0)}
    finally:
        for server in reversed(servers):
            server.stop()


def _leaders(api: PrometheusAPI) -> dict[str, float]:
    return {r["metric"]["instance"]: float(r["value"][1])
            for r in api.query('contactcenter_leader{job="oslo"}')}


def test_a_replica_pair_on_postgresql_counts_once_through_a_kill_of_its_leader(
    tmp_path: Path, postgres_db: str
) -> None:
    """Two exporters on one real PostgreSQL store, one scrape job: Prometheus sees one leader,
    the store up on both, the pair's figures once (6 / 3 = 2, where the raw sum is 12 / 6),
    no leader alert condition, and after kill -9 of the leader the figures stay 6 / 3 at
    every evaluation while the follower takes over."""
    require_binary("prometheus")
    oslo = _site(tmp_path / "oslo", "voice", 2.0, [True, True, True])
    text = oslo.read_text().replace('store = "state.db"', f'store = "{postgres_db}"')
    text = text.replace('path = "contacts.csv"', f'path = "{oslo.parent / "contacts.csv"}"')
    replicas: list[Server] = []
    servers: list[Server] = []
    try:
        ports = []
        for name in ("a", "b"):
            workdir = tmp_path / f"replica-{name}"
            workdir.mkdir()
            (workdir / "config.toml").write_text(text)
            server, port = start_exporter(workdir, workdir / "config.toml")
            replicas.append(server)
            servers.append(server)
            ports.append(port)
        prometheus, api = _prometheus(tmp_path, {"oslo": ports})
        servers.append(prometheus)
        day = '{period="day",window="current"}'

        def settled() -> bool:
            leaders = _leaders(api)
            cost = _value(api, f"period_window:contactcenter_cost:sum{day}")
            return (sorted(leaders.values()) == [0.0, 1.0] and cost == {"": pytest.approx(6.0)}
                    and _value(api, 'min(contactcenter_store_up{job="oslo"})') == {"": 1.0})

        wait_for("one leader, one follower, the figures", settled, timeout=60, servers=servers)
        assert _value(api, f"period_window:contactcenter_contacts:sum{day}") == {"": 3.0}
        assert _value(api, f"period_window:contactcenter_cost_per_contact:ratio{day}") == {
            "": pytest.approx(2.0)}
        # both replicas serve the figures: a plain sum counts them twice
        assert _value(api, f"sum(contactcenter_cost{day})") == {"": pytest.approx(12.0)}
        # the alert conditions of ContactCostNoLeader and ContactCostTwoLeaders are empty
        for rule in ("ContactCostNoLeader", "ContactCostTwoLeaders", "ContactCostStoreDown"):
            expr = next(r["expr"] for r in _rules("alert_rules.yml") if r["alert"] == rule)
            assert api.query(expr) == [], rule

        leader_port = next(p for p in ports
                           if _leaders(api).get(f"127.0.0.1:{p}") == 1.0)
        leader = replicas[ports.index(leader_port)]
        assert leader.proc is not None
        leader.proc.kill()  # kill -9
        leader.proc.wait(timeout=10)
        survivor = f"127.0.0.1:{ports[1 - ports.index(leader_port)]}"
        seen: list[dict[str, float] | None] = []

        def took_over() -> bool:
            seen.append(_value(api, f"period_window:contactcenter_cost:sum{day}"))
            return _leaders(api) == {survivor: 1.0}

        alive = [server for server in servers if server is not leader]
        wait_for("the follower to lead", took_over, timeout=60, servers=alive)
        # every evaluation during the handover: the pair once, never missing, never twice
        assert seen and all(v == {"": pytest.approx(6.0)} for v in seen), seen
        assert _value(api, f"period_window:contactcenter_contacts:sum{day}") == {"": 3.0}
    finally:
        for server in reversed(servers):
            server.stop()
