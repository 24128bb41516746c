"""The log of a store outage: one line when it starts, one when it ends, none between.

The runtime's store calls and the webhooks' commits both report here (through the
HealthState's store-up bookkeeping, which says which failure is an outage's first); a
store error already reported is marked, so that the job or source that catches it later
does not log it again (the failures are all counted in contactcenter_store_errors_total).
"""

from __future__ import annotations

import logging

from collector.logsafe import printable

log = logging.getLogger(__name__)

_REPORTED = "contact_cost_store_failure_reported"


def error_line(exc: BaseException) -> str:
    """A store error as one printable line: libpq's messages run over several lines
    ('FATAL:  database "x" is not currently accepting connections', hints), joined here."""
    parts = [part.strip() for part in str(exc).splitlines() if part.strip()]
    return printable(" ".join(parts) or type(exc).__name__)


def store_failed(exc: BaseException, operation: str, first: bool) -> None:
    """A store call failed: the outage's first failure is logged; the error is marked."""
    if first:
        log.warning("store: a %s failed: %s; the last figures are served meanwhile and "
                    "store calls are retried; further failures are counted in "
                    "contactcenter_store_errors_total, not logged", operation,
                    error_line(exc))
    setattr(exc, _REPORTED, True)


def store_back() -> None:
    """The first store call that succeeded after a failure."""
    log.info("store: ok again (contactcenter_store_up 1)")


def reported(exc: BaseException) -> bool:
    """Whether the store outage this error belongs to is already logged."""
    return bool(getattr(exc, _REPORTED, False))
