"""Configuration: the example loads as is, env overrides the file, bad input fails with one line."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from collector.config import ConfigError, load_settings, parse_duration
from collector.configcheck import CheckResult, check_config, summary
from collector.runtime import load_config

from .conftest import REPO

EXAMPLE = REPO / "config" / "example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_example_config_loads_as_is() -> None:
    s = load_settings(EXAMPLE)
    assert s.currency == "USD"
    assert s.timezone == "Europe/Oslo"
    assert s.interval == timedelta(seconds=60)
    assert s.store == Path("state/contact-cost.db")
    assert (s.benchmark.low, s.benchmark.high) == (1.60, 6.50)
    assert s.benchmark.band_for("email").high == 4.50
    assert s.benchmark.band_for("voice").high == 6.50  # default band
    assert [src.name for src in s.sources] == ["pbx", "helpdesk"]
    assert s.source_interval(s.sources[0]) == timedelta(seconds=30)
    assert s.source_interval(s.sources[1]) == timedelta(seconds=60)
    assert len(s.costs) == 6
    hardware = s.costs[2]
    assert (hardware.amortize_months, hardware.from_) == (36, date(2026, 1, 1))
    pay_rise = s.costs[5]
    assert pay_rise.queues == ["support"] and pay_rise.from_ == date(2026, 7, 1)
    assert s.costs[3].per_minute == 0.012 and s.costs[3].is_usage


def test_example_builds_its_adapters() -> None:
    config = load_config(EXAMPLE)
    assert [type(a).__name__ for a in config.adapters] == ["AsteriskCdrAdapter", "CsvAdapter"]


def test_env_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACT_COST_INTERVAL", "5m")
    monkeypatch.setenv("CONTACT_COST_BENCHMARK__HIGH", "7.5")
    monkeypatch.setenv("CONTACT_COST_CURRENCY", "EUR")
    s = load_settings(EXAMPLE)
    assert s.interval == timedelta(minutes=5)
    assert s.benchmark.high == 7.5
    assert s.benchmark.low == 1.60  # untouched part of the same table stays from the file
    assert s.currency == "EUR"


@pytest.mark.parametrize(
    ("text", "value"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("250ms", 0.25), (90, 90)],
)
def test_durations(text: str | int, value: float) -> None:
    assert parse_duration(text).total_seconds() == value


@pytest.mark.parametrize("text", ["30", "5 minutes", "-1s", "0s", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


BASE = 'currency = "USD"\ntimezone = "Europe/Oslo"\n'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '[[costs]]\nname = "Rent"\ncomponent = "facilities"\namount = 1\nper = "month"\n'
            "per_minute = 0.1\n",
            "c.toml: costs[0] (Rent): needs exactly one way of costing (amount + per, amount + "
            "amortize_months, per_minute or per_contact); found amount + per, per_minute",
        ),
        (
            '[[costs]]\nname = "Rent"\ncomponent = "rent"\namount = 1\nper = "month"\n',
            "c.toml: costs[0] (Rent).component: Input should be 'salaries', 'benefits', "
            "'licences', 'hardware', 'software', 'facilities', 'utilities', 'telephony' or 'other'",
        ),
        (
            '[[costs]]\nname = "PCs"\ncomponent = "hardware"\namount = 100\namortize_months = 3\n',
            "c.toml: costs[0] (PCs): an amortized purchase needs `from`, the date it starts",
        ),
        ('interval = "soon"\n', "c.toml: interval: 'soon' is not a duration"),
        ("[benchmark]\nlow = 6\nhigh = 5\n", "c.toml: benchmark: low (6.0) must be below high"),
        ('colour = "blue"\n', "c.toml: colour: unknown field; valid fields: benchmark, costs"),
    ],
)
def test_invalid_config_names_file_and_field(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, BASE + body)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value).replace(str(tmp_path) + "/", "")
    assert message.startswith(expected), message
    assert "\n" not in message


def test_bad_timezone(tmp_path: Path) -> None:
    path = write(tmp_path, 'timezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match=r"timezone: 'Mars/Olympus' is not an IANA time zone"):
        load_settings(path)


def test_unknown_adapter_lists_installed(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + '[[sources]]\nname = "pbx"\nadapter = "avaya"\npath = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "sources[0] (pbx).adapter: adapter 'avaya' is not installed (installed: " in message
    assert "asterisk_cdr" in message and "csv" in message


def test_adapter_field_error_names_source_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE + '[[sources]]\nname = "pbx"\nadapter = "asterisk_cdr"\npath = "x"\nusegmtime = "maybe"\n',
    )
    with pytest.raises(ConfigError, match=r"sources\[0\] \(pbx\)\.usegmtime: Input should be"):
        load_config(path)


def test_duplicate_source_names(tmp_path: Path) -> None:
    source = '[[sources]]\nname = "pbx"\nadapter = "asterisk_cdr"\npath = "x"\n'
    with pytest.raises(ConfigError, match="source name 'pbx' is used twice"):
        load_settings(write(tmp_path, BASE + source + source))


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "currency = \n"))


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_check_ok_prints_summary() -> None:
    result = run_cli("--config.file", str(EXAMPLE), "--config.check")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "valid" in out.splitlines()[0]
    assert "pbx: adapter asterisk_cdr, every 30s, path=config/samples/Master.csv" in out
    assert "helpdesk: adapter csv, every 1m" in out
    assert "Contact-center licences [licences]: 39 per month x 40 seats" in out
    assert "Headsets and PCs [hardware]: 54000 amortized over 36 months" in out
    assert "Carrier minutes [telephony]: 0.012 per billable minute" in out


def test_config_check_invalid_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'interval = "0s"\n')
    result = run_cli("--config.file", str(path), "--config.check")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"contact-cost-exporter: invalid configuration: {path}: interval: "
        "a duration must be greater than zero"
    ]


def test_env_overrides_a_named_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACT_COST_SOURCES__PBX__PATH", "/var/log/asterisk/cdr-csv/Master.csv")
    monkeypatch.setenv("CONTACT_COST_SOURCES__helpdesk__columns__queue", "Team")
    s = load_settings(EXAMPLE)
    assert s.sources[0].model_extra["path"] == "/var/log/asterisk/cdr-csv/Master.csv"
    columns = s.sources[1].model_extra["columns"]
    assert columns["queue"] == "Team" and columns["id"] == "Ticket ID"


def test_env_for_unknown_source_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACT_COST_SOURCES__NOPE__TOKEN", "s3cret-value")
    with pytest.raises(ConfigError) as info:
        load_settings(EXAMPLE)
    assert "CONTACT_COST_SOURCES__NOPE__TOKEN: no source of that name" in str(info.value)
    assert "s3cret-value" not in str(info.value)


def test_total_is_not_a_label_value(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + '[[costs]]\nname = "X"\ncomponent = "other"\nper_contact = 1\n'
                 'queues = ["total"]\n')
    with pytest.raises(ConfigError, match=r"costs\[0\] \(X\)\.queues: scope value 'total' is reserved"):
        load_settings(path)


# -- --config.check tells the whole truth ---------------------------------------------------------
def check(tmp_path: Path, text: str) -> CheckResult:
    return check_config(write(tmp_path, text), environ={})


THREE_PROBLEMS = (
    BASE
    + 'intervl = "1m"\n'  # misspelt top-level field
    + '[[sources]]\nname = "tickets"\nadapter = "csv"\npth = "t.csv"\nchannel = "email"\n'
    + 'columns = { started_at = "Created", handle_seconds = "AHT" }\n'  # misspelt `path`
    + '[[costs]]\nname = "Rent"\ncompnent = "facilities"\namount = 1\nper = "month"\n'
)


def test_check_lists_every_problem_one_line_each(tmp_path: Path) -> None:
    result = check(tmp_path, THREE_PROBLEMS)
    lines = [p.replace(str(tmp_path) + "/", "") for p in result.problems]
    # The Settings model reports the cost item's missing and unknown field and the unknown
    # top-level field; the csv adapter's model reports the source's missing and unknown field.
    assert lines == [
        "c.toml: costs[0] (Rent).component: Field required",
        "c.toml: costs[0] (Rent).compnent: unknown field; did you mean `component`?",
        "c.toml: intervl: unknown field; did you mean `interval`?",
        "c.toml: sources[0] (tickets).path: Field required",
        "c.toml: sources[0] (tickets).pth: unknown field; did you mean `path`?",
    ]
    assert all("\n" not in line for line in lines)
    assert result.config is None and result.warnings == []


def test_unknown_field_without_a_close_name_lists_the_valid_ones(tmp_path: Path) -> None:
    result = check(tmp_path, BASE + "[benchmark]\nwidth = 3\n")
    (line,) = result.problems
    assert line.endswith("benchmark.width: unknown field; valid fields: channels, high, low")


def test_cli_check_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, THREE_PROBLEMS)
    result = run_cli("--config.file", str(path), "--config.check")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 5, result.stderr
    assert all(line.startswith(f"contact-cost-exporter: invalid configuration: {path}: ")
               for line in lines)
    assert "more problem" not in result.stderr
    assert result.stdout == ""


WARNED = (
    BASE
    + '[[sources]]\nname = "pbx"\nadapter = "asterisk_cdr"\npath = "missing/Master.csv"\n'
    + 'queues = { "from-queue" = "support" }\n'
    + '[[sources]]\nname = "tickets"\nadapter = "csv"\npath = "tickets.csv"\nchannel = "email"\n'
    + 'columns = { started_at = "Created", handle_seconds = "AHT", queue = "Group" }\n'
)
SCOPED_COSTS = (
    '[[costs]]\nname = "Sales team"\ncomponent = "salaries"\namount = 5000\nper = "month"\n'
    'queues = ["sales"]\nchannels = ["chat"]\ndirections = ["inbound"]\nfrom = "2026-01-01"\n'
    'until = "2026-06-30"\nallocate = "contacts"\n'
    '[[costs]]\nname = "Support"\ncomponent = "salaries"\namount = 9000\nper = "month"\n'
    'queues = ["support"]\nchannels = ["voice", "email"]\n'
    '[[costs]]\nname = "Minutes"\ncomponent = "telephony"\nper_minute = 0.01\n'
    'until = "2026-12-31"\n'
)


def test_check_warns_about_what_would_make_figures_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tickets.csv").write_text("Created,AHT,Group\n")
    result = check(tmp_path, WARNED + SCOPED_COSTS)
    assert result.problems == []
    lines = [w.replace(str(tmp_path) + "/", "") for w in result.warnings]
    assert lines == [
        # the PBX file does not exist (the csv one does)
        f"c.toml: sources[0] (pbx).path: missing/Master.csv does not exist (relative to "
        f"{tmp_path}); the source reports down until it appears",
        # a queue column but no mapping: everything in `other`
        "c.toml: sources[1] (tickets).columns.queue: set, but the source has no `queues` "
        "mapping, so every contact lands in queue `other`; map the column's values to queues",
        # queues produced: support (pbx mapping), other; channels: voice (pbx), email (csv)
        "c.toml: costs[0] (Sales team).queues: no source maps a contact to queue `sales`, so "
        "this cost finds no contacts there",
        "c.toml: costs[0] (Sales team).channels: no source gives a contact channel `chat`, so "
        "this cost finds no contacts there",
    ]


def test_check_warns_about_no_costs_and_strict_fails(tmp_path: Path) -> None:
    result = check(tmp_path, BASE)
    assert [w.replace(str(tmp_path) + "/", "") for w in result.warnings] == [
        "c.toml: costs: no cost items, so every cost figure is 0"
    ]
    path = write(tmp_path, BASE)
    lenient = run_cli("--config.file", str(path), "--config.check")
    assert lenient.returncode == 0, lenient.stderr
    assert lenient.stderr.strip() == (
        f"contact-cost-exporter: warning: {path}: costs: no cost items, so every cost figure is 0"
    )
    strict = run_cli("--config.file", str(path), "--config.check", "--config.check.strict")
    assert strict.returncode == 1
    assert "costs: no cost items" in strict.stderr
    assert "valid" in strict.stdout  # the summary is still printed


def test_summary_shows_each_cost_items_scope_dates_and_allocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tickets.csv").write_text("Created,AHT,Group\n")
    result = check(tmp_path, WARNED + SCOPED_COSTS)
    assert result.config is not None
    text = summary(result.config)
    assert (
        "  Sales team [salaries]: 5000 per month; scope channels chat and directions inbound "
        "and queues sales; from 2026-01-01 until 2026-06-30; allocated over handled contacts "
        "in scope, equally"
    ) in text.splitlines()
    assert (
        "  Support [salaries]: 9000 per month; scope channels voice, email and queues support; "
        "no start or end date; allocated over handled contacts in scope by handle time"
    ) in text.splitlines()
    assert (
        "  Minutes [telephony]: 0.01 per billable minute; scope all contacts; until 2026-12-31; "
        "charged to each contact in scope by its billable minutes"
    ) in text.splitlines()


def test_example_config_checks_without_warnings() -> None:
    result = check_config(EXAMPLE, environ={})
    assert result.problems == [] and result.warnings == []
