"""Pure field parsers and checks shared by several adapters: times, durations, ids, labels, JSON."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from adapters.base import FieldError, Rejection, ShapeError, hash_customer

# Years a start time may have: outside, it is a clock reset or garbage, not a contact.
FIRST_YEAR, LAST_YEAR = 1970, 2999
# Times the store can place on a calendar day: 1970 up to the year 3000.
LATEST_EPOCH = 32_503_680_000.0
# Bounds of one record's numbers: beyond, it is a broken record, not a contact, and sums of
# such values overflow to +Inf (two prices of 1e308). The README documents them.
MAX_SECONDS = 7 * 86400  # a duration (handle, talk, billed) of one contact: under 7 days
MAX_PRICE = 10_000.0  # a price of one contact, in the configured currency
# Bounds of a JSON body decoded before (or while) its sender is verified.
MAX_JSON_BYTES = 1_048_576
MAX_JSON_DEPTH = 32

# What a single record's parser may raise: a known field problem, or a value of the wrong
# JSON type used as a key or compared (a list where a string was expected).
ITEM_ERRORS = (FieldError, TypeError, ValueError)


def label(mapping: Mapping[str, str], raw: object, default: str = "other") -> str:
    """A bounded label value: the configured mapping of `raw`, else `default`."""
    if raw is None:
        return default
    return mapping.get(str(raw), default)


def outcome_of_tags(tags: Any, outcomes: Mapping[str, str]) -> str:
    """The outcome of the first tag that `outcomes` maps, else "" (no outcome).

    A tag is a string, a number (an id) or an object with a "name".
    """
    if not isinstance(tags, list):
        return ""
    for tag in tags:
        name = tag.get("name") if isinstance(tag, dict) else tag
        if isinstance(name, (str, int)) and not isinstance(name, bool):
            found = outcomes.get(str(name))
            if found is not None:
                return found
    return ""


# ':MM:SS' (the tail of a 'YYYY-MM-DD HH:MM:SS' time after its hour) -> seconds into the hour.
MINUTE_SECONDS = {
    f":{minute:02d}:{second:02d}": minute * 60 + second
    for minute in range(60)
    for second in range(60)
}
LOCAL_LAYOUT = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}", re.ASCII)
HOUR_CACHE_LIMIT = 100_000  # hours (11 years); a cache starts over beyond


def hour_start(moment: datetime, tz: ZoneInfo) -> float | None:
    """UTC epoch of the local hour `moment` (naive) falls in, when `tz`'s offset is the
    same at its first and last second (fold 0, as replace(tzinfo=tz) reads it); else None.
    With it cached, a time in that hour is hour_start + MINUTE_SECONDS[':MM:SS']."""
    first = moment.replace(minute=0, second=0, microsecond=0, tzinfo=tz)
    last = first + timedelta(seconds=3599)  # wall-clock arithmetic: the same fold 0 reading
    return first.timestamp() if first.utcoffset() == last.utcoffset() else None


def customer_digest(raw: str) -> str | None:
    """hash_customer(raw), without its general normalisation for the usual caller ID: a
    number of ASCII digits only, not starting with 00 and not all zeros, whose identity
    is 'tel:' + itself (tests/test_fast_paths.py checks the two agree)."""
    if raw.isdigit() and raw.isascii() and raw[:2] != "00" and raw.strip("0"):
        return hashlib.blake2b(("tel:" + raw).encode("ascii"), digest_size=16).hexdigest()
    return hash_customer(raw)


_CUSTOMER_BLAKE2B = partial(hashlib.blake2b, digest_size=16)
_ALL_ZEROS = re.compile(r"^0+$", re.MULTILINE)


def customer_digests(raws: Sequence[str]) -> list[str | None]:
    """customer_digest of each of `raws`; when all are the usual caller ID (checked on
    them joined: ASCII digits, none empty, none starting with 00, none all zeros), its
    shortcut in C-level maps instead of a call per number."""
    digits, lines = "".join(raws), "\n" + "\n".join(raws)
    if (digits.isdigit() and digits.isascii() and all(raws) and "\n00" not in lines
            and not _ALL_ZEROS.search(lines)):  # fmt: skip
        identities = lines.replace("\n", "\ntel:").encode("ascii").split(b"\n")[1:]
        return list(map(hashlib.blake2b.hexdigest, map(_CUSTOMER_BLAKE2B, identities)))
    return list(map(customer_digest, raws))


def as_field_error(exc: Exception) -> FieldError:
    """A record parser's error as a FieldError: its own reason, else `shape`."""
    return exc if isinstance(exc, FieldError) else FieldError("shape", str(exc)[:200])


