"""Asterisk queue_log adapter: a pure parser of `epoch|callid|queue|agent|EVENT|data...` lines
and an incremental file-reading shell (rotation and partial lines as for the CDR adapter).

Event parameters by Asterisk version, as the Asterisk queue log documentation lists them
(docs.asterisk.org "Queue Logs"; doc/queuelog.txt in the 1.4/1.6 trees):

    ENTERQUEUE       url|callerid                 (+ |position from Asterisk 11)
    CONNECT          holdtime                     (1.2)
                     holdtime|bridgedchanneluniqueid             (1.4)
                     holdtime|bridgedchanneluniqueid|ringtime    (1.6 on)
    COMPLETEAGENT    holdtime|calltime|origposition
    COMPLETECALLER   holdtime|calltime|origposition
    ABANDON          position|origposition|waittime
    EXITWITHTIMEOUT  position                     (old) | position|origposition|waittime
    EXITEMPTY        position|origposition|waittime
    EXITWITHKEY      key|position                 (old) | key|position|origposition|waittime
    TRANSFER         extension|context|holdtime|calltime  (+ |origposition from 1.6)
    BLINDTRANSFER    extension|context|holdtime|calltime|origposition
    ATTENDEDTRANSFER method|method-data|holdtime|calltime|origposition
                     (method LINK writes two channels as method-data: one field more)
    RINGNOANSWER     ringtime (milliseconds)

Other events (agent logins, pauses, CONFIGRELOAD, ...) and lines whose callid is NONE or
REALTIME are read and ignored. A known event with another number of parameters is
rejected with reason `fields`.

A queue call opens at ENTERQUEUE and ends at its first exit: answered (CONNECT, then
COMPLETE*/TRANSFER), abandoned (ABANDON), timeout, key or empty. Calls still open at the
end of a read are kept in the position, so a restart resumes them and nothing is counted
twice. Wait is the queue's own figure: CONNECT's holdtime, or the exit's waittime (the
time since ENTERQUEUE where an old version writes none).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import ConfigDict, Field, field_validator

from adapters.base import (
    Adapter,
    Batch,
    Contact,
    Duration,
    Encoding,
    LabelMap,
    QueueCall,
    Rejection,
    SourceError,
    SourceSettings,
    check_label_value,
    hash_customer,
)
from adapters.fields import FIRST_YEAR, LAST_YEAR, MAX_SECONDS
from adapters.filetail import FilePosition, read_new_lines

OTHER_QUEUE = "other"
_FIRST_EPOCH = (FIRST_YEAR - 1970) * 31556952
_LAST_EPOCH = (LAST_YEAR + 1 - 1970) * 31556952
# event -> the documented parameter counts (after EVENT)
FIELD_COUNTS: dict[str, tuple[int, ...]] = {
    "ENTERQUEUE": (2, 3),
    "CONNECT": (1, 2, 3),
    "COMPLETEAGENT": (3,),
    "COMPLETECALLER": (3,),
    "ABANDON": (3,),
    "EXITWITHTIMEOUT": (1, 3),
    "EXITEMPTY": (3,),
    "EXITWITHKEY": (2, 4),
    "TRANSFER": (4, 5),
    "BLINDTRANSFER": (5,),
    "ATTENDEDTRANSFER": (5, 6),
    "RINGNOANSWER": (1,),
}
# exit event -> how the caller left; index of waittime among its parameters (None: none)
EXITS: dict[str, tuple[str, dict[int, int]]] = {
    "ABANDON": ("abandoned", {3: 2}),
    "EXITWITHTIMEOUT": ("timeout", {3: 2}),
    "EXITEMPTY": ("empty", {3: 2}),
    "EXITWITHKEY": ("key", {4: 3}),
}
# events that end an answered call: index of holdtime and calltime by parameter count
ENDS: dict[str, dict[int, tuple[int, int]]] = {
    "COMPLETEAGENT": {3: (0, 1)},
    "COMPLETECALLER": {3: (0, 1)},
    "TRANSFER": {4: (2, 3), 5: (2, 3)},
    "BLINDTRANSFER": {5: (2, 3)},
    "ATTENDEDTRANSFER": {5: (2, 3), 6: (3, 4)},
}
NOT_A_CALL = frozenset({"", "NONE", "REALTIME"})


class AsteriskQueueLogSettings(SourceSettings):
    """Settings of an `adapter = "asterisk_queue_log"` source."""

    model_config = ConfigDict(extra="forbid")
    path: Path
    # queue name -> queue label; unmapped: "other" (with cdr_source: the CDR's own queue)
    queues: LabelMap = Field(default_factory=dict)
    # name of an asterisk_cdr source whose contacts this log enriches (no contacts of its own)
    cdr_source: str | None = None
    channel: Literal["voice"] = "voice"
    encoding: Encoding = "utf-8"
    rotated_glob: str | None = None
    # A call entered this long ago without an exit is given up (rejected as `unfinished`).
    max_open: Duration = timedelta(days=1)

    @field_validator("cdr_source")
    @classmethod
    def _source_name(cls, value: str | None) -> str | None:
        return None if value is None else check_label_value(value, "cdr_source")


class OpenCall(NamedTuple):
    """A queue call seen entering and not yet left: what the position keeps of it."""

    enter: float  # epoch of ENTERQUEUE
    queue: str  # raw queue name
    customer: str | None  # hash_customer of the caller ID
    holdtime: float | None = None  # CONNECT's holdtime once answered
    connected: float | None = None  # epoch of CONNECT


class Parsed(NamedTuple):
    contacts: list[Contact]
    queue_calls: list[QueueCall]
    rejections: list[Rejection]
    newest: float  # the latest time stamp read (0 when none)


def _number(text: str, what: str, limit: float = MAX_SECONDS) -> float:
    value = text.strip()
    if not value.isdigit():
        raise ValueError(f"{what} {value[:20]!r} is not a whole number")
    number = float(value)
    if number > limit:
        raise ValueError(f"{what} {number:g} is over {limit:g}")
    return number


def parse_queue_log(
    data: bytes,
    first_line: int,
    open_calls: dict[str, OpenCall],
    settings: AsteriskQueueLogSettings,
    latest: float,
) -> Parsed:
    """Parse complete lines; `open_calls` (callid -> OpenCall) is updated in place.

    `latest` is now + max_future: a line stamped later is rejected as `future`.
    """
    text = data.decode(settings.encoding, "replace")
    contacts: list[Contact] = []
    entries: list[QueueCall] = []
    rejections: list[Rejection] = []
    queues = settings.queues
    enrich = settings.cdr_source
    newest = 0.0
    for number, raw in enumerate(text.splitlines(), first_line):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) < 5:
            rejections.append(Rejection("columns", number, f"{len(parts)} fields"))
            continue
        stamp, callid, queue_name, _agent, event, *params = parts
        event = event.strip().upper()
        counts = FIELD_COUNTS.get(event)
        callid = callid.strip()
        if counts is None or callid in NOT_A_CALL:
            continue  # agent, member and configuration events: not a queue call
        if len(params) not in counts:
            rejections.append(Rejection(
                "fields", number, f"{event} with {len(params)} parameters (documented: "
                + " or ".join(str(n) for n in counts) + ")"))
            continue
        try:
            at = _number(stamp, "time", _LAST_EPOCH)
            if at < _FIRST_EPOCH:
                raise ValueError(f"time {at:g} is before {FIRST_YEAR}")
        except ValueError as exc:
            rejections.append(Rejection("date", number, str(exc)))
            continue
        if at > latest:
            rejections.append(Rejection("future", number, f"time {at:g} is in the future"))
            continue
        if at > newest:
            newest = at
        try:
            if event == "ENTERQUEUE":
                callerid = params[1]
                open_calls[callid] = OpenCall(at, queue_name, hash_customer(callerid))
                continue
            if event == "RINGNOANSWER":
                _number(params[0], "ringtime", MAX_SECONDS * 1000)  # ms; checked, not used
                continue
            call = open_calls.get(callid)
            if event == "CONNECT":
                holdtime = _number(params[0], "holdtime")
                if call is None:  # entered before this log begins
                    call = OpenCall(at - holdtime, queue_name, None)
                open_calls[callid] = call._replace(holdtime=holdtime, connected=at)
                if enrich:
                    entries.append(QueueCall(callid, enrich, queues.get(queue_name, ""),
                                             call.enter, holdtime, "answered"))
                continue
            if event in EXITS:
                left, waits = EXITS[event]
                index = waits.get(len(params))
                wait = (_number(params[index], "waittime") if index is not None
                        else max(0.0, at - call.enter) if call is not None else None)
                if wait is None:
                    rejections.append(Rejection(
                        "unfinished", number, f"{event} without waittime or ENTERQUEUE"))
                    continue
                open_calls.pop(callid, None)
                enter = call.enter if call is not None else at - wait
                if enrich:
                    entries.append(QueueCall(callid, enrich, queues.get(queue_name, ""),
                                             enter, wait, left))
                else:
                    contacts.append(Contact(
                        callid, settings.channel, "inbound",
                        queues.get(queue_name, OTHER_QUEUE), enter, False, 0.0, 0.0, wait,
                        "", call.customer if call is not None else None, None, left, wait,
                    ))
                continue
            # an end of an answered call: COMPLETE*, TRANSFER, BLINDTRANSFER, ATTENDEDTRANSFER
            hold_at, call_at = ENDS[event][len(params)]
            holdtime = _number(params[hold_at], "holdtime")
            calltime = _number(params[call_at], "calltime")
            open_calls.pop(callid, None)
            if enrich:
                if call is None or call.connected is None:  # CONNECT before this log began
                    entries.append(QueueCall(callid, enrich, queues.get(queue_name, ""),
                                             at - calltime - holdtime, holdtime, "answered"))
                continue
            enter = call.enter if call is not None else at - calltime - holdtime
            contacts.append(Contact(
                callid, settings.channel, "inbound", queues.get(queue_name, OTHER_QUEUE),
                enter, True, calltime, calltime, holdtime + calltime, "",
                call.customer if call is not None else None, None, "", holdtime,
            ))
        except ValueError as exc:
            rejections.append(Rejection("duration", number, str(exc)))
    return Parsed(contacts, entries, rejections, newest)


def drop_stale(open_calls: dict[str, OpenCall], now: float, max_open: float) -> list[Rejection]:
    """Give up calls entered more than `max_open` seconds before `now` without an exit.

    `now` is the log's own clock (its latest line), so an old log read for a backfill
    keeps its calls open as long as a live one would."""
    stale = [callid for callid, call in open_calls.items() if now - call.enter > max_open]
    for callid in stale:
        del open_calls[callid]
    return [Rejection("unfinished", 0, f"queue call {callid[:40]} never left the queue")
            for callid in stale]


def dump_position(file: FilePosition, open_calls: dict[str, OpenCall]) -> str:
    return json.dumps({"file": json.loads(file.dumps()),
                       "open": {k: list(v) for k, v in open_calls.items()}},
                      separators=(",", ":"), sort_keys=True)


def load_position(text: str | None) -> tuple[FilePosition | None, dict[str, OpenCall]]:
    if not text:
        return None, {}
    try:
        data: Any = json.loads(text)
        file = FilePosition.loads(json.dumps(data["file"]))
        calls = {str(k): OpenCall(float(v[0]), str(v[1]), None if v[2] is None else str(v[2]),
                                  None if v[3] is None else float(v[3]),
                                  None if v[4] is None else float(v[4]))
                 for k, v in dict(data["open"]).items()}
    except (ValueError, KeyError, TypeError, IndexError):
        return None, {}
    return file, calls


class AsteriskQueueLogAdapter(Adapter):
    """Reads new lines of an Asterisk queue_log, surviving rotation and truncation."""

    settings_model = AsteriskQueueLogSettings

    def pull(self, position: str | None) -> Iterator[Batch]:
        settings = self.settings
        assert isinstance(settings, AsteriskQueueLogSettings)
        try:
            latest = time.time() + settings.max_future.total_seconds()
            start, open_calls = load_position(position)
            newest = max((call.enter for call in open_calls.values()), default=0.0)
            for chunk in read_new_lines(settings.path, start, rotated_glob=settings.rotated_glob):
                parsed = parse_queue_log(chunk.data, chunk.first_line, open_calls, settings,
                                         latest)
                newest = max(newest, parsed.newest)
                stale = drop_stale(open_calls, newest, settings.max_open.total_seconds())
                yield Batch(
                    parsed.contacts, parsed.rejections + stale,
                    dump_position(chunk.position, open_calls), str(chunk.path),
                    rotation_losses=int(chunk.lost), queue_calls=parsed.queue_calls,
                )
        except FileNotFoundError:
            raise SourceError(f"{settings.path}: file not found", "missing") from None
        except OSError as exc:
            raise SourceError(f"{settings.path}: {exc.strerror or exc}", "unreadable") from None
