"""Connecting to PostgreSQL, one way for the store and the leader lock: psycopg 3 with a
connect timeout and TCP keepalives both ways, the password passed apart from the URL, and
errors shown as one line that never holds it."""

from __future__ import annotations

from typing import Any

import psycopg

# The client notices a vanished server, and the server a vanished client, in ~10 s; a
# write the server never acknowledges fails after 10 s too (tcp_user_timeout, in ms).
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2,
    "tcp_user_timeout": 10_000,
}
SERVER_KEEPALIVES = "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 " \
    "-c tcp_keepalives_count=2"


def reason(exc: BaseException) -> str:
    """The first line of an error's text (libpq's messages span lines)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def connect(
    url: str,
    password: str | None,
    *,
    application_name: str,
    connect_timeout: int = 5,
    options: str = "",
) -> psycopg.Connection[Any]:
    """An autocommit connection to `url` (a URL without a password: check_store_url)."""
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "connect_timeout": connect_timeout,
        "application_name": application_name,
        "options": f"{SERVER_KEEPALIVES} {options}".strip(),
        **KEEPALIVES,
    }
    if password is not None:
        kwargs["password"] = password
    return psycopg.connect(url, **kwargs)
