"""Generic CSV export adapter: a column mapping, a pure parser and an incremental reading shell.

Label policy (bounded cardinality): a raw queue value maps through `queues`; an unmapped
value becomes "other", so no value from the export itself ever becomes a label. A raw
channel maps through `channels`; when that mapping is empty, a value that is already one of
the known channels (voice, email, chat, ...) is taken as is, since that vocabulary is
bounded; anything else is "other". Outcomes map through `outcomes` only; an unmapped value
is "" (no outcome).
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.base import (
    CHANNELS_KNOWN,
    Adapter,
    Batch,
    Contact,
    Encoding,
    FieldError,
    LabelMap,
    LabelValue,
    Rejection,
    SourceError,
    SourceSettings,
    TimeZoneName,
    hash_customer,
    row_id,
)
from adapters.fields import (
    FIRST_YEAR,
    HOUR_CACHE_LIMIT,
    LAST_YEAR,
    LOCAL_LAYOUT,
    MAX_SECONDS,
    MINUTE_SECONDS,
    duration,
    hour_start,
    not_future,
    price,
)
from adapters.filetail import Chunk, FilePosition, read_new_lines, rewind

OTHER = "other"
MAX_RECORD_LINES = 100  # a quoted field may span lines, but not more than this...
MAX_RECORD_BYTES = 1024 * 1024  # ...nor more than this; beyond, the first line is rejected
DEFAULT_HANDLED = {"1": True, "true": True, "yes": True, "y": True}
DEFAULT_HANDLED |= {"0": False, "false": False, "no": False, "n": False, "": False}
_SURROGATE = re.compile("[\udc80-\udcff]")


class CsvColumns(BaseModel):
    """Export column names, by what they mean. Only `started_at` is required."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    started_at: str
    ended_at: str | None = None
    channel: str | None = None
    direction: str | None = None
    queue: str | None = None
    handle_seconds: str | None = None
    talk_seconds: str | None = None
    billable_seconds: str | None = None  # what the carrier bills; default: talk time
    # seconds in queue before a person answered (or, not handled, before the caller left);
    # an empty cell: not known
    wait_seconds: str | None = None
    hold_seconds: str | None = None
    acw_seconds: str | None = None
    handled: str | None = None
    outcome: str | None = None
    customer: str | None = None
    price: str | None = None


class CsvSettings(SourceSettings):
    """Settings of an `adapter = "csv"` source."""

    model_config = ConfigDict(extra="forbid")
    path: Path
    columns: CsvColumns
    channel: LabelValue | None = None  # fixed channel, unless columns.channel is set
    direction: Literal["inbound", "outbound"] = "inbound"  # fixed, unless columns.direction
    queue: LabelValue = OTHER  # fixed queue, unless columns.queue
    queues: LabelMap = Field(default_factory=dict)  # raw value -> queue label
    channels: LabelMap = Field(default_factory=dict)  # raw value -> channel label
    directions: dict[str, Literal["inbound", "outbound"]] = Field(default_factory=dict)
    outcomes: LabelMap = Field(default_factory=dict)  # raw value -> outcome label
    handled_values: dict[str, bool] = Field(default_factory=dict)  # raw value -> handled
    # header name -> values whose rows are not contacts (excluded_value), e.g. internal calls
    exclude: dict[str, list[str]] = Field(default_factory=dict)
    time_format: str | None = None  # strptime format; default ISO 8601
    # IANA zone of times written without an offset (vendors that export UTC or their own
    # zone); default: the exporter's `timezone`. Times with an offset keep it.
    timezone: TimeZoneName | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: Encoding = "utf-8"
    rotated_glob: str | None = None  # where rotated copies go (logrotate olddir), see README

    @model_validator(mode="after")
    def _complete(self) -> CsvSettings:
        if (self.channel is None) == (self.columns.channel is None):
            raise ValueError("set exactly one of `channel` (fixed) and `columns.channel`")
        c = self.columns
        timed = (c.handle_seconds, c.talk_seconds, c.hold_seconds, c.acw_seconds, c.ended_at)
        if all(name is None for name in timed):
            raise ValueError(
                "columns needs handle_seconds, talk/hold/acw_seconds or ended_at "
                "to know each contact's handle time"
            )
        return self


