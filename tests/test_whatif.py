"""What-if levers (collector.whatif), each worked out by hand on one November.

Support, November 2026 (one rollup on 10 Nov): 110 contacts, 100 handled, 300 s handle
each (30000 s), talk 24000 s, billable 20000 s, 80 identified, 20 repeats.
Costs: salaries 9000/month (scales with workload), rent 3000/month (fixed), carrier
0.03 per billable minute. Baseline: 9000 + 3000 + 0.03 x 20000/60 = 12010; per contact
120.10; per resolution 12010 / (100 - 20) = 150.125.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.cli import _join_signed_values, build_parser
from collector.config import Settings
from collector.model import Rollup
from collector.whatif import LeverError, parse_aht, parse_levers, render_whatif, whatif

from .conftest import api_get, require_basic_auth, served

NOW = datetime(2026, 12, 1, 10, tzinfo=UTC)
COSTS = [
    {"name": "agents", "component": "salaries", "amount": 9000, "per": "month",
     "scales_with": "workload"},
    {"name": "rent", "component": "facilities", "amount": 3000, "per": "month"},
    {"name": "carrier", "component": "telephony", "per_minute": 0.03},
]


def support(queue: str = "support") -> Rollup:
    return Rollup(date(2026, 11, 10), "voice", "inbound", queue, "", 110, 100, 30000.0,
                  24000.0, 20000.0, 0.0, identified=80, repeats=20)


def run(levers: dict[str, str], rollups: list[Rollup] | None = None) -> dict[str, Any]:
    settings = Settings.model_validate({"costs": COSTS})
    return whatif(settings, rollups or [support()], NOW, "month", "previous",
                  parse_levers(levers))


def test_baseline() -> None:
    data = run({})
    base = data["baseline"]
    assert base["contacts"] == 100
    assert base["handle_seconds"] == 30000
    assert base["cost"] == pytest.approx(12010.0)
    assert base["cost_per_contact"] == pytest.approx(120.10)
    assert base["cost_per_resolution"] == pytest.approx(150.125)
    assert base["cost_by_component"] == pytest.approx(
        {"salaries": 9000.0, "facilities": 3000.0, "telephony": 10.0})
    assert data["scenario"] == data["baseline"]
    assert data["warnings"] == []


def test_deflect_raises_cost_per_contact_while_total_falls() -> None:
    data = run({"deflect": "10%", "deflected-cost": "0.30"})
    scen = data["scenario"]
    # 90 handled, 27000 s: salaries 9000 x 27000/30000 = 8100, rent 3000 stays,
    # carrier 0.03 x 18000/60 = 9, deflected 10 x 0.30 = 3 (other): 11112.
    assert scen["contacts"] == pytest.approx(90.0)
    assert scen["handle_seconds"] == pytest.approx(27000.0)
    assert scen["cost_by_component"] == pytest.approx(
        {"salaries": 8100.0, "facilities": 3000.0, "telephony": 9.0, "other": 3.0})
    assert scen["cost"] == pytest.approx(11112.0)
    # 11112 / 90 = 123.47 > 120.10 while the total fell by 898: the article's warning.
    assert scen["cost_per_contact"] == pytest.approx(123.4666667)
    assert data["change"]["cost"] == pytest.approx(-898.0)
    assert len(data["warnings"]) == 1
    assert data["warnings"][0].startswith(
        "cost per contact rises while total cost falls (120.10 -> 123.47 per contact, "
        "total -898.00): fixed costs")
    assert "cost per contact rises while total cost falls" in render_whatif(data)
    # A rise the table rounds away is said with four decimals: deflect 0.01% leaves 99.99
    # contacts, salaries 8999.1, rent 3000, carrier 9.999: 12009.099 / 99.99 = 120.1030.
    tiny = run({"deflect": "0.01%"})
    assert tiny["warnings"][0].startswith(
        "cost per contact rises while total cost falls (120.1000 -> 120.1030 per contact, "
        "total -0.90): ")


def test_fcr_removes_repeats_with_average_times() -> None:
    data = run({"fcr": "+5pp"})
    scen = data["scenario"]
    # 5/100 x 80 identified = 4 contacts fewer, 300 s and 200 billable s each:
    # 96 handled, 28800 s; salaries 8640, carrier 0.03 x 19200/60 = 9.6; 11649.6.
    assert scen["contacts"] == pytest.approx(96.0)
    assert scen["cost"] == pytest.approx(11649.6)
    assert scen["cost_per_contact"] == pytest.approx(121.35)
    # Repeats 20 -> 16: per resolution 11649.6 / 80 = 145.62.
    assert scen["cost_per_resolution"] == pytest.approx(145.62)


def test_fcr_cannot_remove_more_repeats_than_there_are() -> None:
    # +50pp of 80 identified is 40, but only 20 repeats happen: 80 handled remain.
    assert run({"fcr": "50pp"})["scenario"]["contacts"] == pytest.approx(80.0)


def test_fcr_says_when_it_asks_for_more_repeats_than_happen() -> None:
    # +50pp of 80 identified asks for 40 repeats to vanish; 20 happen (FCR 1 - 20/80 = 75%).
    data = run({"fcr": "50pp"})
    assert data["warnings"][0] == (
        "--fcr +50pp asks for 40 fewer repeat contacts, but only 20 repeats happen (first "
        "contact resolution is already 75.0%); the scenario removes only those")
    # After --deflect 50%: 40 identified, 10 repeats; +10pp asks for 4, 10 happen: no note.
    assert not any("--fcr" in w for w in run({"fcr": "10pp", "deflect": "50%"})["warnings"])
    # +5pp asks for 4 of 20: no note (the cost-per-contact note may still come).
    assert not any("--fcr" in w for w in run({"fcr": "+5pp"})["warnings"])
    anonymous = Rollup(date(2026, 11, 10), "voice", "inbound", "support", "", 10, 10, 3000.0,
                       2400.0, 2000.0, 0.0)
    data = run({"fcr": "5pp"}, [anonymous])
    assert data["scenario"] == data["baseline"]
    assert data["warnings"] == [
        "--fcr changes nothing: no handled contact in scope carries a customer key "
        "(contactcenter_contacts_identified is 0)"]


def test_table_names_the_levers_as_a_reader_types_them() -> None:
    data = run({"deflect": "10%", "deflected-cost": "0.30", "aht": "-30s", "automate": "15%",
                "automated-cost": "0.4", "per-minute": "0.004", "queue": "support",
                "channel": "voice"})
    assert render_whatif(data).splitlines()[1] == (
        "levers: deflect 10% at 0.30 each; handle time -30s per contact; automate 15% at "
        "0.40 each; telephony 0.004 per minute (only queue support and channel voice)")
    assert render_whatif(run({"aht": "-10%", "fcr": "+5pp"})).splitlines()[1] == (
        "levers: first contact resolution +5pp; handle time -10% per contact")
    assert render_whatif(run({})).splitlines()[1] == "levers: none"


def test_aht_by_seconds_and_by_share() -> None:
    seconds = run({"aht": "-30s"})["scenario"]
    # -30 s x 100: handle 27000 (salaries 8100), billable 17000 (carrier 8.5): 11108.5.
    assert seconds["handle_seconds"] == pytest.approx(27000.0)
    assert seconds["cost"] == pytest.approx(11108.5)
    share = run({"aht": "-10%"})["scenario"]
    # x 0.9: handle 27000 (8100), billable 18000 (9): 11109.
    assert share["cost"] == pytest.approx(11109.0)
    assert share["contacts"] == 100


def test_automate_keeps_contacts_and_usage() -> None:
    scen = run({"automate": "15%", "automated-cost": "0.40"})["scenario"]
    # Agents' seconds 30000 x 0.85 = 25500: salaries 7650; carrier stays 10;
    # 15 automated x 0.40 = 6 (software); 7650 + 3000 + 10 + 6 = 10666 over 100 contacts.
    assert scen["contacts"] == 100
    assert scen["handle_seconds"] == pytest.approx(25500.0)
    assert scen["cost_by_component"]["software"] == pytest.approx(6.0)
    assert scen["cost_by_component"]["telephony"] == pytest.approx(10.0)
    assert scen["cost_per_contact"] == pytest.approx(106.66)


def test_per_minute_scoped_to_a_queue() -> None:
    data = run({"per-minute": "0.004", "queue": "sales"}, [support(), support("sales")])
    # Only sales: 0.004 x 20000/60 = 1.3333; support keeps 10.
    comp = data["scenario"]["cost_by_component"]
    assert comp["telephony"] == pytest.approx(10 + 0.004 * 20000 / 60)
    assert comp["salaries"] == pytest.approx(9000.0)  # shared over both queues, unchanged
    assert data["levers"] == {"per_minute": 0.004, "queues": ["sales"]}


def test_deflect_scoped_to_a_channel_leaves_others() -> None:
    data = run({"deflect": "10%", "channel": "email"})
    assert data["scenario"] == data["baseline"]


def test_lever_parsing() -> None:
    assert parse_aht("-30s") == (-30.0, None)
    assert parse_aht("-10%") == (None, pytest.approx(-0.10))
    assert parse_aht("+1m") == (60.0, None)
    for bad in ({"deflect": "10"}, {"deflect": "150%"}, {"fcr": "five"}, {"aht": "-30"},
                {"speed": "1"}, {"deflect": "60%", "automate": "50%"}):
        with pytest.raises(LeverError):
            parse_levers(bad)


def test_aht_with_a_space_as_people_type_it() -> None:
    argv = _join_signed_values(["whatif", "--aht", "-30s", "--fcr", "+5pp"])
    assert argv == ["whatif", "--aht=-30s", "--fcr", "+5pp"]
    args = build_parser().parse_args(argv)
    assert args.lever_aht == "-30s"
    assert args.lever_fcr == "+5pp"


def test_whatif_command_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.cli import main

    root = Path(__file__).resolve().parent.parent
    config = (root / "config" / "example.toml").read_text()
    config = config.replace('"config/samples/', f'"{root}/config/samples/')
    config = config.replace('"state/contact-cost.db"', f'"{tmp_path}/state.db"')
    (tmp_path / "c.toml").write_text(config)
    monkeypatch.chdir(tmp_path)
    assert main(["whatif", "--config.file", str(tmp_path / "c.toml"), "--at",
                 "2026-12-01T10:00", "--aht", "-30s", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"baseline", "scenario", "levers"}
    for side in ("baseline", "scenario"):
        assert set(data[side]) >= {"contacts", "handle_seconds", "cost", "cost_per_contact",
                                   "cost_by_component"}
    assert data["levers"] == {"aht_seconds": -30.0}
    assert data["scenario"]["handle_seconds"] == pytest.approx(
        data["baseline"]["handle_seconds"] - 30 * data["baseline"]["contacts"])


# -- GET /api/v1/whatif -------------------------------------------------------------------------
@pytest.fixture
def api(tmp_path: Path) -> Any:
    from collector.model import Contact
    from collector.runtime import Exporter, LoadedConfig

    settings = Settings.model_validate({"store": str(tmp_path / "s.db"), "costs": COSTS})
    exporter = Exporter(LoadedConfig(settings, (), "test"), clock=lambda: NOW.timestamp())
    # Ten handled calls on 10 Nov, 300 s handle and 200 s billable each.
    start = datetime(2026, 11, 10, 9, tzinfo=UTC).timestamp()
    exporter.store.commit("pbx", [
        Contact(f"c{n}", "voice", "inbound", "support", start + 60 * n, True, 300.0, 240.0,
                200.0) for n in range(10)], "1")
    exporter.recompute(NOW)
    with served(exporter, max_connections=8, request_timeout=5) as srv:
        yield srv
    exporter.close()


def test_api_whatif_is_the_cli_json(api: Any) -> None:
    status, _, body = api_get(api, "/api/v1/whatif?period=month&window=previous&deflect=10%25"
                                   "&deflected-cost=0.30&aht=-30s")
    assert status == 200, body
    data = json.loads(body)
    # 10 calls: salaries 9000 (workload), rent 3000, carrier 0.03 x 2000/60 = 1.
    assert data["baseline"]["cost"] == pytest.approx(12001.0)
    # Deflect 1 call (9 left, 2700 s), then -30 s each: 2430 s, billable 1800 - 270 = 1530.
    # Salaries 9000 x 2430/3000 = 7290; carrier 0.03 x 1530/60 = 0.765; other 0.30.
    assert data["scenario"]["contacts"] == pytest.approx(9.0)
    assert data["scenario"]["cost"] == pytest.approx(7290 + 3000 + 0.765 + 0.30)
    assert data["levers"] == {"deflect": 0.1, "deflected_cost": 0.3, "aht_seconds": -30.0}


@pytest.mark.parametrize(("query", "error"), [
    ("deflect=ten", "deflect: 'ten' is not a share"),
    ("speed=1", "unknown parameter speed"),
    ("period=decade", "period: one of"),
    ("aht=-30s&aht=-10s", "give aht once"),
])
def test_api_whatif_bad_queries_are_400(api: Any, query: str, error: str) -> None:
    status, _, body = api_get(api, "/api/v1/whatif?" + query)
    assert status == 400
    assert json.loads(body)["error"].startswith(error)


def test_api_whatif_is_behind_basic_auth(api: Any) -> None:
    auth = require_basic_auth(api)
    assert api_get(api, "/api/v1/whatif?fcr=5pp")[0] == 401
    assert api_get(api, "/api/v1/whatif?fcr=5pp", auth)[0] == 200


def test_api_whatif_runs_one_at_a_time_and_answers_503_when_the_store_fails() -> None:
    import sqlite3

    from collector.whatif_api import WhatifEndpoint

    endpoint = WhatifEndpoint()
    settings = Settings.model_validate({"costs": COSTS})
    inner: list[tuple[int, bytes]] = []

    class Store:
        def rollups_as_of(self, first: date, now: datetime) -> list[Rollup]:
            # Another what-if while this one reads: refused at once, not queued.
            inner.append(endpoint.answer("fcr=5pp", self, settings, NOW))  # type: ignore[arg-type]
            raise sqlite3.OperationalError("disk I/O error")

    status, body = endpoint.answer("fcr=5pp", Store(), settings, NOW)  # type: ignore[arg-type]
    assert inner == [
        (429, b'{"error": "another what-if is being computed; try again shortly"}\n')]
    assert (status, json.loads(body)) == (
        503, {"error": "the store could not be read; see the exporter log"})


def test_baseline_is_the_exporters_own_figures() -> None:
    """The baseline is computed by the what-if's own allocation: it must equal the
    exporter's contactcenter_cost and contacts for the same window, scoped items included."""
    from collector.allocation import compute_figures

    settings = Settings.model_validate({"costs": [
        *COSTS,
        {"name": "crm", "component": "licences", "amount": 500, "per": "month",
         "queues": ["sales"], "allocate": "contacts"},
        {"name": "sms", "component": "other", "per_contact": 0.2, "channels": ["voice"]},
    ]})
    rollups = [support(), support("sales"),
               Rollup(date(2026, 11, 12), "email", "inbound", "support", "", 40, 40, 8000.0,
                      8000.0, 0.0, 3.5)]
    figures = compute_figures(settings, rollups, NOW)
    month = [s for s in figures
             if s.labels.get("period") == "month" and s.labels.get("window") == "previous"]
    cost = sum(s.value for s in month if s.name == "contactcenter_cost")
    contacts = sum(s.value for s in month if s.name == "contactcenter_contacts")
    base = whatif(settings, rollups, NOW, "month", "previous", parse_levers({}))["baseline"]
    assert base["cost"] == pytest.approx(cost)
    assert base["contacts"] == contacts == 240


