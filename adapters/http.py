"""The HTTP client every vendor API adapter shares: session, retries, rate limit, paging."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, NamedTuple
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from pydantic import AfterValidator, ConfigDict, Field
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from adapters.base import Adapter, AdapterContext, SourceError
from collector.config import SourceSettings, check_label_value
from collector.model import Rejection

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)
USER_AGENT = "contact-cost-exporter"


def _check_label_map(value: dict[str, str]) -> dict[str, str]:
    for target in value.values():
        check_label_value(target, "mapped label value")
    return value


# raw vendor value -> bounded label value; anything unmapped becomes "other"
LabelMap = Annotated[dict[str, str], AfterValidator(_check_label_map)]


class ApiSourceSettings(SourceSettings):
    """Settings every vendor API source has. Vendors override the defaults they document."""

    model_config = ConfigDict(extra="forbid")
    base_url: str
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    retries: int = Field(default=4, ge=0, le=10)
    backoff_factor: float = Field(default=1.0, ge=0)  # seconds; doubled per retry
    backoff_jitter: float = Field(default=1.0, ge=0)  # seconds of random extra wait
    backoff_max: float = Field(default=60.0, gt=0)
    max_retry_after: float = Field(default=120.0, gt=0)  # cap on a vendor's Retry-After
    requests_per_minute: float = Field(default=60.0, gt=0)
    queues: LabelMap = Field(default_factory=dict)
    outcomes: LabelMap = Field(default_factory=dict)


def label(mapping: Mapping[str, str], raw: object, default: str = "other") -> str:
    """A bounded label value: the configured mapping of `raw`, else `default`."""
    if raw is None:
        return default
    return mapping.get(str(raw), default)


class RateLimiter:
    """A token bucket: `per_minute` requests a minute, bursting up to `burst`.

    Clock and sleep are injectable, so tests run without real waiting.
    """

    def __init__(
        self,
        per_minute: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, burst if burst is not None else min(per_minute / 6.0, 10.0))
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def acquire(self) -> float:
        """Take one token, sleeping as long as needed; returns the seconds slept."""
        with self._lock:
            self._refill()
            wait = 0.0
            if self._tokens < 1.0:
                wait = (1.0 - self._tokens) / self.rate
                self._sleep(wait)
                self._refill()
            self._tokens -= 1.0
            return wait

    def drain(self) -> None:
        """The vendor says the quota is spent: the next request waits for a fresh token."""
        with self._lock:
            self._refill()
            self._tokens = min(self._tokens, 0.0)


def build_retry(settings: ApiSourceSettings) -> Retry:
    return Retry(
        total=settings.retries,
        connect=settings.retries,
        read=settings.retries,
        status=settings.retries,
        other=0,
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=settings.backoff_factor,
        backoff_jitter=settings.backoff_jitter,
        backoff_max=settings.backoff_max,
        respect_retry_after_header=True,
        retry_after_max=int(settings.max_retry_after),  # one header cannot park a job
        raise_on_status=False,
    )


def endpoint_of(url: str) -> str:
    """The URL without query or credentials, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Page(NamedTuple):
    """One decoded response: the JSON (None when the body was not JSON) and the response."""

    data: Any
    response: requests.Response
    url: str