class CsvParse(NamedTuple):
    """What parse_csv found in one piece of data."""

    contacts: list[Contact]
    rejections: list[Rejection]
    header: list[str] | None  # the header row, once seen
    unconsumed: bytes  # the end of data holding a record still open: read it again later
    excluded: list[Rejection]  # rows left out by `exclude`, reason excluded_value


class HeaderError(ValueError):
    """The header row lacks a mapped column: the whole source is down."""


def _decode(data: bytes, encoding: str) -> tuple[str, bool]:
    """Text, and whether it may hold undecodable bytes (as surrogates, to reject per record)."""
    try:
        return data.decode(encoding), False
    except UnicodeDecodeError:
        return data.decode(encoding, "surrogateescape"), True


class _OpenAtEnd(Exception):
    """The record's quoted field is still open at the end of the data."""


class _Runaway(Exception):
    """The record's quoted field stays open beyond MAX_RECORD_LINES / MAX_RECORD_BYTES."""


def _read_record(lines: list[str], index: int, delimiter: str) -> tuple[list[str], int]:
    """The csv row starting at line `index` and how many lines it takes.

    The csv module decides where the record ends (a quoted field may hold newlines; a
    stray quote inside an unquoted field does not open one). Raises _OpenAtEnd or _Runaway.
    """
    taken = 0
    size = 0

    def feed() -> Iterator[str]:
        nonlocal taken, size
        while True:
            if index + taken >= len(lines):
                if taken:
                    raise _OpenAtEnd  # the reader wants more: its quoted field is open
                return
            if taken >= MAX_RECORD_LINES or size > MAX_RECORD_BYTES:
                raise _Runaway
            line = lines[index + taken]
            taken += 1
            size += len(line) + 1
            yield line + "\n"

    row = next(csv.reader(feed(), delimiter=delimiter), [])
    return row, taken


def _number(text: str, what: str) -> float:
    """A duration cell: empty is 0; else finite, from 0 to MAX_SECONDS (FieldError)."""
    return duration(float(text), what) if text.strip() else 0.0


def _label(raw: str, mapping: dict[str, str], known: tuple[str, ...] | None = None) -> str:
    label = mapping.get(raw)
    if label is not None:
        return label
    if known is not None and not mapping and raw in known:
        return raw
    return OTHER


# Formats whose 'YYYY-MM-DD HH:MM:SS' times take the hour-cache fast path (ISO 8601 also
# with a 'T'); anything else, or any other shape of text, is read the plain way.
_FAST_FORMATS = (None, "%Y-%m-%d %H:%M:%S")


def _time(
    text: str, time_format: str | None, tz: ZoneInfo,
    hours: dict[str, float | None] | None = None,
) -> float:
    """A local (or offset-carrying ISO 8601) time as UTC epoch seconds; ValueError if bad.

    With `hours` (a cache kept over one parse), a 'YYYY-MM-DD HH:MM:SS' time in an hour
    read before is its hour's UTC start plus the seconds into it: no strptime, no zoneinfo.
    tests/test_fast_paths.py checks it against the plain path.
    """
    fast = hours is not None and time_format in _FAST_FORMATS and len(text) == 19
    if fast and hours is not None:
        base = hours.get(text[:13])
        if base is not None and (text[10] == " " or time_format is None):
            offset = MINUTE_SECONDS.get(text[13:])
            if offset is not None:
                return base + offset
    moment = datetime.strptime(text, time_format) if time_format else datetime.fromisoformat(text)
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise ValueError(text)  # a clock reset or garbage, not a contact
    if moment.tzinfo is None:
        if fast and hours is not None and text[13:] in MINUTE_SECONDS and LOCAL_LAYOUT.fullmatch(
            text
        ):
            if len(hours) >= HOUR_CACHE_LIMIT:
                hours.clear()
            hours[text[:13]] = hour_start(moment, tz)
        moment = moment.replace(tzinfo=tz)
    return moment.timestamp()


