"""Source health the alerts rely on: the newest stored contact per source, from the store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from collector.runtime import Exporter, load_config
from collector.server import landing_page

from .conftest import parse_exposition

CONFIG = """
currency = "EUR"
timezone = "Europe/Oslo"
store = "state.db"

[[sources]]
name = "tickets"
adapter = "csv"
path = "tickets.csv"
channel = "email"
columns = { id = "id", started_at = "created", handle_seconds = "aht" }
time_format = "%Y-%m-%d %H:%M:%S"

[[sources]]
name = "chat"
adapter = "csv"
path = "chat.csv"
channel = "chat"
columns = { id = "id", started_at = "created", handle_seconds = "aht" }
time_format = "%Y-%m-%d %H:%M:%S"

[[costs]]
name = "Salaries"
component = "salaries"
amount = 3000
per = "month"
"""
# Oslo is UTC+1 in November: 2026-11-26 09:30:00 local is 08:30:00 UTC = 1795681800.
TICKETS = "id,created,aht\nT1,2026-11-26 08:00:00,60\nT3,2026-11-26 09:30:00,60\nT2,2026-11-26 09:00:00,60\n"
NEWEST = 1795681800.0
LATER = "T4,2026-11-26 10:15:00,60\n"  # 09:15 UTC = 1795684500
NEWEST_LATER = 1795684500.0
METRIC = "contactcenter_source_last_record_timestamp_seconds"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "tickets.csv").write_text(TICKETS)
    (tmp_path / "chat.csv").write_text("id,created,aht\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def last_record(exporter: Exporter) -> dict[str, float]:
    values = parse_exposition(exporter.health.body.decode())
    return {dict(labels)["source"]: v for (name, labels), v in values.items() if name == METRIC}


def test_newest_stored_contact_per_source_survives_a_restart(workdir: Path) -> None:
    exporter = Exporter(load_config("c.toml"))
    assert last_record(exporter) == {"tickets": 0.0, "chat": 0.0}  # nothing stored yet
    assert exporter.ingest("tickets") == 3
    exporter.ingest("chat")
    # the newest start, not the last row of the file (T2 at 09:00 comes after T3 at 09:30)
    assert last_record(exporter) == {"tickets": NEWEST, "chat": 0.0}
    exporter.close()

    restarted = Exporter(load_config("c.toml"))  # same store, nothing read yet
    assert last_record(restarted) == {"tickets": NEWEST, "chat": 0.0}
    with (workdir / "tickets.csv").open("a") as handle:
        handle.write(LATER)
    assert restarted.ingest("tickets") == 1
    assert last_record(restarted) == {"tickets": NEWEST_LATER, "chat": 0.0}
    # re-reading nothing new keeps it: a read without new contacts is not a new contact
    assert restarted.ingest("tickets") == 0
    assert last_record(restarted)["tickets"] == NEWEST_LATER
    restarted.close()


def test_landing_page_counts_come_from_the_store(workdir: Path) -> None:
    exporter = Exporter(load_config("c.toml"))
    exporter.ingest("tickets")
    exporter.close()
    restarted = Exporter(load_config("c.toml"))  # nothing read since the restart
    restarted.recompute()  # the page shows the store's counts as of the snapshot
    page = landing_page(restarted, "/metrics")
    # three stored tickets, although this process has stored none ("since start" would be 0)
    tickets = '<td class="num">3</td><td class="num">0</td>'
    assert re.search(r'<td>tickets</td><td>csv</td><td><span class="idle">not read yet</span>'
                     rf"</td><td>never</td><td>[^<]+</td>{tickets}", page)
    chat = '<td class="num">0</td><td class="num">0</td>'
    assert re.search(r'<td>chat</td><td>csv</td><td><span class="idle">not read yet</span>'
                     rf"</td><td>never</td><td>none</td>{chat}", page)
    assert '<th class="num">stored contacts</th>' in page
    restarted.close()


def test_a_webhook_contact_moves_the_newest_record_time(tmp_path: Path) -> None:
    """A push-only source has no reads: each stored event sets its newest contact time."""
    from collector.config import Settings
    from collector.health import HealthState
    from collector.webhooks import WebhookReceiver

    from .test_webhooks import EVENT, NOW, adapters, generic_post
    from .vendor_support import new_store

    health = HealthState()
    health.configure({"crm": 60.0})
    receiver = WebhookReceiver(Settings(), adapters(), new_store(tmp_path), health,
                               max_body_bytes=4096, clock=lambda: NOW)
    values = parse_exposition(health.body.decode())
    assert values[(METRIC, frozenset({("source", "crm")}))] == 0.0
    assert generic_post(receiver, EVENT)[0] == 200  # start 2026-03-10T09:00:00Z
    values = parse_exposition(health.body.decode())
    assert values[(METRIC, frozenset({("source", "crm")}))] == 1773133200.0
