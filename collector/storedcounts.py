"""Stored contacts per source for the landing page, counted within a time budget.

Counting scans every stored contact (about 0.34 s at 2.5M contacts on a shared core), which
would make each recompute grow with history. So a store is recounted only once as much
time has passed since its last count as 100 counts take (at most 1 % of the time spent
counting): at 95k contacts (5 ms) that is every recompute a second or more apart, at
2.5M about every 34 s. The first count of a store is always made.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

from collector.store import Store

BUDGET = 0.01  # the share of time a store may spend being counted

_counted: weakref.WeakKeyDictionary[Store, tuple[float, float, dict[str, int]]] = (
    weakref.WeakKeyDictionary()
)


def stored_counts(store: Store, clock: Callable[[], float] = time.monotonic) -> dict[str, int]:
    """The store's contacts per source, from the last count while it is recent enough."""
    started = clock()
    try:
        last = _counted.get(store)
    except TypeError:  # a store that cannot be weakly referenced: count every time
        return store.counts()
    if last is not None and started - last[0] < last[1] / BUDGET:
        return last[2]
    counts = store.counts()
    _counted[store] = (started, clock() - started, counts)
    return counts
