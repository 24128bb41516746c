"""Helpers for the vendor API tests: fixtures, a fast adapter factory, a pull-and-commit loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from adapters.base import Adapter, AdapterContext, Batch
from adapters.http import RateLimiter
from collector.store import SqliteStore

VENDORS = Path(__file__).resolve().parent / "fixtures" / "vendors"
CONTEXT = AdapterContext(timezone=ZoneInfo("UTC"), currency="USD")
# Retries that do not wait: tests prove behaviour, not patience.
FAST = {"backoff_factor": 0.01, "backoff_jitter": 0.0, "requests_per_minute": 60000}


def fixture(vendor: str, name: str) -> Any:
    return json.loads((VENDORS / vendor / name).read_text())


def fixture_text(vendor: str, name: str) -> str:
    return (VENDORS / vendor / name).read_text()


class FakeClock:
    """A monotonic clock and sleep that only move when told (for the rate limiter)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def fast_limiter() -> RateLimiter:
    clock = FakeClock()
    return RateLimiter(60000, clock=clock, sleep=clock.sleep)


def drain(adapter: Adapter, store: SqliteStore, position: str | None = None) -> list[Batch]:
    """Pull everything, committing each batch with its position as the scheduler does."""
    batches = []
    for batch in adapter.pull(store.position(adapter.name) if position is None else position):
        store.commit(adapter.name, batch.contacts, batch.position)
        batches.append(batch)
    return batches


def stored_ids(store: SqliteStore, source: str) -> list[str]:
    rows = store._db.execute(  # tests read the table directly
        "SELECT id FROM contacts WHERE source = ? ORDER BY id", (source,)
    ).fetchall()
    return [r[0] for r in rows]


def new_store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "state.db", ZoneInfo("UTC"))


def crash_after(adapter: Adapter, store: SqliteStore, source: str, batches: int = 1,
                position: str | None = None) -> None:
    """Commit the first `batches` batches of a pull, then drop it: the process dies there."""
    pulling = adapter.pull(position)
    for _ in range(batches):
        batch = next(pulling)
        store.commit(source, batch.contacts, batch.position)
    pulling.close()
