"""Asterisk cdr_csv adapter: a pure Master.csv parser and an incremental file-reading shell."""

from __future__ import annotations

import codecs
import csv
import gc
import io
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import islice, repeat
from operator import add, and_, getitem, itemgetter
from pathlib import Path
from typing import Any, Literal, NamedTuple
from zlib import adler32, crc32
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, Field

from adapters.base import (
    Adapter,
    Batch,
    Encoding,
    LabelMap,
    Leg,
    Rejection,
    SourceError,
    SourceSettings,
    row_id,
)
from adapters.fields import (
    FIRST_YEAR,
    LAST_YEAR,
    MAX_SECONDS,
    customer_digest,
    customer_digests,
    hour_start,
)
from adapters.filetail import FilePosition, read_new_lines

OTHER_QUEUE = "other"
# disposition -> (answered, reason)
DISPOSITIONS: dict[str, tuple[bool, str]] = {
    "ANSWERED": (True, ""),
    "NO ANSWER": (False, "no_answer"),
    "BUSY": (False, "busy"),
    "FAILED": (False, "failed"),
    "CONGESTION": (False, "congestion"),
    "UNKNOWN": (False, "unknown"),
}
# Column layouts by count: 16 base columns; + uniqueid, userfield; + peeraccount, linkedid,
# sequence. Indices used below: src 1, dst 2, dcontext 3, channel 5, dstchannel 6,
# lastapp 7, start 9, duration 12, billsec 13, disposition 14, uniqueid 16, userfield 17,
# linkedid 19, sequence 20.
LAYOUTS = (16, 18, 21)
# lastapp of the dialed side of a Dial in 16/18-column files (its own uniqueid, no linkedid)
DIALED_SIDE_APPS = frozenset({"AppDial", "AppDial2"})
NO_AGENT = "no_agent"  # answered, but only by the PBX (IVR, voicemail) or a Local channel
# ':MM:SS' (the tail of a 'YYYY-MM-DD HH:MM:SS' start after its hour) -> seconds into the
# hour: with the hour's UTC start cached, a row's start is two dict lookups and an add.
MINUTE_SECONDS = {
    f":{minute:02d}:{second:02d}": minute * 60 + second
    for minute in range(60)
    for second in range(60)
}


class AsteriskCdrSettings(SourceSettings):
    """Settings of an `adapter = "asterisk_cdr"` source."""

    model_config = ConfigDict(extra="forbid")
    path: Path
    usegmtime: bool = False  # true when Asterisk writes UTC; else local in `timezone`
    # dcontext -> queue label; an unmapped dcontext counts in queue "other"
    queues: LabelMap = Field(default_factory=dict)
    # dcontext -> direction; unmapped: inbound
    directions: dict[str, Literal["inbound", "outbound"]] = Field(default_factory=dict)
    # userfield -> outcome label; unmapped: "" (no outcome)
    outcomes: LabelMap = Field(default_factory=dict)
    # dcontext values whose rows are not customer contacts (FreePBX: from-internal)
    exclude_contexts: list[str] = Field(default_factory=list)
    channel: Literal["voice"] = "voice"
    encoding: Encoding = "utf-8"
    rotated_glob: str | None = None  # where rotated copies go (logrotate olddir), see README


