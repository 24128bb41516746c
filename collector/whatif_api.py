"""GET /api/v1/whatif: the what-if levers (collector.whatif) over HTTP, read from the store."""

from __future__ import annotations

import urllib.parse
from datetime import datetime

from collector.apianswer import OneAtATime, bad_query
from collector.config import Settings
from collector.logsafe import printable
from collector.periods import PERIODS, WINDOWS
from collector.store import Store
from collector.whatif import LEVER_NAMES, LeverError, parse_levers, render_whatif, whatif_from_store


class WhatifEndpoint:
    """``GET /api/v1/whatif?period=month&window=previous&deflect=10%25&aht=-30s`` as JSON.

    The levers are the CLI's flags without dashes. An explicit request: it reads the
    rollups from the store in the request's own thread, one at a time (another is answered
    429 at once); a bad query is 400 with the reason, a store failure 503.
    """

    def __init__(self) -> None:
        self._one = OneAtATime("what-if")

    @staticmethod
    def parse_query(query: str) -> tuple[str, str, dict[str, str]]:
        fields = urllib.parse.parse_qs(query, keep_blank_values=True)
        allowed = {"period", "window", *LEVER_NAMES}
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise LeverError(f"unknown parameter {printable(unknown[0], 40)} "
                             f"(give period, window and levers: {', '.join(LEVER_NAMES)})")
        once: dict[str, str] = {}
        for name, values in fields.items():
            if len(values) != 1:
                raise LeverError(f"give {name} once")
            once[name] = values[0]
        period = once.pop("period", "month")
        window = once.pop("window", "previous")
        if period not in PERIODS:
            raise LeverError(f"period: one of {', '.join(PERIODS)}")
        if window not in WINDOWS:
            raise LeverError(f"window: one of {', '.join(WINDOWS)}")
        return period, window, once

    def answer(
        self, query: str, store: Store, settings: Settings, now: datetime
    ) -> tuple[int, bytes]:
        """HTTP status and JSON body; never raises on a bad query."""
        try:
            period, window, given = self.parse_query(query)
            levers = parse_levers(given)
        except LeverError as exc:
            return bad_query(exc)
        return self._one.answer(
            lambda: whatif_from_store(store, settings, now, period, window, levers),
            lambda data: render_whatif(data, "json"),
            "whatif",
        )
