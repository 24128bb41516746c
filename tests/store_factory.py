"""The store contract tests' backends: StoreFactory opens a SQLite or a PostgreSQL store.

The fixture is tests/store_backends.py's `make_store`. `make_store(tz)` opens the store
called "s" (the same name again opens the same store: a restart); `query(store, sql,
params)` reads its tables with ? marks on either database; `make_store.wipe(name)`
empties a store for a new round.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from collector.model import KpiDefinitions
from collector.store_base import SqlStore
from tests.pg_helpers import PostgresServer

BACKENDS = ["sqlite", "postgresql"]
INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)


def query(store: SqlStore, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of `sql` (with ? marks) read on either store's own connection (autocommit)."""
    if store._sql.dialect.pg:
        sql = sql.replace("?", "%s")
    with store._session():
        cursor = store._db.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []


def rebuild(store: SqlStore) -> None:
    """Every rollup and repeat mark rebuilt from the stored contacts, in one transaction."""
    with store._session(), store._transaction():
        store._rebuild_rollups(repeats=True)


class StoreFactory:
    """Opens stores of one backend by name; closes them all at the end of the test."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self._tmp = tmp_path
        self._request = request
        self._urls: dict[str, str] = {}
        self._extra: list[str] = []
        self._opened: list[SqlStore] = []
        self._server: PostgresServer | None = None

    @property
    def pg(self) -> bool:
        return self.kind == "postgresql"

    def url(self, name: str = "s") -> str:
        """The PostgreSQL URL of store `name` (a database of its own)."""
        if name not in self._urls:
            base = self._request.getfixturevalue("postgres_db")
            if not self._urls:
                self._urls[name] = base
            else:
                server: PostgresServer = self._request.getfixturevalue("postgres_server")
                self._server = server
                db = f"{base.rsplit('/', 1)[1]}_{name}"[:60]
                server.admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                server.admin(f'CREATE DATABASE "{db}"')
                self._extra.append(db)
                self._urls[name] = server.url_for(db)
        return self._urls[name]

    def path(self, name: str = "s") -> Path:
        return self._tmp / f"{name}.db"

    def __call__(self, tz: ZoneInfo, *, name: str = "s", readonly: bool = False,
                 kpi: KpiDefinitions | None = None,
                 customer_key: bytes | None = None) -> SqlStore:
        store: SqlStore
        if self.pg:
            from collector.store_pg import PostgresStore

            store = PostgresStore(self.url(name), tz, readonly=readonly, kpi=kpi,
                                  customer_key=customer_key)
        else:
            from collector.store import SqliteStore

            store = SqliteStore(self.path(name), tz, readonly=readonly, kpi=kpi,
                                customer_key=customer_key)
        self._opened.append(store)
        return store

    def query(self, store: SqlStore, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return query(store, sql, params)

    def wipe(self, name: str = "s") -> None:
        """Store `name` as if never created (for another round inside one test)."""
        if self.pg:
            with psycopg.connect(self.url(name), autocommit=True) as conn:
                conn.execute("DROP SCHEMA public CASCADE")
                conn.execute("CREATE SCHEMA public")
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path(name)}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        for store in self._opened:
            store.close()
        if self._server is not None:
            for db in self._extra:
                self._server.admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
