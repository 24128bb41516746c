"""What the explicit JSON endpoints (GET /api/v1/report, /api/v1/whatif) answer alike.

A bad query is 400 with the reason; the store is read one request at a time (another is
answered 429 at once, never queued); a store failure is 503.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from collector.stores import STORE_ERRORS

log = logging.getLogger(__name__)

T = TypeVar("T")

_STORE_FAILED = b'{"error": "the store could not be read; see the exporter log"}\n'


def bad_query(exc: Exception) -> tuple[int, bytes]:
    """400 with the reason of a bad query."""
    message = str(exc).replace("--", "")  # the CLI flags are query parameters here
    return 400, json.dumps({"error": message}).encode() + b"\n"


class OneAtATime:
    """Runs one store read at a time; ``what`` names it in the 429 body."""

    def __init__(self, what: str) -> None:
        self._busy = threading.Lock()
        self._refused = (
            f'{{"error": "another {what} is being computed; try again shortly"}}\n'.encode()
        )

    def answer(
        self, read: Callable[[], T], render: Callable[[T], str], context: str
    ) -> tuple[int, bytes]:
        """200 with ``render(read())``, 429 while another read runs, 503 if the store fails."""
        if not self._busy.acquire(blocking=False):
            return 429, self._refused
        try:
            data = read()
        except STORE_ERRORS as exc:
            log.warning("%s: the store could not be read: %s", context, exc)
            return 503, _STORE_FAILED
        finally:
            self._busy.release()
        return 200, render(data).encode()
