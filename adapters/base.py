"""The plug-in contract: everything an adapter needs, and nothing from collector/.

An adapter package (built in or third party) imports this module, `adapters.fields`,
`adapters.http` and `adapters.filetail` only. It registers its Adapter subclass in the
entry-point group `contact_cost.adapters`; the exporter loads exactly the adapters the
configuration names.
"""

from __future__ import annotations

import abc
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated, Any, ClassVar, NamedTuple
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    SecretStr,
    field_validator,
)

ENTRY_POINT_GROUP = "contact_cost.adapters"
CHANNELS_KNOWN = ("voice", "email", "chat", "sms", "social", "portal", "video", "other")
DIRECTIONS = ("inbound", "outbound")

# Label values must come from bounded vocabularies: a short slug, not free text.
_LABEL_VALUE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,62}$")
# Rejection and refusal reasons are label values of counters: short lower-case words.
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


# -- records -----------------------------------------------------------------------------------
class Contact(NamedTuple):
    """One normalised customer contact (a call, a ticket, a chat).

    Field order is the store's column order, so a Contact binds straight into SQL.
    Times are UTC epoch seconds; durations are seconds. A field added later always has a
    default, so an adapter written against today's fields keeps working.
    """

    id: str
    channel: str
    direction: str
    queue: str
    start: float
    handled: bool
    handle_seconds: float  # talk + hold + after-call work, the parts the export has
    talk_seconds: float
    billable_seconds: float  # what the carrier bills (per_minute costs use this)
    outcome: str = ""  # "" when none, else a configured outcome such as "sale"
    customer: str | None = None  # hashed, never the raw number or address
    price: float | None = None  # telephony price carried by the export itself
    reason: str = ""  # why an unhandled contact was not handled (no_answer, busy, ...)
    # Seconds in queue: arrival to the first answer by a person, or, for a contact not
    # handled, until the caller left (when the source knows it); None when not known.
    wait_seconds: float | None = None


class Leg(NamedTuple):
    """One record of a call that the vendor writes as several (Asterisk: one CDR per dial
    attempt or bridge). Legs with the same `call` make one contact, merged by the store.

    Field order is the store's column order. Times are UTC epoch seconds.
    """

    id: str  # the leg's identity inside its call (Asterisk: uniqueid:sequence, or a row hash)
    call: str  # the call it belongs to (Asterisk: linkedid, else uniqueid, else the row)
    channel: str
    start: float
    end: float
    billsec: float  # seconds billed, ending at `end`: the interval [end - billsec, end]
    answered: bool  # the leg was answered (by anyone: a person, an IVR, a Local channel)
    person: bool  # answered by a person (Asterisk: dstchannel set, not Local/...)
    queue: str = ""  # "" when this leg's context maps to no queue
    direction: str = ""  # "" when this leg's context maps to no direction
    outcome: str = ""
    customer: str | None = None
    price: float | None = None
    reason: str = ""  # why this leg was not answered by a person (no_answer, no_agent, ...)


class QueueCall(NamedTuple):
    """How one call went through a queue (Asterisk queue_log), to enrich another source's
    contact of the same call id: its queue, its exact wait and how the caller left.

    The store keeps it until the contact `call` of source `target` arrives, then applies it
    (and again each time that call's contact is recomputed), so it counts exactly once.
    """

    call: str  # the caller channel's uniqueid (the CDR's linkedid or uniqueid)
    target: str  # name of the source whose contact this enriches (an asterisk_cdr source)
    queue: str  # mapped queue label; "" keeps the contact's own
    enter: float  # UTC epoch of ENTERQUEUE
    wait: float  # seconds in queue: holdtime when answered, else waittime
    left: str  # answered, abandoned, timeout, key, empty, transfer