def test_scales_with_is_for_shared_items_only() -> None:
    from pydantic import ValidationError

    from collector.config import CostItem

    assert CostItem.model_validate(
        {"name": "r", "component": "facilities", "amount": 1, "per": "month"}
    ).scales_with == "fixed"
    with pytest.raises(ValidationError, match="scales_with goes with shared items"):
        CostItem.model_validate({"name": "c", "component": "telephony", "per_minute": 0.01,
                                 "scales_with": "workload"})


def test_config_check_says_which_items_scale_with_workload() -> None:
    from collector.config import CostItem
    from collector.configcheck import cost_line

    agents = CostItem.model_validate(COSTS[0])
    rent = CostItem.model_validate(COSTS[1])
    assert cost_line(agents).endswith("; scales with the agents' handle hours in whatif")
    assert "whatif" not in cost_line(rent)


def test_every_flag_spelling_of_the_issue_reaches_the_levers() -> None:
    """The CLI's flags as issue 13 spells them, through argparse to the Levers."""
    from collector.whatif import Levers

    def levers_of(*flags: str) -> tuple[Levers, Any]:
        args = build_parser().parse_args(_join_signed_values(
            ["whatif", "--config.file", "c.toml", *flags]))
        given = {k.removeprefix("lever_"): v for k, v in vars(args).items()
                 if k.startswith("lever_") and v is not None}
        return parse_levers(given), args

    assert levers_of("--deflect", "10%", "--deflected-cost", "0.30")[0] == Levers(
        deflect=0.10, deflected_cost=0.30)
    assert levers_of("--fcr", "+5pp")[0] == Levers(fcr_pp=5.0)
    for aht in (["--aht=-30s"], ["--aht", "-30s"]):
        assert levers_of(*aht)[0] == Levers(aht_seconds=-30.0)
    assert levers_of("--aht=-10%")[0].aht_share == pytest.approx(-0.10)
    assert levers_of("--automate", "15%", "--automated-cost", "0.40")[0] == Levers(
        automate=0.15, automated_cost=0.40)
    assert levers_of("--per-minute", "0.004")[0] == Levers(per_minute=0.004)
    scoped, args = levers_of("--queue", "support,sales", "--channel", "voice", "--period",
                             "quarter", "--window", "current", "--at", "2026-11-16T12:00")
    assert (scoped.queues, scoped.channels) == (("support", "sales"), ("voice",))
    assert (args.period, args.window) == ("quarter", "current")
    assert args.at == datetime(2026, 11, 16, 12)
    defaults = levers_of()[1]
    assert (defaults.period, defaults.window, defaults.format) == ("month", "previous", "table")


