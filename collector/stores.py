"""Opening the configured store: a SQLite file (the default) or a PostgreSQL URL.

The one place that turns `Settings.store` into a Store, for the serving process, the
recompute worker and the one-shot commands alike, and the one list of exceptions a store
call may raise when storage fails (counted by the runtime, never a crash).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from collector.config import Settings
    from collector.store import Store


class StoreUnavailable(RuntimeError):
    """The store cannot be reached now (PostgreSQL down, connection lost, in backoff).

    The message is readable and never holds a password."""


class NotLeader(RuntimeError):
    """A pull's commit was refused: this replica no longer holds the leader lock (its
    database session ended), so another replica may be pulling the same source."""


# What a store call raises when the storage itself fails (disk full, locked, connection
# lost): the runtime counts it in contactcenter_store_errors_total and carries on.
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error, StoreUnavailable)


def is_url(store: str | Path) -> bool:
    """Whether a `store` setting names a PostgreSQL database rather than a SQLite file."""
    return str(store).startswith(("postgresql://", "postgres://"))


def open_store(settings: Settings, *, readonly: bool = False) -> Store:
    """The store `settings.store` names, opened for writing (or read-only, for the worker).

    PostgreSQL's password is `settings.store_password` (CONTACT_COST_STORE_PASSWORD) when
    set, else libpq's own (PGPASSWORD, ~/.pgpass). StoreUnavailable when it is unreachable."""
    from collector.store import SqliteStore

    if is_url(settings.store):
        from collector.store_pg import PostgresStore

        secret = getattr(settings, "store_password", None)  # SecretStr, from the environment
        password = secret.get_secret_value() if secret is not None else None
        if readonly:
            return PostgresStore(str(settings.store), settings.tz, password=password,
                                 readonly=True)
        return PostgresStore(
            str(settings.store), settings.tz, password=password,
            kpi=settings.kpi_definitions, customer_key=settings.customer_key,
        )
    if readonly:
        return SqliteStore(Path(settings.store).resolve(), settings.tz, readonly=True)
    return SqliteStore(
        settings.store, settings.tz, kpi=settings.kpi_definitions,
        customer_key=settings.customer_key,
    )
