"""promtool checks the rule files and runs their unit tests; amtool checks the routing example."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.prom_helpers import PROMETHEUS_DIR, require_binary, require_yaml

RULE_FILES = ["recording_rules.yml", "thresholds.yml", "alert_rules.yml"]
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yaml"))


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, check=False, capture_output=True, text=True, cwd=PROMETHEUS_DIR, timeout=120
    )


def test_promtool_check_rules_is_clean() -> None:
    promtool = require_binary("promtool")
    result = run([promtool, "check", "rules", *RULE_FILES])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config_on_example() -> None:
    promtool = require_binary("promtool")
    result = run([promtool, "check", "config", "prometheus.yml"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_rule_unit_tests(test_file: Path) -> None:
    promtool = require_binary("promtool")
    result = run([promtool, "test", "rules", str(test_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def _load(path: Path) -> Any:
    return require_yaml().safe_load(path.read_text())


def _tests() -> list[tuple[str, dict[str, Any]]]:
    return [(f.name, group) for f in RULE_TESTS for group in _load(f)["tests"]]


def _rules(name: str) -> list[dict[str, Any]]:
    return [rule for group in _load(PROMETHEUS_DIR / name)["groups"] for rule in group["rules"]]


def test_every_test_group_sets_interval() -> None:
    """Prometheus 2.42 needs `interval:` in every test group."""
    for file_name, group in _tests():
        assert "interval" in group, f"{file_name}: {group.get('name')} has no interval"


def test_every_recording_rule_has_a_promql_expr_test() -> None:
    tested = set()
    for _, group in _tests():
        for case in group.get("promql_expr_test", []):
            tested.add(case["expr"].split("{")[0].strip())
    recorded = {rule["record"] for rule in _rules("recording_rules.yml")}
    assert recorded - tested == set()


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for _, group in _tests():
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in _rules("alert_rules.yml")}
    assert alerts - firing == set(), "alerts with no firing case"
    assert alerts - quiet == set(), "alerts with no quiet case"


def test_alert_conventions() -> None:
    """Shared CamelCase prefix, severity label, summary and description, for: and keep_firing_for:."""
    for rule in _rules("alert_rules.yml"):
        name = rule["alert"]
        assert name.startswith("ContactCost") and name.isalnum(), name
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert {"summary", "description"} <= set(rule["annotations"]), name
        assert "for" in rule and "keep_firing_for" in rule, name


def test_band_alerts_hard_code_no_number() -> None:
    """The band comes from the exporter's gauges, thresholds from thresholds.yml."""
    for rule in _rules("alert_rules.yml"):
        if "Benchmark" in rule["alert"] or rule["alert"] in {
            "ContactCostSourceStale",
            "ContactCostSourceQuiet",
        }:
            # strip range selectors such as [15m] and tests of a 0/1 gauge such as
            # `contactcenter_open == 1`; then no digit may remain
            expr = re.sub(r"\[[^\]]*\]|==\s*[01]\b", "", rule["expr"])
            assert not re.search(r"\d", expr), f"{rule['alert']} hard-codes a number: {expr}"


FRESHEST = "instance_job:contactcenter_last_recompute_timestamp_seconds:freshest"
ONE_REPLICA = "max without (instance) ("
# Raw exporter series a recording rule may read without the one-replica selector: the
# band and the open share are taken as min/max (a replica adds nothing), the service
# hours are per instance by design, and the selector reads the recompute time itself.
NOT_A_FIGURE_PART = {
    "contactcenter_benchmark_low", "contactcenter_benchmark_high",
    "contactcenter_period_open_elapsed_ratio", "contactcenter_open",
    "contactcenter_last_recompute_timestamp_seconds",
}


def without_one_replica_terms(expr: str) -> str:
    """`expr` with every `max without (instance) (... and on (instance, job) FRESHEST)`
    removed; an `ONE_REPLICA` term without the selector fails the test."""
    while (start := expr.find(ONE_REPLICA)) >= 0:
        depth, end = 1, start + len(ONE_REPLICA)
        while depth:
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            end += 1
        term = expr[start:end]
        assert term.endswith(f" and on (instance, job) {FRESHEST})"), term
        expr = expr[:start] + expr[end:]
    return expr


def test_every_figure_part_is_taken_from_one_replica() -> None:
    """Replicas of one store serve the same figures: a rule that sums a raw figure part
    without first keeping one replica per set would count a replica pair twice."""
    from tests.prom_helpers import metric_names

    rules = _rules("recording_rules.yml")
    assert rules[0]["record"] == FRESHEST, "the selector runs first in its group"
    assert len(_load(PROMETHEUS_DIR / "recording_rules.yml")["groups"]) == 1
    for rule in rules[1:]:
        rest = without_one_replica_terms(rule["expr"])
        # the outbound outcomes' queue filter only asks which queues have outbound contacts
        rest = rest.replace(
            'group by (period, window, queue) (contactcenter_contacts{direction="outbound"})', ""
        )
        assert metric_names(rest) <= NOT_A_FIGURE_PART, (rule["record"], rest)
    # the check itself: a bare sum is caught
    assert metric_names(without_one_replica_terms("sum by (queue) (contactcenter_cost)"))


def test_recording_rule_names_follow_level_metric_operation() -> None:
    for rule in _rules("recording_rules.yml") + _rules("thresholds.yml"):
        assert rule["record"].count(":") == 2, rule["record"]


def test_alertmanager_example_is_valid_and_routes_alerts() -> None:
    amtool = require_binary("amtool")
    result = run([amtool, "check-config", "alertmanager.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
    for labels, receiver in [
        (["alertname=ContactCostAboveBenchmark", "channel=voice"], "operations"),
        (["alertname=ContactCostSourceStale", "source=pbx"], "exporter-admins"),
        (["alertname=ContactCostExporterDown"], "exporter-admins"),
        (["alertname=ContactCostReplicaDown"], "exporter-admins"),
        (["alertname=ContactCostStoreDown", "job=contact-cost-exporter"], "exporter-admins"),
        (["alertname=ContactCostNoLeader"], "exporter-admins"),
        (["alertname=ContactCostTwoLeaders"], "exporter-admins"),
    ]:
        result = run(
            [amtool, "config", "routes", "test", "--config.file=alertmanager.yml", *labels]
        )
        assert result.stdout.strip() == receiver, (labels, result.stdout, result.stderr)