class Rejection(NamedTuple):
    """An input record that was skipped, with a bounded reason and where it was."""

    reason: str  # bounded vocabulary: columns, date, duration, encoding, id, shape, ...
    line: int  # 1-based line (file) or item index (API page); 0 when unknown
    detail: str = ""  # short human text for the log; never contains secrets
    # Identity of a record the source may send again (an API adapter re-reads an overlap
    # window): a rejection is counted once per (reason, record). "" for a file line, which
    # is never read twice.
    record: str = ""


class Batch(NamedTuple):
    """What one adapter step yields: contacts and rejections plus the position after them.

    The store commits contacts and position in one transaction, so a crash between two
    batches resumes exactly after the last committed one.
    """

    contacts: list[Contact]
    rejections: list[Rejection]
    position: str | None  # opaque to everything but the adapter; None keeps the old one
    location: str = ""  # file or URL the batch came from, for log lines
    legs: Sequence[Leg] = ()  # records of multi-record calls; the store merges them per call
    excluded: Sequence[Rejection] = ()  # records left out on purpose (configured), by reason
    # The file was rotated or truncated and the rest of its old content was not found.
    rotation_losses: int = 0
    queue_calls: Sequence[QueueCall] = ()  # enrichments of another source's contacts


# Caller IDs that name nobody: no customer key (else every withheld number is one customer).
NO_CUSTOMER = frozenset({
    "", "anonymous", "unknown", "restricted", "private", "withheld", "unavailable",
    "blocked", "none", "null", "asterisk", "s",
})
_PHONE = re.compile(r"^\+?[\d\s\-().]*\d[\d\s\-().]*$", re.ASCII)
_NOT_DIGITS = str.maketrans("", "", " \t\n\r\x0b\x0c-().+")
_CUSTOMER_HASH_BYTES = 8


def customer_identity(raw: str | None) -> str | None:
    """The normalised identity a customer key is made of; None when it names nobody.

    E-mail addresses compare case-insensitively; phone numbers by their digits (spaces,
    dashes, dots and parentheses dropped; a leading '+' or '00' read alike); a caller ID
    `"Name" <number>` by its number. Anonymous, unknown, restricted and empty IDs: None.
    """
    if raw is None:
        return None
    cleaned = raw.strip()
    if cleaned.endswith(">") and "<" in cleaned:  # "Alice" <5551234> (Asterisk clid)
        cleaned = cleaned[cleaned.rindex("<") + 1 : -1].strip()
    cleaned = cleaned.strip('"').strip().lower()
    if cleaned in NO_CUSTOMER:
        return None
    if "@" in cleaned:
        return "email:" + cleaned
    if _PHONE.match(cleaned):
        digits = cleaned.translate(_NOT_DIGITS)  # _PHONE leaves only these besides digits
        if not cleaned.startswith("+") and digits.startswith("00"):
            digits = digits[2:]
        if not digits.strip("0"):
            return None
        return "tel:" + digits
    return "id:" + cleaned


def hash_customer(raw: str | None) -> str | None:
    """A customer's key before the store keys it: a digest of `customer_identity(raw)`.

    The store hashes it again with its secret key (`key_customer`) before anything is
    written, so no stored key can be reversed by trying every phone number without that
    secret. The raw value is never kept.
    """
    identity = customer_identity(raw)
    if identity is None:
        return None
    return hashlib.blake2b(identity.encode("utf-8", "replace"), digest_size=16).hexdigest()


def key_customer(digest: str, key: bytes) -> str:
    """The stored customer key: a keyed BLAKE2b (a MAC) of hash_customer's digest."""
    return hashlib.blake2b(
        digest.encode("ascii", "replace"), digest_size=_CUSTOMER_HASH_BYTES, key=key[:64]
    ).hexdigest()


def row_id(parts: tuple[str, ...] | list[str]) -> str:
    """A stable id for a record that has none of its own: a hash of its fields."""
    joined = "\x1f".join(parts).encode("utf-8", "surrogateescape")
    return "h:" + hashlib.blake2b(joined, digest_size=12).hexdigest()