def test_current_window_as_of_a_moment() -> None:
    settings = Settings.model_validate({"costs": COSTS})
    # As of Mon 16 Nov 00:00 UTC the current month is 1-15 Nov: half of each monthly amount
    # (salaries 4500, rent 1500) + carrier 10 = 6010 over 100 contacts; -10% handle time:
    # salaries 4500 x 0.9 = 4050, carrier 9: 5559.
    data = whatif(settings, [support()], datetime(2026, 11, 16, tzinfo=UTC), "month",
                  "current", parse_levers({"aht": "-10%"}))
    assert (data["first"], data["last"]) == ("2026-11-01", "2026-11-16")
    assert data["baseline"]["cost"] == pytest.approx(6010.0)
    assert data["scenario"]["cost"] == pytest.approx(5559.0)
    assert data["scenario"]["cost_per_contact"] == pytest.approx(55.59)


def test_aht_scoped_to_a_channel_moves_only_its_minutes() -> None:
    email = Rollup(date(2026, 11, 10), "email", "inbound", "support", "", 110, 100, 30000.0,
                   24000.0, 20000.0, 0.0)
    data = run({"aht": "-30s", "channel": "email"}, [support(), email])
    scen = data["scenario"]
    # Baseline: salaries 9000, rent 3000, carrier 0.03 x 40000/60 = 20: 12020.
    assert data["baseline"]["cost"] == pytest.approx(12020.0)
    # Email only: handle 30000 - 100 x 30 = 27000, billable 17000; voice as it was.
    # Agents' seconds 60000 -> 57000: salaries 8550; carrier 0.03 x 37000/60 = 18.5.
    assert scen["handle_seconds"] == pytest.approx(57000.0)
    assert scen["cost_by_component"] == pytest.approx(
        {"salaries": 8550.0, "facilities": 3000.0, "telephony": 18.5})


def test_per_minute_replaces_an_export_price() -> None:
    settings = Settings.model_validate({"costs": COSTS[:2]})
    priced = support()._replace(price=50.0)
    data = whatif(settings, [priced], NOW, "month", "previous",
                  parse_levers({"per-minute": "0.004"}))
    # The export priced the calls at 50.00; at 0.004 a minute their 20000 billable s cost
    # 0.004 x 20000/60 = 1.3333: 12050 -> 12001.33.
    assert data["baseline"]["cost"] == pytest.approx(12050.0)
    assert data["scenario"]["cost_by_component"]["telephony"] == pytest.approx(0.004 * 20000 / 60)
