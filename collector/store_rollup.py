"""Rollup arithmetic shared by both stores: local days of a start, and a commit's deltas
to the daily rows (pure functions over plain data, no database)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from collector.model import Contact, KpiDefinitions
from collector.service import service_parts

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_BUCKET = 900  # offsets of every IANA zone change on quarter-hour boundaries
# Epochs a day inside datetime's range (years 1..9999): a start beyond them (a parser let
# through a date of year 1 or 1e300 seconds) is filed under the nearest such day instead of
# failing the whole batch, and with it every later read of the source.
_FIRST_EPOCH = -62135596800 + 2 * 86400
_LAST_EPOCH = 253402300799 - 2 * 86400

# Bounds on what a long-running process keeps (issue 10 item 14, measured by bench/soak.py).
# The day caches hold one entry per quarter hour that any contact started in: an export
# spread over years, or with garbage dates, grew them without end. Cleared when full.
DAY_CACHE_LIMIT = 8192  # quarter hours: 85 days


class DayMapper:
    """UTC epoch seconds -> local calendar day ordinal, with offsets cached per 15 minutes."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._offsets: dict[int, int] = {}
        # 15-minute bucket -> local day, for offsets that are whole quarter hours (all of
        # today's zones): local midnight is then a bucket boundary, so the whole bucket
        # lies in one local day. One dict lookup per contact.
        self._days: dict[int, int] = {}

    def offset(self, epoch: float) -> int:
        bucket = int(epoch // _BUCKET)
        offset = self._offsets.get(bucket)
        if offset is None:
            moment = datetime.fromtimestamp(bucket * _BUCKET, UTC).astimezone(self.tz)
            offset = int(moment.utcoffset().total_seconds())  # type: ignore[union-attr]
            if len(self._offsets) >= DAY_CACHE_LIMIT:
                self._offsets.clear()
            self._offsets[bucket] = offset
        return offset

    def day(self, epoch: float) -> int:
        if not _FIRST_EPOCH <= epoch <= _LAST_EPOCH:  # also NaN
            epoch = _FIRST_EPOCH if epoch < 0 else _LAST_EPOCH
        bucket = int(epoch // _BUCKET)
        day = self._days.get(bucket)
        if day is None:
            offset = self.offset(epoch)
            day = int((epoch + offset) // 86400) + _EPOCH_ORDINAL
            if offset % _BUCKET == 0:
                if len(self._days) >= DAY_CACHE_LIMIT:
                    self._days.clear()
                self._days[bucket] = day
        return day


class Totals(dict[tuple[int, str, str, str, str], list[float]]):
    """Rollup deltas of one commit, by daily row: contacts .. max_start, then the service
    columns waited, wait_seconds, in_threshold, short, identified, repeats."""

    def __init__(self, defs: KpiDefinitions) -> None:
        super().__init__()
        self.defs = defs


def _service(acc: list[float], c: Sequence[Any], sign: int, defs: KpiDefinitions) -> None:
    waited, wait, in_threshold, short, identified = service_parts(c, defs)
    acc[7] += sign * waited
    acc[8] += sign * wait
    acc[9] += sign * in_threshold
    acc[10] += sign * short
    acc[11] += sign * identified


def add_contact(totals: Totals, day: int, c: Contact, sign: int = 1) -> None:
    """Add (sign 1) or take out (sign -1) one contact's share of its day's rollup row."""
    key = (day, c.channel, c.direction, c.queue, c.outcome)
    acc = totals.get(key)
    if acc is None:
        acc = totals[key] = [0, 0, 0.0, 0.0, 0.0, 0.0, c.start, 0, 0.0, 0, 0, 0, 0]
    _service(acc, c, sign, totals.defs)
    acc[0] += sign
    if c.handled:
        acc[1] += sign
        acc[2] += sign * c.handle_seconds
        acc[3] += sign * c.talk_seconds
    acc[4] += sign * c.billable_seconds
    if c.price is not None:
        acc[5] += sign * c.price
    if c.start > acc[6]:  # an upper bound stays one when a contact moves earlier
        acc[6] = c.start


def add_rows(totals: Totals, rows: list[tuple[Any, ...]]) -> None:
    """add_contact for many contact rows at once (Contact's fields, then source, day, ...)."""
    get = totals.get
    defs = totals.defs
    short_abandon = defs.short_abandon
    thresholds = dict(defs.queue_thresholds)
    default = defs.threshold
    for c in rows:
        key = (c[15], c[1], c[2], c[3], c[9])  # day, channel, direction, queue, outcome
        acc = get(key)
        if acc is None:
            acc = totals[key] = [0, 0, 0.0, 0.0, 0.0, 0.0, c[4], 0, 0.0, 0, 0, 0, 0]
        wait = c[13]
        if c[5]:  # handled
            if c[10] is not None:
                acc[11] += 1
            if wait is not None:
                acc[7] += 1
                acc[8] += wait
                if wait <= thresholds.get(c[3], default):
                    acc[9] += 1
        elif wait is not None:
            acc[7] += 1
            if wait <= short_abandon:
                acc[10] += 1
        acc[0] += 1
        if c[5]:  # handled
            acc[1] += 1
            acc[2] += c[6]
            acc[3] += c[7]
        acc[4] += c[8]
        if c[11] is not None:
            acc[5] += c[11]
        if c[4] > acc[6]:
            acc[6] = c[4]