# -- errors ------------------------------------------------------------------------------------
def bounded_reason(reason: str, default: str) -> str:
    """`reason` when it is a short lower-case word, else `default` (it becomes a label)."""
    return reason if isinstance(reason, str) and _REASON.match(reason) else default


class SourceError(Exception):
    """The source as a whole could not be read (missing file, HTTP 401, ...).

    The message is shown in logs and on the landing page: it must name the source's
    file or endpoint and the problem, and never a secret.
    """

    def __init__(self, message: str, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


class FieldError(ValueError):
    """One record's field could not be used; `reason` is a bounded rejection reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = bounded_reason(reason, "other")


class ShapeError(FieldError):
    """The vendor sent JSON (or a page) of an unexpected shape: rejection reason `shape`."""

    def __init__(self, detail: str) -> None:
        super().__init__("shape", detail)


# -- settings field types ----------------------------------------------------------------------
def parse_duration(value: Any) -> timedelta:
    """'30s', '5m', '1h' (also 'ms' and 'd') or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration; use forms like '30s', '5m' or '1h'")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def check_encoding(value: str) -> str:
    try:
        "".encode(value)
    except LookupError:
        raise ValueError(f"{value!r} is not a known text encoding") from None
    return value


def check_timezone(value: str) -> str:
    """An IANA time zone name ZoneInfo can load; ValueError (never KeyError) if not."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):  # a KeyError would escape pydantic
        raise ValueError(f"{value!r} is not an IANA time zone such as UTC or Europe/Oslo"
                         ) from None
    return value


def check_label_value(value: str, what: str) -> str:
    if value == "total":
        raise ValueError(f"{what} 'total' is reserved: sum series in PromQL instead")
    if not _LABEL_VALUE.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid label value: use lower-case letters, digits, "
            "'_', '-' or '.', at most 63 characters"
        )
    return value


def _check_label_map(value: dict[str, str]) -> dict[str, str]:
    for target in value.values():
        check_label_value(target, "mapped label value")
    return value


# A text encoding Python knows, such as utf-8 or latin-1.
Encoding = Annotated[str, AfterValidator(check_encoding)]
# '30s', '5m', '1h' or seconds; written back as the short form.
Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
# An IANA time zone name such as UTC or Europe/Oslo.
TimeZoneName = Annotated[str, AfterValidator(check_timezone)]
# One label value (a configured fixed queue or channel).
LabelValue = Annotated[str, AfterValidator(lambda value: check_label_value(value, "label"))]
# raw vendor value -> bounded label value; what a source does with an unmapped value is
# the adapter's documented default ("other" for queues and channels, "" for outcomes).
LabelMap = Annotated[dict[str, str], AfterValidator(_check_label_map)]


class SourceSettings(BaseModel):
    """Fields every source has. Each adapter extends this with its own model.

    An adapter that receives webhooks adds `webhook: bool`; the route exists only when
    the source sets `webhook = true`.
    """

    model_config = ConfigDict(extra="allow")
    name: str
    adapter: str
    interval: Duration | None = None  # default: the global interval
    jitter: Duration | None = None  # default: a tenth of the interval
    # A record that starts later than now + max_future is rejected with reason `future`.
    max_future: Duration = timedelta(days=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_label_value(value, "source name")


@dataclass(frozen=True)
class AdapterContext:
    """What an adapter may know about the exporter's configuration."""

    timezone: ZoneInfo
    currency: str


# -- webhooks ----------------------------------------------------------------------------------
class Headers(Mapping[str, str]):
    """Request headers, looked up without regard to case; the first of a repeated name wins."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._values: dict[str, str] = {}
        for name, value in pairs:
            self._values.setdefault(str(name).lower(), str(value))

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Headers({sorted(self._values)})"  # names only: values may hold secrets


@dataclass(frozen=True)
class WebhookRequest:
    """One pushed request, as the adapter's `receive` sees it."""

    method: str
    path: str  # /webhooks/<kind>/<source>
    url: str  # the URL as the sender saw it (scheme, Host header, path and query)
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""


class WebhookRefused(Exception):
    """The request is refused before its content is looked at (bad signature, stale, ...).

    `status` is the HTTP answer (4xx); `reason` a bounded word counted in
    contactcenter_webhook_requests_total{status=...}: unauthorized, stale, ...
    """

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        self.status = status if 400 <= status <= 499 else 400
        self.reason = bounded_reason(reason, "refused")
        super().__init__(message or self.reason.replace("_", " "))


# -- the adapter -------------------------------------------------------------------------------
def redact_url(value: str) -> str:
    """A URL with any user:password replaced by ***, for everything shown or logged."""
    if "@" not in value or "://" not in value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parts.netloc:
        return value
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc="***@" + host))


