"""Store: unique per (source, id), position atomic with rows, rollups by local day."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.model import Contact, Rollup
from collector.store import DayMapper, SqliteStore

OSLO = ZoneInfo("Europe/Oslo")


def call(cid: str, start: str, handled: bool = True, secs: float = 300, queue: str = "support",
         outcome: str = "", price: float | None = None) -> Contact:
    epoch = datetime.fromisoformat(start).timestamp()
    return Contact(cid, "voice", "inbound", queue, epoch, handled, secs if handled else 0,
                   secs if handled else 0, secs if handled else 0, outcome, None, price,
                   "" if handled else "no_answer")


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "s.db", OSLO)
    yield s
    s.close()


def test_day_mapper_uses_local_days_across_dst() -> None:
    days = DayMapper(OSLO)
    # 2026-03-28 23:30 UTC is 2026-03-29 00:30 CET (+1): local day 29 March.
    assert days.day(datetime(2026, 3, 28, 23, 30, tzinfo=UTC).timestamp()) == date(2026, 3, 29).toordinal()
    # 2026-03-29 22:30 UTC is 2026-03-30 00:30 CEST (+2): local day 30 March.
    assert days.day(datetime(2026, 3, 29, 22, 30, tzinfo=UTC).timestamp()) == date(2026, 3, 30).toordinal()
    # 2026-03-29 21:59 UTC is 23:59 CEST on the 29th.
    assert days.day(datetime(2026, 3, 29, 21, 59, tzinfo=UTC).timestamp()) == date(2026, 3, 29).toordinal()


def test_commit_is_idempotent_per_source_and_id(store: SqliteStore) -> None:
    batch = [
        call("a", "2026-11-02T09:00:00+01:00", secs=300),
        call("b", "2026-11-02T10:00:00+01:00", secs=120, outcome="sale", price=0.5),
        call("c", "2026-11-02T11:00:00+01:00", handled=False),
    ]
    assert store.commit("pbx", batch, '{"offset":3}') == 3
    # The same three again plus one new one: only the new one counts.
    again = [*batch, call("d", "2026-11-02T12:00:00+01:00", secs=60)]
    assert store.commit("pbx", again, '{"offset":4}') == 1
    # The same id from another source is another contact.
    assert store.commit("helpdesk", [call("a", "2026-11-02T09:00:00+01:00")], None) == 1
    assert store.counts() == {"pbx": 4, "helpdesk": 1}
    assert store.position("pbx") == '{"offset":4}'
    assert store.position("helpdesk") is None

    rollups = store.rollups_as_of(date(2026, 11, 1), datetime(2026, 11, 3, tzinfo=UTC))
    by_outcome = {r.outcome: r for r in rollups}
    # No outcome: a(300) + c(unhandled) + d(60) from pbx, a(300) from helpdesk.
    assert by_outcome[""] == Rollup(date(2026, 11, 2), "voice", "inbound", "support", "", 4, 3,
                                    660.0, 660.0, 660.0, 0.0)
    assert by_outcome["sale"] == Rollup(date(2026, 11, 2), "voice", "inbound", "support", "sale",
                                        1, 1, 120.0, 120.0, 120.0, 0.5)


def test_duplicate_inside_one_batch_counts_once(store: SqliteStore) -> None:
    c = call("x", "2026-11-02T09:00:00+01:00")
    assert store.commit("pbx", [c, c], None) == 1
    [rollup] = store.rollups_as_of(date(2026, 11, 1), datetime(2026, 11, 3, tzinfo=UTC))
    assert rollup.contacts == 1


def test_failed_commit_keeps_old_position_and_rows(store: SqliteStore) -> None:
    store.commit("pbx", [call("a", "2026-11-02T09:00:00+01:00")], "p1")
    broken = call("b", "2026-11-02T09:05:00+01:00")._replace(channel=None)  # NOT NULL fails
    with pytest.raises(Exception, match="NOT NULL"):
        store.commit("pbx", [call("z", "2026-11-02T09:01:00+01:00"), broken], "p2")
    assert store.position("pbx") == "p1"
    assert store.counts() == {"pbx": 1}
    [rollup] = store.rollups_as_of(date(2026, 11, 1), datetime(2026, 11, 3, tzinfo=UTC))
    assert rollup.contacts == 1


def test_rollups_as_of_inside_a_day_uses_raw_rows(store: SqliteStore) -> None:
    store.commit("pbx", [
        call("a", "2026-11-02T09:00:00+01:00", secs=100),
        call("b", "2026-11-02T15:00:00+01:00", secs=200),
        call("c", "2026-11-01T15:00:00+01:00", secs=50),
    ], None)
    noon = datetime(2026, 11, 2, 12, 0, tzinfo=OSLO)
    rollups = sorted(store.rollups_as_of(date(2026, 11, 1), noon))
    # 1 Nov whole; 2 Nov only call a (09:00 <= 12:00); call b (15:00) is after the moment.
    assert [(r.day.day, r.contacts, r.handle_seconds) for r in rollups] == [(1, 1, 50.0), (2, 1, 100.0)]
    evening = datetime(2026, 11, 2, 23, 0, tzinfo=OSLO)
    rollups = sorted(store.rollups_as_of(date(2026, 11, 2), evening))
    assert [(r.day.day, r.contacts, r.handle_seconds) for r in rollups] == [(2, 2, 300.0)]


def test_timezone_change_rebuilds_days(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(path, ZoneInfo("UTC"))
    # 23:30 UTC on 1 Nov is 00:30 on 2 Nov in Oslo.
    store.commit("pbx", [call("a", "2026-11-01T23:30:00+00:00")], None)
    assert store.rollups_as_of(date(2026, 11, 1), datetime(2026, 11, 3, tzinfo=UTC))[0].day == date(2026, 11, 1)
    store.close()
    store = SqliteStore(path, OSLO)
    [rollup] = store.rollups_as_of(date(2026, 11, 1), datetime(2026, 11, 3, tzinfo=UTC))
    assert rollup.day == date(2026, 11, 2)
    store.close()


def test_store_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(path, OSLO)
    store.commit("pbx", [call("a", "2026-11-02T09:00:00+01:00")], "p1")
    store.close()
    store = SqliteStore(path, OSLO)
    assert store.position("pbx") == "p1"
    assert store.commit("pbx", [call("a", "2026-11-02T09:00:00+01:00")], "p2") == 0
    store.close()
