"""A queue log that enriches a CDR source (cdr_source) stores no contacts of its own, yet
its newest record must be known: contactcenter_source_last_record_timestamp_seconds is what
ContactCostSourceQuiet watches (issue 9 item 4). At 0 ("no record ever") the alert would
fire every open day for a queue log that is working fine."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.base import QueueCall
from collector.store import SqliteStore

FIXTURES = Path(__file__).parent / "fixtures" / "queue_log"


def test_the_newest_kept_queue_entry_is_the_sources_newest_record(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", ZoneInfo("UTC"))
    assert store.newest_start("qlog") is None
    store.commit_records("qlog", [], [], None, [
        QueueCall("1700001000.10", "pbx", "support", 1700001000.0, 20.0, "answered"),
        QueueCall("1700001100.12", "pbx", "support", 1700001100.0, 4.0, "abandoned"),
    ])
    # The newest ENTERQUEUE of the two: 1700001100.
    assert store.newest_start("qlog") == 1700001100.0
    # A redelivered older entry and a new one: the newest is the new one's 1700001200.
    store.commit_records("qlog", [], [], None, [
        QueueCall("1700001000.10", "pbx", "support", 1700001000.0, 20.0, "answered"),
        QueueCall("1700001200.13", "pbx", "sales", 1700001200.0, 25.0, "key"),
    ])
    assert store.newest_start("qlog") == 1700001200.0
    assert store.newest_start("pbx") is None  # the CDR source has no contact yet
    store.close()
    # After a restart it is read back from the store.
    again = SqliteStore(tmp_path / "s.db", ZoneInfo("UTC"))
    assert again.newest_start("qlog") == 1700001200.0
    again.close()


def test_the_exporter_reports_the_queue_logs_newest_entry(tmp_path: Path) -> None:
    from collector.runtime import Exporter, load_config
    from tests.conftest import parse_exposition, pbx_with_queue_log

    config = pbx_with_queue_log(tmp_path, "")
    name = "contactcenter_source_last_record_timestamp_seconds"
    exporter = Exporter(load_config(config))
    try:
        exporter.ingest("queues")
        values = parse_exposition(exporter.health.body.decode())
    finally:
        exporter.close()
    # The fixture's newest ENTERQUEUE is call 1700001500.17's, at 1700001500.
    assert values[(name, frozenset({("source", "queues")}))] == 1700001500.0
    assert values[(name, frozenset({("source", "pbx")}))] == 0.0  # nothing stored yet
    # A restarted exporter reads it back from the store.
    exporter = Exporter(load_config(config))
    try:
        values = parse_exposition(exporter.health.body.decode())
    finally:
        exporter.close()
    assert values[(name, frozenset({("source", "queues")}))] == 1700001500.0