class LocalClock:
    """Local 'YYYY-MM-DD HH:MM:SS' -> UTC epoch, with one zoneinfo call per local hour.

    Each hour's UTC start is cached in `hours` when the zone's offset is the same at its
    first and last second (always, except in zones that shift by a part of an hour), so
    the parser's fast path is `hours[text[:13]] + MINUTE_SECONDS[text[13:]]`; `epoch` is
    the plain path (and fills the cache), with each minute's UTC start cached on top for
    the hours that shift. Ambiguous times in the
    repeated hour of a DST change are read as the first (fold=0, summer time), and times
    in the skipped hour as if the clock had not moved yet (PEP 495).
    """

    MAX_MINUTES = 200_000  # about four months of minutes; the cache starts over beyond
    MAX_HOURS = 200_000  # about 23 years of hours (garbage dates span centuries)

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.hours: dict[str, float | None] = {}  # 'YYYY-MM-DD HH' -> UTC epoch of :00:00
        self.minutes: dict[str, float] = {}  # 'YYYY-MM-DD HH:MM' -> UTC epoch of :00

    def _hour_start(self, hour: str) -> float | None:
        if hour not in self.hours:
            if len(hour) != 13 or hour[4] != "-" or hour[7] != "-" or hour[10] != " ":
                raise ValueError(hour)
            naive = datetime.fromisoformat(hour + ":00:00")
            if not FIRST_YEAR <= naive.year <= LAST_YEAR:
                raise ValueError(hour)  # a clock reset or garbage, not a contact
            if len(self.hours) >= self.MAX_HOURS:
                self.hours.clear()
            # None: the offset changes inside this hour; convert each time in full.
            self.hours[hour] = hour_start(naive, self.tz)
        return self.hours[hour]

    def epoch(self, text: str) -> float:
        """UTC epoch seconds; ValueError for anything but a valid 'YYYY-MM-DD HH:MM:SS'."""
        if len(text) != 19 or text[16] != ":" or not text[17:].isdigit():
            raise ValueError(text)
        second = int(text[17:])
        base = self.minutes.get(text[:16])
        if base is None:
            base = self._minute_start(text)
        if second > 59:
            raise ValueError(text)
        return base + second

    def _minute_start(self, text: str) -> float:
        if text[13] != ":" or not text[14:16].isdigit() or int(text[14:16]) > 59:
            raise ValueError(text)
        hour = self._hour_start(text[:13])
        if hour is None:
            local = datetime.fromisoformat(text[:16] + ":00").replace(tzinfo=self.tz)
            return local.timestamp()  # not cached: it may be ambiguous mid-hour
        if len(self.minutes) >= self.MAX_MINUTES:
            self.minutes.clear()
        base = self.minutes[text[:16]] = hour + int(text[14:16]) * 60
        return base


