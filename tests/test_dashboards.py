"""Static rules for the Grafana dashboards and provisioning files, and generator round trip."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

from tests.prom_helpers import (
    DASHBOARD_FILES,
    GRAFANA_BUILTINS,
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    iter_panels,
    load_dashboard,
    recorded_names,
    require_yaml,
)

EXPECTED_UIDS = {
    "contact-cost-overview.json": "contact-cost-overview",
    "contact-cost-sources.json": "contact-cost-sources",
}
MONEY = re.compile(r"contactcenter_cost|cost_per|benchmark_|outbound_cost")
DS_REF = {"type": "prometheus", "uid": "${datasource}"}
IDS = [p.name for p in DASHBOARD_FILES]


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA_DIR / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


def test_the_dashboards_are_there_with_stable_uids() -> None:
    assert {p.name: load_dashboard(p)["uid"] for p in DASHBOARD_FILES} == EXPECTED_UIDS


def test_committed_json_is_what_the_generator_writes() -> None:
    generated = load_generator().build()
    assert sorted(generated) == IDS
    for path in DASHBOARD_FILES:
        assert path.read_text() == generated[path.name], f"{path.name}: run grafana/generate.py"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=IDS)
def test_datasource_variable_and_every_query_uses_it(path: Path) -> None:
    board = load_dashboard(path)
    ds = variables(board)["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for panel in iter_panels(board):
        assert panel["datasource"] == DS_REF, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DS_REF, (panel["title"], target["refId"])
    for var in variables(board).values():
        if var["type"] == "query":
            assert var["datasource"] == DS_REF, var["name"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=IDS)
def test_every_panel_has_a_title_a_description_and_queries(path: Path) -> None:
    board = load_dashboard(path)
    panels = iter_panels(board)
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        assert panel.get("title", "").strip(), panel
        assert len(panel.get("description", "").strip()) > 20, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=IDS)
def test_money_panels_have_a_currency_unit(path: Path) -> None:
    board = load_dashboard(path)
    for panel in iter_panels(board):
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        if any(MONEY.search(t["expr"]) for t in panel["targets"]):
            assert unit.startswith("currency"), f"{panel['title']}: unit {unit!r}"
        else:
            assert not unit.startswith("currency"), f"{panel['title']} is not money"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=IDS)
def test_every_variable_a_query_uses_is_defined(path: Path) -> None:
    board = load_dashboard(path)
    defined = set(variables(board)) | set(GRAFANA_BUILTINS)
    texts = [t["expr"] for p in iter_panels(board) for t in p["targets"]]
    texts += [v["definition"] for v in variables(board).values() if "definition" in v]
    for text in texts:
        for name in re.findall(r"\$\{?(\w+)", text):
            assert name in defined, f"${name} is not a variable: {text}"


def test_cost_dashboards_filter_by_period_channel_and_queue() -> None:
    """Every dashboard that shows cost figures has the period, channel and queue variables."""
    for path in DASHBOARD_FILES:
        board = load_dashboard(path)
        exprs = " ".join(t["expr"] for p in iter_panels(board) for t in p["targets"])
        if "contactcenter_cost" not in exprs:
            continue
        found = variables(board)
        assert {"period", "channel", "queue"} <= set(found), path.name
        assert [o["value"] for o in found["period"]["options"]] == [
            "day",
            "week",
            "month",
            "quarter",
            "year",
        ]
        for name in ("channel", "queue"):
            assert found[name]["includeAll"] and found[name]["allValue"] == ".*", name


def test_overview_has_the_panels_the_issue_lists() -> None:
    board = load_dashboard(GRAFANA_DIR / "dashboards" / "contact-cost-overview.json")
    titles = " | ".join(p["title"].lower() for p in iter_panels(board))
    for words in [
        "cost per contact by channel, now",
        "with the benchmark band",
        "by component",
        "handled and abandoned",
        "average handle time",
        "per sale and per lead",
        "unallocated",
        "by queue",
        "by channel",
    ]:
        assert words in titles, words


def test_band_stats_have_one_colour_per_band_state() -> None:
    board = load_dashboard(GRAFANA_DIR / "dashboards" / "contact-cost-overview.json")
    for panel in iter_panels(board):
        refs = {t["refId"] for t in panel["targets"]}
        if not any(r.endswith("_ABOVE") for r in refs):
            continue
        colours = {
            o["matcher"]["options"]: o["properties"][0]["value"]["fixedColor"]
            for o in panel["fieldConfig"]["overrides"]
        }
        for ref in refs:
            state = ref.rsplit("_", 1)[1]
            assert colours[ref] == {"BELOW": "blue", "IN": "green", "ABOVE": "red"}[state]


def test_recording_rules_used_by_dashboards_exist() -> None:
    yaml = require_yaml()
    recorded = {
        rule["record"]
        for name in ("recording_rules.yml", "thresholds.yml")
        for group in yaml.safe_load((PROMETHEUS_DIR / name).read_text())["groups"]
        for rule in group["rules"]
    }
    for path in DASHBOARD_FILES:
        for panel in iter_panels(load_dashboard(path)):
            for target in panel["targets"]:
                missing = recorded_names(target["expr"]) - recorded
                assert not missing, (path.name, panel["title"], missing)


def test_provisioning_files() -> None:
    yaml = require_yaml()
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    assert datasources["apiVersion"] == 1
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "contact-cost.yaml").read_text()
    )
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
