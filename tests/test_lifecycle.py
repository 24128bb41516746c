"""ProcessSignals: what arrives before the service is ready is kept and acted on once."""

from __future__ import annotations

import signal

from collector.lifecycle import ProcessSignals


def test_signals_before_ready_are_acted_on_once_when_ready() -> None:
    signals = ProcessSignals()  # not installed: the handler is driven by hand
    reloads: list[str] = []
    stops: list[int] = []
    for _ in range(5):  # five SIGHUPs during start-up ...
        signals._handle(signal.SIGHUP, None)
    assert signals.reload_pending and not reloads
    signals.ready(lambda: reloads.append("reload"), stops.append)
    assert reloads == ["reload"]  # ... are one reload when ready
    assert stops == []
    signals._handle(signal.SIGHUP, None)  # after ready: each one reloads
    signals._handle(signal.SIGTERM, None)
    assert reloads == ["reload", "reload"]
    assert stops == [signal.SIGTERM]


def test_a_stop_before_ready_wins_over_a_pending_reload() -> None:
    signals = ProcessSignals()
    reloads: list[str] = []
    stops: list[int] = []
    signals._handle(signal.SIGHUP, None)
    signals._handle(signal.SIGINT, None)
    signals._handle(signal.SIGTERM, None)  # the first stop signal is the one reported
    signals.ready(lambda: reloads.append("reload"), stops.append)
    assert stops == [signal.SIGINT]
    assert reloads == []