def _decode_lines(
    data: bytes, first_line: int, encoding: str, rejections: list[Rejection]
) -> tuple[list[int] | range, list[str]]:
    """Line numbers and texts; the whole chunk at once, line by line only on a bad byte."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        pass
    else:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return range(first_line, first_line + len(lines)), lines
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    numbers: list[int] = []
    lines = []
    for number, raw in enumerate(raw_lines, first_line):
        try:
            lines.append(raw.decode(encoding))
        except UnicodeDecodeError as exc:
            rejections.append(Rejection("encoding", number, f"{encoding}: {exc.reason}"))
            continue
        numbers.append(number)
    return numbers, lines


def _rows_one_by_one(
    numbers: list[int] | range, lines: list[str], rejections: list[Rejection]
) -> list[tuple[int, list[str]]]:
    """One csv reader per line, so that a quote left open never swallows the next lines."""
    rows = []
    for number, text in zip(numbers, lines, strict=True):
        try:
            rows.append((number, next(csv.reader([text]), [])))
        except csv.Error as exc:
            rejections.append(Rejection("columns", number, str(exc)))
    return rows


class _JoinedLines(Exception):
    """The chunk-wide csv reader joined lines (an open quote): parse line by line instead."""


class ParsedCdr(NamedTuple):
    """What parse_cdr found in some lines: legs, rejected rows, rows left out on purpose."""

    legs: list[Leg]
    rejections: list[Rejection]
    excluded: list[Rejection]  # exclude_contexts, or a dialed side without linkedid


def parse_cdr(
    data: bytes,
    first_line: int,
    settings: AsteriskCdrSettings,
    tz: ZoneInfo,
    clock: LocalClock | None = None,
    latest: float | None = None,
) -> ParsedCdr:
    """Parse complete Master.csv lines into call legs, rejections and exclusions. No I/O.

    Every non-blank line becomes exactly one Leg, one rejection or one exclusion. The
    store merges the legs of a call into its contact. `tz` is the zone of the dates unless
    `settings.usegmtime`; pass a `clock` to keep its hour cache across calls. A start
    after `latest` (now + the source's max_future) is rejected as `future`.
    """
    if clock is None:
        clock = LocalClock(ZoneInfo("UTC") if settings.usegmtime else tz)
    if STREAM_DECODE and codecs.lookup(settings.encoding).name in STREAMED_CODECS:
        out = ParsedCdr([], [], [])
        # Fast path: the chunk decoded as the reader goes (a small buffer at a time, as a
        # file is read, instead of one string and a list of lines the size of the chunk),
        # lines split at "\n" only, as str.split does; one reader, each row one line.
        text = io.TextIOWrapper(io.BytesIO(data), settings.encoding, newline="\n")
        numbers = range(first_line, first_line + len(data) + 1)  # enough for every line
        try:
            with gc_paused():
                _parse_blocks(numbers, csv.reader(text), settings, clock, out, latest)
        except (_JoinedLines, csv.Error, UnicodeError):
            out = _parse_decoded(data, first_line, settings, clock, latest)
    else:
        out = _parse_decoded(data, first_line, settings, clock, latest)
    out.rejections.sort(key=lambda rejection: rejection.line)
    return out


def _parse_decoded(
    data: bytes,
    first_line: int,
    settings: AsteriskCdrSettings,
    clock: LocalClock,
    latest: float | None,
) -> ParsedCdr:
    """parse_cdr on the chunk decoded at once (line by line on a bad byte, each such line
    rejected), one reader over its lines, else one reader per line."""
    decode_rejections: list[Rejection] = []
    numbers, lines = _decode_lines(data, first_line, settings.encoding, decode_rejections)
    out = ParsedCdr([], list(decode_rejections), [])
    reader = csv.reader(lines)
    try:
        # One reader over the chunk, checking that each row took one line.
        with gc_paused():
            _parse_blocks(numbers, reader, settings, clock, out, latest)
    except (_JoinedLines, csv.Error):
        out = ParsedCdr([], list(decode_rejections), [])
        rows = _rows_one_by_one(numbers, lines, out.rejections)
        _parse_rows(rows, settings, clock, out, latest)
    return out


STREAM_DECODE = True  # False: always _parse_decoded (tests compare the two)
# Codecs whose incremental decoder reads any bytes exactly as bytes.decode does (no BOM or
# state: utf-16's, say, refuses a stream without a BOM that decode() reads as native).
STREAMED_CODECS = frozenset({"utf-8", "ascii", "iso8859-1", "cp1252"})
BLOCK_ROWS = 512  # rows the common-shape path takes at a time (all of them, or none)
FAST_BLOCKS = True  # False: every row through _parse_rows (tests compare the two)
# disposition -> (reason when no person took the call, reason when a person did): a row's
# reason is `disposition[1] if person or not answered else NO_AGENT`, indexed by person.
REASONS = {
    name: (NO_AGENT if answered else reason, reason)
    for name, (answered, reason) in DISPOSITIONS.items()
}
ANSWERED = {name: answered for name, (answered, _) in DISPOSITIONS.items()}
PERSON_PREFIX = {"": False, "Local/": False}  # dstchannel[:6] of a leg no person answered
HOUR_OF = itemgetter(slice(None, 13))  # 'YYYY-MM-DD HH'
MINUTE_OF = itemgetter(slice(13, None))  # ':MM:SS'
PREFIX_OF = itemgetter(slice(None, 6))
# A dialed Local channel's second half, one channel per line (fields hold no newline).
LOCAL_SECOND_HALF = re.compile(r"^Local/.*;2$", re.MULTILINE)
CALLER_COLUMN = {"outbound": 2, "inbound": 1, "": 1}  # dst on outbound calls, else src


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a chunk's legs are built, then back as it was.

    Legs are NamedTuples, which the collector never untracks (it untracks only exact
    tuples of atomic values), so each full collection walks every leg still alive and
    parsing a chunk triggers collections in proportion to its rows; a leg refers to no
    container, so there are no cycles to find in them. Process-wide, as gc is: another
    thread's parse may turn it back on early, which only costs time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse_blocks(
    numbers: Sequence[int],
    reader: Any,
    settings: AsteriskCdrSettings,
    clock: LocalClock,
    out: ParsedCdr,
    latest: float | None,
) -> None:
    """The chunk's rows, BLOCK_ROWS at a time: a block of the common shape in one go
    (_CommonRows), any other through the row-by-row loop. Raise _JoinedLines when a row
    took more than one line."""
    common = _CommonRows(settings, clock, latest) if FAST_BLOCKS else None
    seen = 0
    while block := list(islice(reader, BLOCK_ROWS)):
        if reader.line_num != seen + len(block):
            raise _JoinedLines
        legs = common.legs(block) if common is not None else None
        if legs is None:
            rows = zip(numbers[seen : seen + len(block)], block, strict=True)
            _parse_rows(rows, settings, clock, out, latest)
        else:
            out.legs.extend(legs)
        seen += len(block)


class _CommonRows:
    """A block of rows that all take the common way through _parse_rows, column by column.

    `legs(block)` is the legs _parse_rows makes of `block` when every row in it becomes a
    leg (same width, no exclusion, a start in a cached hour, not in the future, valid
    durations, an exact disposition, uniqueids present), built with C-level maps over the
    columns instead of a Python loop over the rows; else None, and the caller parses the
    block row by row. tests/test_fast_paths.py compares the two on fixtures and fuzz.
    """

    def __init__(self, settings: AsteriskCdrSettings, clock: LocalClock, latest: float | None):
        self.settings, self.clock, self.latest = settings, clock, latest
        self.excluded = frozenset(settings.exclude_contexts)
        self.queue_of: dict[str, str] = {}  # dcontext -> queue label, "" when unmapped
        self.direction_of: dict[str, str] = {}  # dcontext -> direction, "" when unmapped

    def legs(self, block: list[list[str]]) -> list[Leg] | None:
        width = len(block[0])
        if width not in LAYOUTS:
            return None
        try:
            columns = list(zip(*block, strict=True))
        except ValueError:
            return None  # rows of several widths
        dcontexts = columns[3]
        if not self.excluded.isdisjoint(dcontexts):
            return None
        if width < 21:
            if not DIALED_SIDE_APPS.isdisjoint(columns[7]):
                return None
            channels = "\n".join(columns[5])
            if "Local/" in channels and LOCAL_SECOND_HALF.search(channels):
                return None
        starts = self._starts(columns[9])
        if starts is None:
            return None
        durations, billsecs = self._seconds(columns[12]), self._seconds(columns[13])
        if durations is None or billsecs is None:
            return None
        try:
            answered = list(map(ANSWERED.__getitem__, columns[14]))
            reasons = list(map(REASONS.__getitem__, columns[14]))
        except KeyError:
            return None  # a disposition _parse_rows reads after strip().upper(), or none
        ids = self._ids(block, columns, width)
        if ids is None:
            return None
        leg_ids, calls = ids
        queue_of, direction_of = self.queue_of, self.direction_of
        for dcontext in set(dcontexts).difference(queue_of):
            queue_of[dcontext] = self.settings.queues.get(dcontext, "")
            direction_of[dcontext] = self.settings.directions.get(dcontext, "")
        directions = list(map(direction_of.__getitem__, dcontexts))
        if width == 16:
            outcomes: Iterable[str] = repeat("")
        else:
            outcomes = map(self.settings.outcomes.get, columns[17], repeat(""))
        # person = answered and billsec > 0 and dstchannel != "" and not Local/...
        person = list(map(and_, map(and_, answered, map((0).__lt__, billsecs)),
                          map(PERSON_PREFIX.get, map(PREFIX_OF, columns[6]), repeat(True))))
        return list(map(tuple.__new__, repeat(Leg), zip(
            leg_ids, calls, repeat(self.settings.channel), starts, map(add, starts, durations),
            map(float, billsecs), answered, person, map(queue_of.__getitem__, dcontexts),
            directions, outcomes, self._customers(block, columns, directions), repeat(None),
            map(getitem, reasons, person),
        )))  # fmt: skip

    def _starts(self, texts: Sequence[str]) -> list[float] | None:
        """Each start as the hour cache plus ':MM:SS' reads it (filled for new hours as
        LocalClock.epoch would); None when one needs LocalClock.epoch or is rejected."""
        hours = self.clock.hours
        keys = list(map(HOUR_OF, texts))
        try:
            try:
                bases = list(map(hours.__getitem__, keys))
            except KeyError:  # a new hour: filled as LocalClock.epoch fills it
                for key in set(keys).difference(hours):
                    self.clock._hour_start(key)
                bases = list(map(hours.__getitem__, keys))
            starts = list(map(add, bases, map(MINUTE_SECONDS.__getitem__, map(MINUTE_OF, texts))))
        except (ValueError, KeyError, TypeError):
            return None  # not a date, ':MM:SS' odd, or an hour the offset changes in (None)
        if self.latest is not None and max(starts) > self.latest:
            return None
        return starts

    @staticmethod
    def _seconds(texts: Sequence[str]) -> list[int] | None:
        """int() of each, as _parse_rows reads duration and billsec; None if one is bad."""
        if not "".join(texts).isascii():
            return None
        try:
            values = list(map(int, texts))
        except ValueError:
            return None
        return values if min(values) >= 0 and max(values) <= MAX_SECONDS else None

    @staticmethod
    def _ids(
        block: list[list[str]], columns: list[tuple[str, ...]], width: int
    ) -> tuple[Sequence[str], Sequence[str]] | None:
        """(leg ids, call ids) as _parse_rows makes them; None when a uniqueid is missing."""
        if width == 21:
            uniqueids, sequences, linkedids = columns[16], columns[20], columns[19]
            if not (all(uniqueids) and all(sequences)):
                return None
            leg_ids = list(map("{}:{}".format, uniqueids, sequences))
            if all(linkedids):
                return leg_ids, linkedids
            pairs = zip(linkedids, uniqueids, strict=True)
            return leg_ids, [linked or unique for linked, unique in pairs]
        if width == 18:
            if not all(columns[16]):
                return None
            joined = list(map(str.encode, map("\x1f".join, block), repeat("utf-8"),
                              repeat("surrogateescape")))  # fmt: skip
            checks = zip(map(crc32, joined), map(adler32, joined), strict=True)
            return list(map("%08x%08x".__mod__, checks)), columns[16]
        leg_ids = list(map(row_id, block))
        return leg_ids, leg_ids

    @staticmethod
    def _customers(
        block: list[list[str]], columns: list[tuple[str, ...]], directions: list[str]
    ) -> list[str | None]:
        """customer_digest of each row's caller: dst on an outbound call, else src."""
        if "outbound" not in directions:
            return customer_digests(columns[1])
        return customer_digests(list(map(getitem, block, map(CALLER_COLUMN.__getitem__,
                                                             directions))))  # fmt: skip


def _parse_rows(
    rows: Iterable[tuple[int, list[str]]],
    settings: AsteriskCdrSettings,
    clock: LocalClock,
    out: ParsedCdr,
    latest: float | None = None,
) -> None:
    """Row by row: each row becomes a leg, a rejection or an exclusion."""
    routes: dict[str, tuple[str, str]] = {}  # dcontext -> (queue, direction); "" unmapped
    queues, directions, outcomes = settings.queues, settings.directions, settings.outcomes
    excluded_contexts = frozenset(settings.exclude_contexts)
    channel = settings.channel
    epoch, hours = clock.epoch, clock.hours
    customers: dict[str, str | None] = {}  # raw number -> hash, for repeat callers
    append = out.legs.append
    rejections, excluded = out.rejections, out.excluded
    new_leg = tuple.__new__
    for number, row in rows:
        if not row:
            continue  # a blank line
        width = len(row)
        if width not in LAYOUTS:
            rejections.append(
                Rejection("columns", number, f"{width} columns, expected 16, 18 or 21")
            )
            continue
        dcontext = row[3]
        if dcontext in excluded_contexts:
            excluded.append(Rejection("excluded_context", number, dcontext[:40]))
            continue
        if width < 21 and (
            row[7] in DIALED_SIDE_APPS or (row[5][:6] == "Local/" and row[5][-2:] == ";2")
        ):
            # Without linkedid nothing ties the dialed side to its call: not a call itself.
            excluded.append(Rejection("internal_leg", number, row[5][:40]))
            continue
        text = row[9]
        # One dict lookup each for the hour and ':MM:SS' (so exactly 19 characters); a new
        # hour, an hour with an offset change inside, or anything odd goes the plain way.
        base = hours.get(text[:13])
        offset = MINUTE_SECONDS.get(text[13:])
        if base is not None and offset is not None:
            start = base + offset
        else:
            try:
                start = epoch(text)
            except ValueError:
                rejections.append(Rejection("date", number, f"start {row[9][:40]!r}"))
                continue
        if latest is not None and start > latest:  # now + max_future, from the pull
            rejections.append(Rejection("future", number, f"start {row[9][:40]!r}"))
            continue
        try:
            if not (row[12] + row[13]).isascii():
                raise ValueError("int() would take non-ASCII digits such as U+0663")
            duration, billsec = int(row[12]), int(row[13])
        except ValueError:
            rejections.append(Rejection("duration", number, f"{row[12][:20]!r}, {row[13][:20]!r}"))
            continue
        if not (0 <= duration <= MAX_SECONDS and 0 <= billsec <= MAX_SECONDS):
            rejections.append(Rejection("duration", number, f"{row[12][:20]!r}, {row[13][:20]!r}"))
            continue
        disposition = DISPOSITIONS.get(row[14])
        if disposition is None:
            disposition = DISPOSITIONS.get(row[14].strip().upper())
            if disposition is None:
                rejections.append(Rejection("disposition", number, row[14][:40]))
                continue
        route = routes.get(dcontext)
        if route is None:
            route = routes[dcontext] = (queues.get(dcontext, ""), directions.get(dcontext, ""))
        queue, direction = route
        if width == 21:
            uniqueid, outcome = row[16], outcomes.get(row[17], "")
            call = row[19] or uniqueid
            leg_id = f"{uniqueid}:{row[20]}" if uniqueid and row[20] else row_id(row)
            call = call or leg_id
        elif width == 18:
            outcome = outcomes.get(row[17], "")
            joined = "\x1f".join(row).encode("utf-8", "surrogateescape")
            leg_id = f"{crc32(joined):08x}{adler32(joined):08x}"  # legs of one call differ
            call = row[16] or row_id(row)
        else:
            outcome = ""
            call = leg_id = row_id(row)
        answered = disposition[0]
        dstchannel = row[6]
        person = answered and billsec > 0 and dstchannel != "" and dstchannel[:6] != "Local/"
        raw_customer = row[2] if direction == "outbound" else row[1]
        customer = customers.get(raw_customer, "")
        if customer == "":
            customer = customers[raw_customer] = customer_digest(raw_customer)
        # tuple.__new__ skips NamedTuple.__new__'s Python-level call: this is the hot path.
        append(
            new_leg(
                Leg,
                (
                    leg_id,
                    call,
                    channel,
                    start,
                    start + duration,
                    float(billsec),
                    answered,
                    person,
                    queue,
                    direction,
                    outcome,
                    customer,
                    None,
                    disposition[1] if person or not answered else NO_AGENT,
                ),
            )
        )


class AsteriskCdrAdapter(Adapter):
    """Reads new lines of an Asterisk Master.csv, surviving rotation and truncation."""

    settings_model = AsteriskCdrSettings
    exclusion_reasons = ("excluded_context", "internal_leg")

    def pull(self, position: str | None) -> Iterator[Batch]:
        settings = self.settings
        assert isinstance(settings, AsteriskCdrSettings)
        tz = ZoneInfo("UTC") if settings.usegmtime else self.context.timezone
        clock = LocalClock(tz)
        try:
            latest = time.time() + settings.max_future.total_seconds()
            start = FilePosition.loads(position)
            chunks = read_new_lines(settings.path, start, rotated_glob=settings.rotated_glob)
            for chunk in chunks:
                legs, rejections, excluded = parse_cdr(
                    chunk.data, chunk.first_line, settings, tz, clock, latest
                )
                yield Batch(
                    [], rejections, chunk.position.dumps(), str(chunk.path), legs, excluded,
                    rotation_losses=int(chunk.lost),
                )
        except FileNotFoundError:
            raise SourceError(f"{settings.path}: file not found", "missing") from None
        except OSError as exc:
            raise SourceError(f"{settings.path}: {exc.strerror or exc}", "unreadable") from None
