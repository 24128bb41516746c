"""Connecting to PostgreSQL, one way for the store and the leader lock: psycopg 3 with a
connect timeout and TCP keepalives both ways, the password passed apart from the URL, and
errors shown as one line that never holds it; and telling an idle connection that the
server has ended from one that is still good, without a round trip."""

from __future__ import annotations

import select
from typing import Any

import psycopg
from psycopg.pq import ConnStatus, TransactionStatus

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


# After the first bytes that came while idle, how long to wait for the end of the stream:
# the server writes its FATAL notice and then closes, two steps apart by microseconds.
_EOF_WAIT_MS = 50


def ended_by_server(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server has already ended this idle connection (a restart, a fast
    shutdown, pg_terminate_backend, idle_session_timeout). Such a server writes a FATAL
    notice and closes, so the socket of a connection with no query in flight is readable:
    what waits is read into libpq's buffer (never blocking), and the end of the stream
    marks the connection closed. Other messages that may come while idle (a changed
    server parameter) stay in the buffer for the next query and the answer is False, as it
    is inside a transaction, where this never reads. A connection that only looks good
    here can still fail on its next query: the caller handles that as any lost one."""
    if conn.closed:
        return True
    if conn.info.transaction_status != TransactionStatus.IDLE:
        return False  # a query or a transaction under way: its own calls read the socket
    pgconn = conn.pgconn
    try:
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN)
        wait = 0
        for _ in range(8):  # the notice, then the end (a bound: never a loop on chatter)
            if not poller.poll(wait):
                return False
            pgconn.consume_input()
            if pgconn.status == ConnStatus.BAD:
                return True
            wait = _EOF_WAIT_MS
    except (psycopg.OperationalError, OSError, ValueError):
        return True  # libpq read the end of the stream (or has no socket left)
    return pgconn.status == ConnStatus.BAD