class ApiClient:
    """One per source: a requests.Session with timeouts, urllib3 retries and a rate limiter."""

    def __init__(
        self,
        source: str,
        settings: ApiSourceSettings,
        auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.source = source
        self.settings = settings
        self.limiter = limiter or RateLimiter(settings.requests_per_minute)
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=build_retry(settings))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        if headers:
            self.session.headers.update(headers)
        if auth:
            self.session.auth = auth
        self.timeout = (settings.connect_timeout, settings.read_timeout)

    def url(self, path_or_url: str) -> str:
        """Join a vendor's relative link (next_page_uri, /v1/calls) onto the base URL."""
        base = self.settings.base_url.rstrip("/") + "/"
        return urljoin(base, path_or_url)

    def get(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> Page:
        """GET and decode JSON. Whole-source failures raise SourceError naming the endpoint."""
        url = self.url(path_or_url)
        where = endpoint_of(url)
        self.limiter.acquire()
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
        except requests.exceptions.RetryError as exc:
            raise SourceError(f"{where}: still failing after retries ({exc.__class__.__name__})",
                              "http_error") from None
        except requests.exceptions.Timeout:
            raise SourceError(f"{where}: timed out", "timeout") from None
        except requests.exceptions.ConnectionError:
            raise SourceError(f"{where}: cannot connect", "connection") from None
        except requests.exceptions.RequestException as exc:
            raise SourceError(f"{where}: {exc.__class__.__name__}", "http_error") from None
        self._observe_quota(response)
        status = response.status_code
        if status in (401, 403):
            raise SourceError(
                f"{where} answered {status}: check the credentials and that the API key may "
                "read this resource",
                "auth",
            )
        if status == 429:
            raise SourceError(f"{where} answered 429 (rate limited) after retries", "rate_limited")
        if status >= 500:
            raise SourceError(f"{where} answered {status} after retries", "server_error")
        if status >= 400:
            raise SourceError(f"{where} answered {status}", "http_error")
        try:
            data = response.json()
        except (ValueError, json.JSONDecodeError):
            data = None
        return Page(data, response, response.url)

    def _observe_quota(self, response: requests.Response) -> None:
        for name in ("X-Ratelimit-Remaining", "X-Rate-Limit-Remaining", "RateLimit-Remaining"):
            value = response.headers.get(name)
            if value is None:
                continue
            try:
                if int(float(value)) <= 0:
                    self.limiter.drain()
            except ValueError:
                pass
            return

    def close(self) -> None:
        self.session.close()


# -- shape checks: a wrong shape becomes a counted rejection, never an exception -----------
class ShapeError(ValueError):
    """The vendor answered JSON of an unexpected shape."""


def require_object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ShapeError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def require_list(data: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ShapeError(f"{what}: expected a list at {key!r}")
    return value


def shape_rejection(page: Page, detail: str) -> Rejection:
    return Rejection("shape", 0, f"{endpoint_of(page.url)}: {detail}"[:200])


# -- field parsing shared by the vendors ----------------------------------------------------
class FieldError(ValueError):
    """One record's field could not be used; `reason` is a bounded rejection reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# Times the store can place on a calendar day: 1970 up to the year 3000.
LATEST_EPOCH = 32_503_680_000.0


def _in_range(epoch: float, field: str) -> float:
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
    return _in_range(moment.timestamp(), field)


def iso8601(value: Any, field: str) -> float:
    if not isinstance(value, str) or not value:
        raise FieldError("date", f"{field} missing")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FieldError("date", f"{field} {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _in_range(moment.timestamp(), field)


def unix_seconds(value: Any, field: str) -> float:
    """UNIX seconds as a finite float between 1970 and 3000 (JSON may carry NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError("date", f"{field} {value!r} is not UNIX seconds")
    return _in_range(float(value), field)


# What a single record's parser may raise: a known field problem, or a value of the wrong
# JSON type used as a key or compared (a list where a string was expected).
ITEM_ERRORS = (FieldError, TypeError, ValueError)


def item_rejection(exc: Exception, index: int) -> Rejection:
    """One bad record as one counted rejection: its field's reason, else `shape`."""
    reason = exc.reason if isinstance(exc, FieldError) else "shape"
    return Rejection(reason, index, str(exc)[:200])


def seconds(value: Any, field: str, default: float | None = None) -> float:
    """A non-negative duration given as a number or a string of digits."""
    if value is None or value == "":
        if default is not None:
            return default
        raise FieldError("duration", f"{field} missing")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FieldError("duration", f"{field} {value!r} is not a number of seconds") from None
    if not math.isfinite(number) or number < 0:
        raise FieldError("duration", f"{field} {value!r} is negative or not finite")
    return number


def record_id(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None or value == "" or isinstance(value, (dict, list, bool)):
        raise FieldError("id", f"{key} missing")
    return str(value)


def load_state(position: str | None) -> dict[str, Any]:
    """A position written as a JSON object; {} when there is none or it cannot be read."""
    try:
        state = json.loads(position) if position else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


Credentials = tuple[tuple[str, str] | None, Mapping[str, str] | None]


class ApiAdapter(Adapter):
    """Base of the pull adapters: one ApiClient (session, retries, rate limit) per source."""

    def __init__(
        self,
        settings: ApiSourceSettings,
        context: AdapterContext,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings, context)
        self.clock = clock
        auth, headers = self.credentials()
        self.client = ApiClient(settings.name, settings, auth=auth, headers=headers)

    def credentials(self) -> Credentials:
        """(Basic-auth pair, extra headers); secrets leave SecretStr only here."""
        raise NotImplementedError

    def close(self) -> None:
        self.client.close()
