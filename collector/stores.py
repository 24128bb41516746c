"""Opening the configured store: a SQLite file (the default) or a PostgreSQL URL.

The one place that turns `Settings.store` into a Store, for the serving process, the
recompute worker and the one-shot commands alike, and the one list of exceptions a store
call may raise when storage fails (counted by the runtime, never a crash).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from collector.store_errors import STORE_ERRORS, NotLeader, StoreUnavailable

if TYPE_CHECKING:
    from collector.config import Settings
    from collector.store import Store

# StoreUnavailable, NotLeader and STORE_ERRORS live in collector.store_errors, below the
# stores that raise them; they are named here too, where the callers have always found them.
__all__ = ["STORE_ERRORS", "NotLeader", "StoreUnavailable", "is_url", "open_store"]


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
