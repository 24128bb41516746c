"""The cost model's public entry point: figures for every period and window from rollups.

Pure: no I/O and no clock reads; the caller passes ``now``. The rules live in the
docstrings of :mod:`collector.periods`, :mod:`collector.accrual` and
:mod:`collector.allocation`.
"""

from __future__ import annotations

from collector.allocation import compute_figures
from collector.metrics import Sample
from collector.periods import first_day_needed

__all__ = ["Sample", "compute_figures", "first_day_needed"]