def check_header(header: list[str], settings: CsvSettings) -> dict[str, int]:
    """Mapped key -> column index; HeaderError naming the first mapped column not found."""
    positions: dict[str, int] = {}
    for index, name in enumerate(header):
        positions.setdefault(name.strip(), index)
    found: dict[str, int] = {}
    for key, name in settings.columns.model_dump(exclude_none=True).items():
        if name not in positions:
            raise HeaderError(f"column {name!r} ({key}) is not in the header")
        found[key] = positions[name]
    return found


def excluded_columns(
    header: list[str], settings: CsvSettings
) -> list[tuple[int, str, frozenset[str]]]:
    """(column index, header name, values) per `exclude` entry; HeaderError if not found."""
    positions: dict[str, int] = {}
    for index, name in enumerate(header):
        positions.setdefault(name.strip(), index)
    found = []
    for name, values in settings.exclude.items():
        if name not in positions:
            raise HeaderError(f"column {name!r} (exclude) is not in the header")
        found.append((positions[name], name, frozenset(value.strip() for value in values)))
    return found


def parse_csv(
    data: bytes,
    first_line: int,
    header: list[str] | None,
    settings: CsvSettings,
    tz: ZoneInfo,
    at_eof: bool = False,
    latest: float | None = None,
) -> CsvParse:
    """Parse complete lines of a CSV export into contacts and rejections. No I/O.

    `header` is None at the start of the file: the first record is then the header.
    Every record (one line, or several when a quoted field holds newlines) becomes one
    Contact or one Rejection; a runaway quote rejects only its first line. Raises
    HeaderError when the header lacks a mapped column. A start after `latest` (now +
    the source's max_future) is rejected as `future`.
    """
    contacts: list[Contact] = []
    rejections: list[Rejection] = []
    text, suspect = _decode(data, settings.encoding)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    index_of = check_header(header, settings) if header is not None else None
    excluded: list[Rejection] = []
    excludes = excluded_columns(header, settings) if header is not None else []
    hours: dict[str, float | None] = {}  # _time's hour cache over this parse
    index = 0
    while index < len(lines):
        number = first_line + index
        problem = None
        try:
            row, count = _read_record(lines, index, settings.delimiter)
        except _OpenAtEnd:
            if not at_eof:
                break  # still being written: wait for the rest
            row, count = [], 1
            problem = Rejection("quoting", number, "a quote is never closed")
        except _Runaway:
            row, count = [], 1  # give up only this line and read on from the next
            problem = Rejection("quoting", number, "a quote is never closed")
        except csv.Error as exc:
            row, count = [], 1
            problem = Rejection("quoting", number, str(exc))
        record_lines = lines[index : index + count]
        index += count
        if problem is None and not row:
            continue  # a blank line
        if problem is None and suspect and any(_SURROGATE.search(line) for line in record_lines):
            problem = Rejection("encoding", number, f"not {settings.encoding}")
        if header is None or index_of is None:
            if problem is not None:
                raise HeaderError(f"the header row (line {number}) is unusable: {problem.detail}")
            if number == 1 and row and row[0].startswith("\ufeff"):
                row[0] = row[0][1:]  # a byte-order mark
            header, index_of = row, check_header(row, settings)
            excludes = excluded_columns(row, settings)
            continue
        if problem is None and len(row) != len(header):
            problem = Rejection("columns", number, f"{len(row)} columns, header has {len(header)}")
        if problem is not None:
            rejections.append(problem)
            continue
        hit = next((e for e in excludes if row[e[0]].strip() in e[2]), None)
        if hit is not None:
            excluded.append(Rejection("excluded_value", number, f"{hit[1]} = {row[hit[0]][:40]}"))
            continue
        result = _contact(row, index_of, settings, tz, latest, hours)
        if isinstance(result, Rejection):
            rejections.append(result._replace(line=number))
        else:
            contacts.append(result)
    unconsumed = b""
    if index < len(lines):
        raw_lines = data.split(b"\n")
        unconsumed = data[sum(len(raw) + 1 for raw in raw_lines[:index]) :]
    return CsvParse(contacts, rejections, header, unconsumed, excluded)


