"""The exceptions a store call raises when storage fails, below every store module.

collector.stores re-exports them (the pinned interface); the stores themselves import them
from here, so that no store module imports the module that opens it.
"""

from __future__ import annotations

import sqlite3

import psycopg


class StoreUnavailable(RuntimeError):
    """The store cannot be reached now (PostgreSQL down, connection lost, in backoff).

    The message is readable and never holds a password."""


class NotLeader(RuntimeError):
    """A pull's commit was refused: this replica no longer holds the leader lock (its
    database session ended), so another replica may be pulling the same source."""


# What a store call raises when the storage itself fails (disk full, locked, connection
# lost): the runtime counts it in contactcenter_store_errors_total and carries on.
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error, StoreUnavailable)