def record_fingerprint(item: Any) -> str:
    """A stable identity of a vendor record (a hash of its JSON), so re-reading it is seen.
    Any JSON value: an item that is not even an object is re-read in an overlap too."""
    text = json.dumps(item, sort_keys=True, default=str, separators=(",", ":"))
    return "j:" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def item_rejection(
    exc: Exception, index: int, item: Mapping[str, Any] | None = None
) -> Rejection:
    """One bad record as one counted rejection: its field's reason, else `shape`.

    Give the record itself (`item`) when the source may send it again, as an API's
    overlap window does: the rejection then carries its fingerprint and counts once.
    """
    error = as_field_error(exc)
    record = record_fingerprint(item) if item is not None else ""
    return Rejection(error.reason, index, str(error)[:200], record)


def require_object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ShapeError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def require_list(data: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ShapeError(f"{what}: expected a list at {key!r}")
    return value


def record_id(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None or value == "" or isinstance(value, (dict, list, bool)):
        raise FieldError("id", f"{key} missing")
    return str(value)


def seconds(value: Any, field: str, default: float | None = None) -> float:
    """A non-negative, finite duration given as a number or a string of digits."""
    if value is None or value == "":
        if default is not None:
            return duration(default, field)  # a default worked out from times is bounded too
        raise FieldError("duration", f"{field} missing")
    if isinstance(value, bool):
        raise FieldError("duration", f"{field} {value!r} is not a number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise FieldError(
            "duration", f"{field} {str(value)[:40]!r} is not a number of seconds"
        ) from None
    return duration(number, field)


def duration(number: float, field: str) -> float:
    """`number` if it is a finite duration from 0 to MAX_SECONDS, else FieldError `duration`."""
    if not (math.isfinite(number) and 0 <= number <= MAX_SECONDS):
        raise FieldError(
            "duration", f"{field} {number!r} is not between 0 and {MAX_SECONDS} seconds"
        )
    return number


def price(value: Any, field: str = "price") -> float | None:
    """A contact's price: None when absent ("" or null), else a finite number from 0 to
    MAX_PRICE, given as a JSON number or a decimal string; else FieldError `price`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FieldError("price", f"{field} {str(value)[:40]!r} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise FieldError("price", f"{field} {str(value)[:40]!r} is not a number") from None
    if not (math.isfinite(number) and 0 <= number <= MAX_PRICE):
        raise FieldError("price", f"{field} {str(value)[:40]!r} is not between 0 and {MAX_PRICE:g}")
    return number


def not_future(start: float, latest: float | None, field: str = "start") -> float:
    """`start` unless it is after `latest` (now + the source's max_future): FieldError
    `future`. `latest` None: no bound (a parser called without a clock, in tests)."""
    if latest is not None and start > latest:
        raise FieldError("future", f"{field} {start:.0f} is after {latest:.0f} (now + max_future)")
    return start


def in_range(epoch: float, field: str) -> float:
    if not (math.isfinite(epoch) and 0 <= epoch < LATEST_EPOCH):
        raise FieldError("date", f"{field} {epoch!r} is out of range (1970 to 3000)")
    return epoch


def rfc2822(value: Any, field: str) -> float:
    if not isinstance(value, str) or not value:
        raise FieldError("date", f"{field} missing")
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise FieldError("date", f"{field} {value!r} is not an RFC 2822 date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return in_range(moment.timestamp(), field)


def iso8601(value: Any, field: str) -> float:
    if not isinstance(value, str) or not value:
        raise FieldError("date", f"{field} missing")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FieldError("date", f"{field} {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return in_range(moment.timestamp(), field)


def unix_seconds(value: Any, field: str) -> float:
    """UNIX seconds as a finite float between 1970 and 3000 (JSON may carry NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError("date", f"{field} {value!r} is not UNIX seconds")
    return in_range(float(value), field)


def load_state(position: str | None) -> dict[str, Any]:
    """A position written as a JSON object; {} when there is none or it cannot be read."""
    try:
        state = json.loads(position) if position else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


# A JSON string (escapes included), an opening or a closing bracket, or a quote that opens a
# string never closed. Possessive, and the scan stops at the first unclosed string, so a
# body of 300,000 '"\\' costs one pass, not one pass per quote.
_JSON_TOKEN = re.compile(rb'("(?:[^"\\]++|\\.)*+")|([\[{])|([\]}])|(")', re.DOTALL)


def json_depth_within(body: bytes, limit: int) -> bool:
    """Whether no array or object in `body` nests deeper than `limit` and every string
    closes: a linear pre-scan (json.loads recurses once per level)."""
    depth = 0
    for match in _JSON_TOKEN.finditer(body):
        kind = match.lastindex
        if kind == 2:
            depth += 1
            if depth > limit:
                return False
        elif kind == 3:
            depth -= 1
        elif kind == 4:
            return False  # a string never closed: not JSON
    return True


def decode_json(
    body: bytes, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """JSON from an untrusted body, bounded in size and nesting; raises ShapeError.

    `"[" * 200000` is refused by the depth pre-scan before json.loads could recurse into it.
    """
    if len(body) > max_bytes:
        raise ShapeError(f"JSON body over {max_bytes} bytes")
    if not json_depth_within(body, max_depth):
        raise ShapeError(f"not JSON, or nested deeper than {max_depth} levels")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ShapeError("not valid JSON") from None