def _contact(
    row: list[str],
    index_of: dict[str, int],
    settings: CsvSettings,
    tz: ZoneInfo,
    latest: float | None = None,
    hours: dict[str, float | None] | None = None,
) -> Contact | Rejection:
    def cell(key: str) -> str | None:
        position = index_of.get(key)
        return None if position is None else row[position].strip()

    started = cell("started_at") or ""
    try:
        start = _time(started, settings.time_format, tz, hours)
    except (ValueError, OverflowError):
        return Rejection("date", 0, f"started_at {started[:40]!r}")
    try:
        not_future(start, latest, "started_at")
    except FieldError as exc:
        return Rejection(exc.reason, 0, str(exc))
    parts = {}
    try:
        for key in ("talk_seconds", "hold_seconds", "acw_seconds"):
            value = cell(key)
            if value:  # an empty cell is a part the export does not have for this row
                parts[key] = _number(value, key)
        handle_text = cell("handle_seconds")
        ended = cell("ended_at")
        if handle_text is not None:
            handle = _number(handle_text, "handle_seconds")
        elif parts:
            handle = sum(parts.values())
        elif ended:
            try:
                handle = _time(ended, settings.time_format, tz, hours) - start
            except (ValueError, OverflowError):
                return Rejection("date", 0, f"ended_at {ended[:40]!r}")
            if handle < 0:
                return Rejection("duration", 0, "ended_at is before started_at")
        else:
            handle = 0.0  # not ended yet
    except ValueError as exc:
        return Rejection("duration", 0, str(exc))
    if handle > MAX_SECONDS or any(part > MAX_SECONDS for part in parts.values()):
        return Rejection("duration", 0, f"longer than {MAX_SECONDS} seconds")
    handled_raw = cell("handled")
    if handled_raw is None:
        handled = True
    else:
        values = settings.handled_values or DEFAULT_HANDLED
        found = values.get(handled_raw, values.get(handled_raw.lower()))
        if found is None:
            return Rejection("handled", 0, f"handled {handled_raw[:40]!r}")
        handled = found
    direction_raw = cell("direction")
    direction: str
    if direction_raw is None:
        direction = settings.direction
    else:
        mapped = settings.directions.get(direction_raw) or direction_raw.lower()
        if mapped not in ("inbound", "outbound"):
            return Rejection("direction", 0, f"direction {direction_raw[:40]!r}")
        direction = mapped
    price_raw = cell("price")
    try:
        cost = price(price_raw)
    except FieldError as exc:
        return Rejection(exc.reason, 0, str(exc))
    id_raw = cell("id")
    if id_raw is not None and not id_raw:
        return Rejection("id", 0, "empty id")
    channel_raw = cell("channel")
    queue_raw = cell("queue")
    outcome_raw = cell("outcome")
    talk = parts.get("talk_seconds", handle)
    # Billable: the export's own billable column, else its talk column; without either, a
    # handled contact's handle time and a missed one's nothing (its ring time is not talk).
    billable_raw = cell("billable_seconds")
    if billable_raw:
        try:
            billable = _number(billable_raw, "billable_seconds")
        except ValueError as exc:
            return Rejection("duration", 0, str(exc))
    elif "talk_seconds" in parts:
        billable = parts["talk_seconds"]
    else:
        billable = handle if handled else 0.0
    wait_raw = cell("wait_seconds")
    wait: float | None = None
    if wait_raw is not None and wait_raw.strip():
        try:
            wait = _number(wait_raw, "wait_seconds")
        except ValueError as exc:
            return Rejection("duration", 0, str(exc))
    return Contact(
        id=id_raw or row_id(row),
        channel=settings.channel or _label(channel_raw or "", settings.channels, CHANNELS_KNOWN),
        direction=direction,
        queue=settings.queue if queue_raw is None else _label(queue_raw, settings.queues),
        start=start,
        handled=handled,
        handle_seconds=handle,
        talk_seconds=talk,
        billable_seconds=billable,
        outcome=settings.outcomes.get(outcome_raw, "") if outcome_raw else "",
        customer=hash_customer(cell("customer")),
        price=cost,
        reason="" if handled else "not_handled",
        wait_seconds=wait,
    )


