"""Process signals from the first moment of start-up: SIGHUP reloads, SIGTERM/SIGINT stop.

Python's default for SIGHUP is to end the process, and importing the exporter and loading
its configuration takes a few hundred milliseconds. `ProcessSignals.install()` runs first
in `main`, before any of that (this module imports only the standard library). A signal
that arrives before the service is ready is remembered: SIGHUP as "reload when ready",
SIGTERM/SIGINT as "stop when ready". The handlers only set flags or start a thread.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


class ProcessSignals:
    """The process's SIGHUP/SIGTERM/SIGINT handlers, deferring until `ready` is called."""

    def __init__(self) -> None:
        self._on_reload: Callable[[], None] | None = None
        self._on_stop: Callable[[int], None] | None = None
        self.reload_pending = False
        self.stop_pending: int | None = None  # the first stop signal before ready

    def install(self) -> ProcessSignals:
        for signum in HANDLED:
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            on_reload = self._on_reload
            if on_reload is None:
                self.reload_pending = True
            else:
                on_reload()
            return
        on_stop = self._on_stop
        if on_stop is None:
            if self.stop_pending is None:
                self.stop_pending = signum
        else:
            on_stop(signum)

    def ready(self, on_reload: Callable[[], None], on_stop: Callable[[int], None]) -> None:
        """The service can reload and stop now; act on what arrived meanwhile, once."""
        self._on_reload, self._on_stop = on_reload, on_stop
        if self.stop_pending is not None:
            signum, self.stop_pending = self.stop_pending, None
            self.reload_pending = False  # stopping: nothing to reload
            on_stop(signum)
        if self.reload_pending:
            self.reload_pending = False
            on_reload()

    def restore_defaults(self) -> None:
        """For commands that do not serve: default dispositions, and a pending stop acts now."""
        for signum in HANDLED:
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                          else signal.SIG_DFL)
        pending, self.stop_pending = self.stop_pending, None
        if pending is not None:
            signal.raise_signal(pending)
        if self.reload_pending:  # a one-shot command has nothing to reload; ignore it
            self.reload_pending = False
