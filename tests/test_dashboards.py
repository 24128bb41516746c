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
    texts += [v["query"]["query"] for v in variables(board).values()
              if isinstance(v.get("query"), dict)]
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


def test_every_raw_figure_sum_takes_one_replica() -> None:
    """Replicas of one store serve the same figures: a panel that sums raw figure parts
    keeps one replica per set first, as the recording rules do (tests/test_rules.py)."""
    from tests.prom_helpers import metric_names
    from tests.test_rules import NOT_A_FIGURE_PART, without_one_replica_terms

    # per-process counters are summed over replicas on purpose: each counts what it read
    counters = re.compile(r"contactcenter_(?:source|scheduler|store_errors|webhook)\w*_total")
    checked = 0
    for path in DASHBOARD_FILES:
        for panel in iter_panels(load_dashboard(path)):
            for t in panel["targets"]:
                if "sum" not in t["expr"]:
                    continue
                rest = counters.sub("", without_one_replica_terms(t["expr"]))
                names = metric_names(rest) - NOT_A_FIGURE_PART - {
                    "contactcenter_info", "contactcenter_leader", "contactcenter_store_up"}
                assert not names, (path.name, panel["title"], t["refId"], rest)
                checked += "freshest" in t["expr"]
    assert checked >= 20


def test_sources_dashboard_shows_leader_store_and_webhooks() -> None:
    """Issue 14: contactcenter_leader and contactcenter_store_up per instance, store errors
    by operation and webhook requests (both with a 0 line until their first event)."""
    board = load_dashboard(GRAFANA_DIR / "dashboards" / "contact-cost-sources.json")
    by_title = {p["title"]: p for p in iter_panels(board)}
    expected = {
        "Leader per instance": ("contactcenter_leader", "{{instance}}"),
        "Store up per instance": ("contactcenter_store_up", "{{instance}}"),
        "Store errors by operation": ("contactcenter_store_errors_total", "{{instance}} {{operation}}"),
        "Webhook requests by source and status": (
            "contactcenter_webhook_requests_total", "{{source}} {{status}}"),
    }
    for title, (metric, legend) in expected.items():
        (t,) = by_title[title]["targets"]
        assert metric in t["expr"] and t["legendFormat"] == legend, (title, t)
    mappings = by_title["Leader per instance"]["options"]["reduceOptions"], by_title[
        "Leader per instance"]["fieldConfig"]["defaults"]["mappings"]
    texts = {k: v["text"] for k, v in mappings[1][0]["options"].items()}
    assert texts == {"0": "follower", "1": "leader"}
    assert "by (instance, operation)" in by_title["Store errors by operation"]["targets"][0]["expr"]
    assert "by (source, status)" in by_title[
        "Webhook requests by source and status"]["targets"][0]["expr"]


# A Grafana legend template is {{label}}; anything else in braces is a str.format leftover.
GRAFANA_TEMPLATE = re.compile(r"\{\{(\w+)\}\}")


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=IDS)
def test_no_unreplaced_placeholder_in_a_legend_or_title(path: Path) -> None:
    """The old bug: every "Cost per contact by channel, now" value was named "{channel} ·
    today", because str.format turned the legend's {{channel}} into a literal {channel}."""
    board = load_dashboard(path)
    assert not re.search(r"[{}$]", board["title"]), board["title"]
    for panel in iter_panels(board):
        assert not re.search(r"[{}$%]", panel["title"]), panel["title"]
        for t in panel["targets"]:
            legend = t.get("legendFormat", "")
            leftover = GRAFANA_TEMPLATE.sub("", legend)
            assert "{" not in leftover and "}" not in leftover, (panel["title"], legend)
            # Each {{label}} is a label the query's result has: one of its `by (...)` labels
            # when it aggregates, else a label of the raw series.
            grouped = {
                name.strip()
                for group in re.findall(r"\bby \(([^)]*)\)", t["expr"])
                for name in group.split(",")
            }
            for label in GRAFANA_TEMPLATE.findall(legend):
                if grouped:
                    assert label in grouped, (panel["title"], t["refId"], label)


def test_the_band_stat_names_each_value_by_its_channel() -> None:
    board = load_dashboard(GRAFANA_DIR / "dashboards" / "contact-cost-overview.json")
    (panel,) = [p for p in iter_panels(board) if p["title"] == "Cost per contact by channel, now"]
    legends = {t["refId"]: t["legendFormat"] for t in panel["targets"]}
    assert legends["DAY_IN"] == "{{channel}} · today"
    assert legends["MONTH_ABOVE"] == "{{channel}} · month to date"
    (center,) = [p for p in iter_panels(board) if p["title"].endswith("whole center, now")]
    assert {t["legendFormat"] for t in center["targets"]} == {
        "today", "week to date", "month to date"}


def money_units(files: dict[str, str]) -> set[str]:
    import json

    found = set()
    for text in files.values():
        for panel in iter_panels(json.loads(text)):
            unit = panel["fieldConfig"]["defaults"].get("unit", "")
            if unit.startswith("currency"):
                found.add(unit)
    return found


def test_currency_unit_from_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator = load_generator()
    assert money_units(generator.build()) == {"currencyUSD"}
    assert money_units(generator.build("EUR")) == {"currencyEUR"}
    config = tmp_path / "contact-cost.toml"
    config.write_text('currency = "NOK"\ntimezone = "Europe/Oslo"\n')
    committed = {p.name: p.read_text() for p in DASHBOARD_FILES}
    assert generator.main(["--config", str(config), "--out", str(tmp_path / "out")]) == 0
    written = {p.name: p.read_text() for p in sorted((tmp_path / "out").iterdir())}
    assert sorted(written) == IDS
    assert money_units(written) == {"currencyNOK"}
    # Only the unit differs from the committed USD dashboards.
    for name, text in written.items():
        assert text.replace("currencyNOK", "currencyUSD") == committed[name]
    # An environment override wins, as it does for the exporter.
    monkeypatch.setenv("CONTACT_COST_CURRENCY", "SEK")
    assert generator.main(["--config", str(config), "--out", str(tmp_path / "sek")]) == 0
    assert money_units({p.name: p.read_text() for p in (tmp_path / "sek").iterdir()}) == {
        "currencySEK"}
    # Another currency never overwrites the committed files, and Grafana must know it.
    with pytest.raises(SystemExit):
        generator.main(["--currency", "EUR"])
    with pytest.raises(SystemExit):
        generator.main(["--currency", "XYZ", "--out", str(tmp_path / "xyz")])
    assert {p.name: p.read_text() for p in DASHBOARD_FILES} == committed
    assert generator.main(["--check"]) == 0


def test_the_generator_is_built_on_a_grafana_11_sdk() -> None:
    from importlib.metadata import version

    sdk = version("grafana-foundation-sdk")
    epoch, _, flavour = sdk.partition("!")
    assert epoch.isdigit() and flavour.startswith("11."), sdk
    pyproject = (GRAFANA_DIR.parent / "pyproject.toml").read_text()
    assert f'"grafana-foundation-sdk=={sdk}"' in pyproject
    source = (GRAFANA_DIR / "generate.py").read_text()
    assert "from grafana_foundation_sdk.builders import" in source
    # Legends are concatenated, never str.format'ted (which eats Grafana's {{...}}).
    assert not re.search(r"[\"']\)?\.format\(", source)


def test_provisioning_files() -> None:
    yaml = require_yaml()
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    assert datasources["apiVersion"] == 1
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    # Not the default: provisioning must not clash with a Grafana that already has one.
    assert [d["isDefault"] for d in datasources["datasources"]] == [False]
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "contact-cost.yaml").read_text()
    )
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