def _line_count(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _dump_position(position: FilePosition, header: list[str] | None) -> str:
    return json.dumps({"file": position.dumps(), "header": header}, separators=(",", ":"))


def _load_position(text: str | None) -> tuple[FilePosition | None, list[str] | None]:
    """The file position and the remembered header; (None, None) reads from the start."""
    if not text:
        return None, None
    try:
        data = json.loads(text)
        position = FilePosition.loads(data["file"])
        header = data["header"]
    except (ValueError, KeyError, TypeError):
        return None, None
    if position is None or (header is not None and not isinstance(header, list)):
        return None, None
    if header is None:  # before the header: only the size seen, for an unterminated header
        return (position if position.offset == 0 else None), None
    return position, [str(name) for name in header]


class CsvAdapter(Adapter):
    """Reads new records of a CSV export, remembering its header across reads."""

    settings_model = CsvSettings
    exclusion_reasons = ("excluded_value",)

    def pull(self, position: str | None) -> Iterator[Batch]:
        settings = self.settings
        assert isinstance(settings, CsvSettings)
        tz = ZoneInfo(settings.timezone) if settings.timezone else self.context.timezone
        latest = time.time() + settings.max_future.total_seconds()
        file_position, header = _load_position(position)
        pending, pending_first = b"", 0  # an open record, read again with the next chunk
        previous: Chunk | None = None
        try:
            rotated = settings.rotated_glob
            chunks = read_new_lines(settings.path, file_position, rotated_glob=rotated)
            for chunk in chunks:
                if previous is not None and pending and chunk.path != previous.path:
                    # The rotated file ended inside an open record: it never closes now.
                    result = parse_csv(
                        pending, pending_first, header, settings, tz, at_eof=True, latest=latest
                    )
                    yield Batch(
                        result.contacts,
                        result.rejections,
                        _dump_position(previous.position, header),
                        str(previous.path),
                        excluded=result.excluded,
                    )
                    pending = b""
                if chunk.first_line == 1:
                    header, pending = None, b""  # a new file, with its own header
                data = pending + chunk.data if pending else chunk.data
                first = pending_first if pending else chunk.first_line
                # A chunk that ends a file no longer written settles an open record.
                result = parse_csv(data, first, header, settings, tz, chunk.complete, latest)
                header, pending = result.header, result.unconsumed
                pending_first = first + _line_count(data) - _line_count(pending)
                after = rewind(chunk, pending) if pending else chunk.position
                previous = chunk
                dumped = _dump_position(after, header)
                news = result.contacts or result.rejections or result.excluded or chunk.lost
                if not news and dumped == position:
                    continue  # only the same open record again: nothing to commit
                yield Batch(
                    result.contacts,
                    result.rejections,
                    dumped,
                    str(chunk.path),
                    excluded=result.excluded,
                    rotation_losses=int(chunk.lost),
                )
        except HeaderError as exc:
            raise SourceError(f"{settings.path}: {exc}", "header") from None
        except FileNotFoundError:
            raise SourceError(f"{settings.path}: file not found", "missing") from None
        except OSError as exc:
            raise SourceError(f"{settings.path}: {exc.strerror or exc}", "unreadable") from None
