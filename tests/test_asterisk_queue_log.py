"""Asterisk queue_log: the documented line forms of several versions, exits and waits,
enrichment of a CDR source's contacts, and incremental reading across restarts.

Fixtures follow the event parameter lists of the Asterisk queue log documentation
(docs.asterisk.org, Operation/Logging/Queue-Logs; doc/queuelog.txt of the 1.4 tree):
ENTERQUEUE url|callerid (+ position from 11), CONNECT holdtime|bridged uniqueid(|ringtime),
COMPLETE* holdtime|calltime|origposition, ABANDON position|origposition|waittime, ...
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.asterisk_queue_log import (
    AsteriskQueueLogAdapter,
    AsteriskQueueLogSettings,
    load_position,
    parse_queue_log,
)
from adapters.base import AdapterContext, Contact, Leg, QueueCall, hash_customer
from collector.store import SqliteStore

FIXTURES = Path(__file__).parent / "fixtures" / "queue_log"
QUEUES = {"support": "support", "sales": "sales"}
FAR = 2e9  # max_future bound far beyond the fixtures (2033)


def settings(path: Path = FIXTURES / "x", **extra: object) -> AsteriskQueueLogSettings:
    return AsteriskQueueLogSettings.model_validate(
        {"name": "qlog", "adapter": "asterisk_queue_log", "path": str(path), "queues": QUEUES,
         **extra})


def parse(name: str, **extra: object) -> tuple[object, dict[str, object]]:
    open_calls: dict[str, object] = {}
    parsed = parse_queue_log((FIXTURES / name).read_bytes(), 1, open_calls,  # type: ignore[arg-type]
                             settings(**extra), FAR)
    return parsed, open_calls


def test_asterisk_1_4_forms() -> None:
    parsed, open_calls = parse("asterisk-1.4.queue_log")
    assert parsed.rejections == []  # type: ignore[attr-defined]
    assert open_calls == {}
    by_id = {c.id: c for c in parsed.contacts}  # type: ignore[attr-defined]
    assert sorted(by_id) == ["1700000000.1", "1700000100.3", "1700000200.4", "1700000300.5"]
    # Answered after 12 s, 180 s with the agent: handled, wait 12, talk 180, billed 192
    # (the caller's line is up from entering the queue to the end).
    assert by_id["1700000000.1"] == Contact(
        "1700000000.1", "voice", "inbound", "support", 1700000000.0, True, 180.0, 180.0,
        192.0, "", hash_customer("+4755501001"), None, "", 12.0)
    # EXITWITHKEY of 1.4 (key|position): no waittime, so 130 - 100 = 30 s since ENTERQUEUE.
    key = by_id["1700000100.3"]
    assert (key.handled, key.reason, key.wait_seconds, key.customer) == (
        False, "key", 30.0, hash_customer("+4755501002"))  # "0047 555 01 002" reads as +47...
    # EXITWITHTIMEOUT of 1.4 (position only): 500 - 200 = 300 s; an anonymous caller: no key.
    timeout = by_id["1700000200.4"]
    assert (timeout.reason, timeout.wait_seconds, timeout.customer, timeout.queue) == (
        "timeout", 300.0, None, "sales")
    # TRANSFER of 1.4 (extension|context|holdtime|calltime): handled, wait 5, talk 100.
    transfer = by_id["1700000300.5"]
    assert (transfer.handled, transfer.wait_seconds, transfer.talk_seconds,
            transfer.billable_seconds) == (True, 5.0, 100.0, 105.0)


def test_asterisk_11_forms() -> None:
    parsed, open_calls = parse("asterisk-11.queue_log")
    assert parsed.rejections == [] and open_calls == {}  # type: ignore[attr-defined]
    got = {c.id: (c.queue, c.handled, c.wait_seconds, c.talk_seconds, c.reason)
           for c in parsed.contacts}  # type: ignore[attr-defined]
    assert got == {
        # RINGNOANSWER (15000 ms) does not end the call; CONNECT after 20 s, 240 s talk.
        "1700001000.10": ("support", True, 20.0, 240.0, ""),
        "1700001100.12": ("support", False, 4.0, 0.0, "abandoned"),  # ABANDON waittime 4
        "1700001200.13": ("sales", False, 25.0, 0.0, "key"),  # EXITWITHKEY of 4 parameters
        "1700001300.14": ("other", False, 0.0, 0.0, "empty"),  # queue billing is unmapped
        "1700001400.15": ("sales", True, 30.0, 100.0, ""),  # BLINDTRANSFER
        "1700001500.17": ("support", True, 2.0, 60.0, ""),  # ATTENDEDTRANSFER BRIDGE
    }


def test_undocumented_field_counts_and_bad_values_are_rejected_with_a_reason() -> None:
    parsed, open_calls = parse("asterisk-16-damaged.queue_log")
    reasons = [(r.reason, r.line) for r in parsed.rejections]  # type: ignore[attr-defined]
    assert reasons == [
        ("fields", 4),  # CONNECT with 4 parameters
        ("date", 7),  # time 17000020xx
        ("fields", 8),  # ENTERQUEUE with none
        ("duration", 10),  # ABANDON waittime x
        ("columns", 12),  # two fields
    ]
    # QUEUESTART and PAUSE (callid NONE) are ignored; the LINK transfer (6 parameters) ends
    # call .20: wait 5, talk 60.
    assert [(c.id, c.wait_seconds, c.talk_seconds)
            for c in parsed.contacts] == [("1700002010.20", 5.0, 60.0)]  # type: ignore[attr-defined]
    # .22 entered (its second ENTERQUEUE) and its ABANDON was unusable; .23 still waits.
    assert sorted(open_calls) == ["1700002100.22", "1700002200.23"]


def test_with_cdr_source_the_log_gives_queue_calls_and_no_contacts() -> None:
    parsed, _ = parse("asterisk-11.queue_log", cdr_source="pbx")
    assert parsed.contacts == []  # type: ignore[attr-defined]
    assert parsed.queue_calls == [  # type: ignore[attr-defined]
        # answered: sent at CONNECT with the holdtime; unmapped queue "" keeps the CDR's
        QueueCall("1700001000.10", "pbx", "support", 1700001000.0, 20.0, "answered"),
        QueueCall("1700001100.12", "pbx", "support", 1700001100.0, 4.0, "abandoned"),
        QueueCall("1700001200.13", "pbx", "sales", 1700001200.0, 25.0, "key"),
        QueueCall("1700001300.14", "pbx", "", 1700001300.0, 0.0, "empty"),
        QueueCall("1700001400.15", "pbx", "sales", 1700001400.0, 30.0, "answered"),
        QueueCall("1700001500.17", "pbx", "support", 1700001500.0, 2.0, "answered"),
    ]


def _adapter(path: Path, **extra: object) -> AsteriskQueueLogAdapter:
    return AsteriskQueueLogAdapter(settings(path, **extra), AdapterContext(ZoneInfo("UTC"), "EUR"))


def _drain(adapter: AsteriskQueueLogAdapter, store: SqliteStore) -> None:
    for batch in adapter.pull(store.position("qlog")):
        store.commit_records("qlog", batch.contacts, batch.legs, batch.position,
                             batch.queue_calls)


def test_a_call_open_across_a_restart_is_counted_once(tmp_path: Path) -> None:
    lines = (FIXTURES / "asterisk-11.queue_log").read_bytes().splitlines(keepends=True)
    log = tmp_path / "queue_log"
    log.write_bytes(b"".join(lines[:3]))  # .10 entered and connected, not yet complete
    store = SqliteStore(tmp_path / "s.db", ZoneInfo("UTC"))
    _drain(_adapter(log), store)
    assert store.counts() == {}
    _, open_calls = load_position(store.position("qlog"))
    assert list(open_calls) == ["1700001000.10"]
    store.close()
    # A new process: the rest of the file, then the whole file read again from scratch
    # is refused as duplicates by the store's ids.
    log.write_bytes(b"".join(lines))
    store = SqliteStore(tmp_path / "s.db", ZoneInfo("UTC"))
    _drain(_adapter(log), store)
    assert store.counts() == {"qlog": 6}
    wait = store._db.execute(
        "SELECT wait_seconds, talk_seconds FROM contacts WHERE id = '1700001000.10'").fetchone()
    assert wait == (20.0, 240.0)
    store.close()


def test_a_partial_last_line_waits_and_a_rotation_is_followed(tmp_path: Path) -> None:
    log = tmp_path / "queue_log"
    log.write_bytes(b"1700001100|1700001100.12|support|NONE|ENTERQUEUE||+4755501011|2\n"
                    b"1700001104|1700001100.12|support|NONE|ABAN")
    store = SqliteStore(tmp_path / "s.db", ZoneInfo("UTC"))
    _drain(_adapter(log), store)
    assert store.counts() == {}  # the half-written ABANDON is not read yet
    with log.open("ab") as f:
        f.write(b"DON|2|2|4\n1700001200|1700001200.13|sales|NONE|ENTERQUEUE||+4755501012|1\n")
    shutil.move(log, tmp_path / "queue_log.1")  # logrotate: renamed, a new file begins
    log.write_bytes(b"1700001225|1700001200.13|sales|NONE|EXITWITHKEY|5|1|1|25\n")
    _drain(_adapter(log), store)
    assert store.counts() == {"qlog": 2}  # .12 from the old file, .13 across the rotation
    store.close()


def test_queue_log_enriches_cdr_contacts_in_either_order_through_the_store(
        tmp_path: Path) -> None:
    log = tmp_path / "queue_log"
    shutil.copy(FIXTURES / "asterisk-11.queue_log", log)
    store = SqliteStore(tmp_path / "s.db", ZoneInfo("UTC"))
    day = datetime(2023, 11, 14, tzinfo=UTC).date()

    def cdr(call: str, start: float, billsec: float) -> Leg:
        person = billsec > 0
        return Leg(f"{call}:1", call, "voice", start, start + 300, billsec, person, person,
                   "", "", "", hash_customer("+4755501099"))
    # One CDR arrives before the queue log, one after; one never does (kept, waiting).
    store.commit_records("pbx", [], [cdr("1700001000.10", 1700000990, 240)], "p1")
    _drain(_adapter(log, cdr_source="pbx"), store)
    store.commit_records("pbx", [], [cdr("1700001100.12", 1700001095, 0)], "p2")
    assert store.counts() == {"pbx": 2}  # the queue log adds none of its own
    rows = {r.queue: r for r in store.rollups_as_of(day, datetime(2023, 11, 15, tzinfo=UTC))}
    # .10: CDR wait 300 - 240 - ... replaced by the queue's holdtime 20 s (<= 20: in time)
    # .12: abandoned after 4 s: a short abandon.
    support = rows["support"]
    assert (support.contacts, support.handled, support.wait_seconds,
            support.answered_in_threshold, support.abandoned_short) == (2, 1, 20.0, 1, 1)
    assert "other" not in rows
    waiting = store._db.execute("SELECT count(*) FROM queue_calls").fetchone()[0]
    assert waiting == 6  # all kept: a CDR may still come; applied once when it does
    store.close()


def test_a_call_that_never_leaves_is_given_up_by_the_logs_own_clock() -> None:
    from adapters.asterisk_queue_log import OpenCall, drop_stale

    calls = {"a": OpenCall(1000.0, "support", None), "b": OpenCall(90000.0, "support", None)}
    # The log's latest line at 87,401: a entered 86,401 s before (> 1 day), b after it.
    rejected = drop_stale(calls, 87401.0, 86400.0)
    assert [r.reason for r in rejected] == ["unfinished"] and list(calls) == ["b"]


def test_cdr_source_must_name_an_asterisk_cdr_source() -> None:
    import pytest
    from pydantic import ValidationError

    from collector.config import Settings

    base = {"name": "qlog", "adapter": "asterisk_queue_log", "path": "q", "cdr_source": "pbx"}
    Settings.model_validate({"sources": [
        base, {"name": "pbx", "adapter": "asterisk_cdr", "path": "Master.csv"}]})
    with pytest.raises(ValidationError, match="not the name of an asterisk_cdr source"):
        Settings.model_validate({"sources": [base]})


def test_through_the_exporter_a_queue_log_enriches_its_cdr_source(tmp_path: Path) -> None:
    """The real config, both adapters and the runtime: queue_calls reach the store."""
    from collector.runtime import Exporter, load_config
    from tests.conftest import parse_exposition, pbx_with_queue_log

    # One CDR of 16 columns + uniqueid/userfield/peeraccount/linkedid/sequence (21): call
    # 1700001100.12 rang 9 s unanswered (the caller abandoned the queue after 4 s of it).
    cdr = ('"","+4755501011","100","from-trunk","","SIP/trunk-1","","Queue","support",'
           '"2023-11-14 22:18:16","","2023-11-14 22:18:25",9,0,"NO ANSWER","DOCUMENTATION",'
           '"1700001100.12","","","1700001100.12","1"\n')
    config = pbx_with_queue_log(tmp_path, cdr)
    exporter = Exporter(load_config(config))
    try:
        exporter.ingest("queues")
        exporter.ingest("pbx")
        exporter.recompute(datetime(2023, 11, 15, 12, tzinfo=UTC))
        families = parse_exposition(exporter.metrics_body().decode())
    finally:
        exporter.close()
    labels = {"period": "day", "window": "previous", "channel": "voice",
              "direction": "inbound", "queue": "support"}

    def value(name: str) -> float | None:
        return families.get((name, frozenset(labels.items())))
    # The CDR alone would file the call under "other" with no wait; the queue log makes it
    # support, abandoned after 4 s: a short abandon, so offered = 0 + 1 - 1 = 0 and the
    # ratios are absent.
    assert value("contactcenter_contacts_abandoned") == 1
    assert value("contactcenter_contacts_abandoned_short") == 1
    assert value("contactcenter_abandonment_ratio") is None
    other = {**labels, "queue": "other"}
    assert families.get(("contactcenter_contacts_abandoned", frozenset(other.items()))) is None