_DESCRIBED = {"path", "base_url", "url", "subdomain", "domain"}


class Adapter(abc.ABC):
    """A source of contacts. Subclasses set `settings_model` and implement `pull`.

    `pull(position)` yields Batches in order. Each Batch carries the position after its
    contacts; the caller commits both in one transaction before asking for the next one.
    An adapter raises `SourceError` (or any OSError / requests error) when the source as a
    whole cannot be read; bad records are Rejections, never exceptions.

    An adapter that accepts pushes sets `webhook_kind` (its route is
    POST /webhooks/<webhook_kind>/<source name>) and implements `receive`.
    """

    settings_model: ClassVar[type[SourceSettings]] = SourceSettings
    # Reasons this adapter may leave records out for (Batch.excluded): their counters start
    # at 0, so the first exclusion shows in increase().
    exclusion_reasons: ClassVar[tuple[str, ...]] = ()
    webhook_kind: ClassVar[str | None] = None

    def __init__(self, settings: SourceSettings, context: AdapterContext) -> None:
        self.settings = settings
        self.context = context

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def webhook_enabled(self) -> bool:
        """Whether this source answers on its webhook route (`webhook = true`)."""
        return self.webhook_kind is not None and getattr(self.settings, "webhook", False) is True

    @abc.abstractmethod
    def pull(self, position: str | None) -> Iterator[Batch]:
        """Yield batches of new contacts after `position` (None: from the beginning)."""

    def receive(self, request: WebhookRequest, now: float) -> Contact | None:
        """Verify a pushed request and decode it; None for an event this source ignores.

        Raises WebhookRefused when the sender cannot be verified (nothing of the content
        is counted then), and FieldError when a verified sender's content is unusable
        (answered 400 and counted as a rejected record). `now` is epoch seconds.
        """
        raise WebhookRefused(404, "not_found", "no such webhook")

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release sessions, files and the like. Called on shutdown and reload."""

    def describe(self) -> str:
        """One line for --config.check and the landing page. Never includes secrets."""
        shown = []
        for key, value in self.settings.model_dump(include=_DESCRIBED).items():
            if value and not isinstance(getattr(self.settings, key, None), SecretStr):
                shown.append(f"{key}={redact_url(str(value))}")
        return ", ".join(shown)


class AdapterNotInstalled(LookupError):
    pass


def installed_adapters() -> dict[str, EntryPoint]:
    """Name -> entry point for every adapter registered in the entry-point group."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_adapter_class(name: str, installed: dict[str, EntryPoint] | None = None) -> type[Adapter]:
    """Load exactly the named adapter. Import errors propagate; they are bugs to see."""
    installed = installed_adapters() if installed is None else installed
    if name not in installed:
        known = ", ".join(sorted(installed)) or "none"
        raise AdapterNotInstalled(f"adapter {name!r} is not installed (installed: {known})")
    loaded: Any = installed[name].load()
    if not (isinstance(loaded, type) and issubclass(loaded, Adapter)):
        raise AdapterNotInstalled(
            f"entry point {name!r} ({installed[name].value}) is not an Adapter subclass"
        )
    return loaded
