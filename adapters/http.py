"""The HTTP client every vendor API adapter shares: session, retries, rate limit, paging."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, NamedTuple, Self
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from pydantic import ConfigDict, Field, model_validator
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from adapters.base import (
    Adapter,
    AdapterContext,
    Batch,
    Contact,
    Duration,
    LabelMap,
    Rejection,
    SourceError,
    SourceSettings,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)
USER_AGENT = "contact-cost-exporter"


class ApiSourceSettings(SourceSettings):
    """Settings every vendor API source has. Vendors override the defaults they document.

    A vendor whose URL depends on the account sets `site_field` (the setting naming the
    account, such as "subdomain") and `base_url_template` ("https://{}.zendesk.com/");
    `base_url` is then built from it unless the source sets one.
    """

    model_config = ConfigDict(extra="forbid")
    site_field: ClassVar[str] = ""
    base_url_template: ClassVar[str] = ""
    base_url: str = ""
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

    @model_validator(mode="after")
    def _base_url(self) -> Self:
        if not self.base_url:
            site = getattr(self, self.site_field, None) if self.site_field else None
            if not site:
                raise ValueError(f"set {self.site_field} (or base_url)" if self.site_field
                                 else "set base_url")
            self.base_url = self.base_url_template.format(site)
        return self


class LookbackSettings(ApiSourceSettings):
    """A source whose first run reads from `start_date` (UTC), else `lookback` before now."""

    start_date: date | None = None
    lookback: Duration = timedelta(days=30)

    def first_moment(self, now: float) -> float:
        """Epoch seconds where a first run starts reading."""
        if self.start_date:
            return datetime.combine(self.start_date, datetime.min.time(), UTC).timestamp()
        return now - self.lookback.total_seconds()


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

    @property
    def location(self) -> str:
        """The endpoint, without query or credentials, for a Batch's location and logs."""
        return endpoint_of(self.url)


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


def shape_rejection(page: Page, detail: str) -> Rejection:
    """A page of an unexpected shape, as one rejection naming its endpoint."""
    return Rejection("shape", 0, f"{page.location}: {detail}"[:200])


def malformed_page(page: Page, exc: Exception) -> Batch:
    """A page of an unexpected shape: one `shape` rejection and no new position, so the
    next run asks for the same page again."""
    return Batch([], [shape_rejection(page, str(exc))], None, page.location)


Credentials = tuple[tuple[str, str] | None, Mapping[str, str] | None]


class ParsedPage(NamedTuple):
    """What a vendor's page parser found in one page (every vendor returns this shape)."""

    contacts: list[Contact]
    rejections: list[Rejection]
    more: bool = False  # another page follows (when the body says so)
    next: str | None = None  # the link or cursor to continue from, when the body has one
    hold: Any = None  # the oldest time of an item not final yet: the watermark stays there
    top: Any = None  # the newest time of the items seen (start, creation or update)
    total: int | None = None  # the vendor's count of matching records, when it says


def lowest(*values: Any) -> Any:
    """The smallest value that is not None (None when all are): for watermarks."""
    present = [value for value in values if value is not None]
    return min(present) if present else None


def highest(*values: Any) -> Any:
    """The largest value that is not None (None when all are): for watermarks."""
    present = [value for value in values if value is not None]
    return max(present) if present else None


def held_or_top(hold: Any, top: Any, fallback: Any) -> Any:
    """Where the next run starts: the oldest pending item, else the newest seen, else as before.

    The next run overlaps this boundary; the store's (source, id) uniqueness drops the overlap.
    """
    return hold if hold is not None else (top if top is not None else fallback)


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
