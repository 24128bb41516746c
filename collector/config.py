"""Settings: the TOML file plus CONTACT_COST_* env vars, validated once, failing fast."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# The source settings base and its field types are the adapters' contract; re-exported
# here because the rest of the configuration uses them too.
from adapters.base import Duration as Duration
from adapters.base import Encoding as Encoding
from adapters.base import LabelMap as LabelMap
from adapters.base import SourceSettings as SourceSettings
from adapters.base import TimeZoneName
from adapters.base import check_encoding as check_encoding
from adapters.base import check_label_value as check_label_value
from adapters.base import format_duration as format_duration
from adapters.base import parse_duration as parse_duration
from collector.hours import (
    WEEKDAYS,
    OpenHours,
    format_intervals,
    load_holidays,
    open_hours_for,
    parse_days,
    parse_intervals,
)
from collector.leader import check_store_url, redact_url
from collector.model import KpiDefinitions
from collector.model import PeriodName as PeriodName
from collector.series import MetricsSettings

ENV_PREFIX = "CONTACT_COST_"
Component = Literal[
    "salaries",
    "benefits",
    "licences",
    "hardware",
    "software",
    "facilities",
    "utilities",
    "telephony",
    "other",
]
COMPONENTS: tuple[str, ...] = get_args(Component)
# The one place the store's password may come from (libpq's PGPASSWORD and ~/.pgpass work
# too, when this is unset): never the file, never printed.
STORE_PASSWORD_ENV = ENV_PREFIX + "STORE_PASSWORD"
STORE_PASSWORD_IN_FILE = (
    f"store_password does not belong in the file; set {STORE_PASSWORD_ENV}"
)


def _store_setting(value: Any) -> Any:
    """A postgresql:// URL stays a string (checked: no password in it); anything else is
    a SQLite file path, relative to the current directory as before."""
    text = str(value) if isinstance(value, str | Path) else None
    if text is not None and text.startswith(("postgresql://", "postgres://")):
        if isinstance(value, Path):  # Path() folds '//': the URL was mangled already
            raise ValueError("give a postgresql:// URL as a string, not a path")
        url = check_store_url(text)
        netloc = urlsplit(url).netloc
        for host in netloc.rpartition("@")[2].split(","):  # libpq: host1:port1,host2:port2
            try:
                urlsplit(f"//{host}").port  # noqa: B018 - raises on no number up to 65535
            except ValueError:
                raise ValueError(f"{url}: the port is not a number up to 65535") from None
        return url
    if isinstance(value, str) and _OTHER_URL.match(value):
        # A mistyped scheme (postgressql://) would otherwise become a SQLite file there.
        raise ValueError(f"{redact_url(value)}: only postgresql:// URLs are stores; "
                         "a SQLite store is a file path")
    return Path(value) if isinstance(value, str) else value


_OTHER_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


# `store`: a SQLite file (Path) or a PostgreSQL URL (str, postgresql://user@host:port/db).
StoreSetting = Annotated[Path | str, BeforeValidator(_store_setting)]


class ConfigError(Exception):
    """An invalid configuration: one readable line per problem, naming the file and the field.

    `problems` holds every problem, one line each; the message is those lines joined.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems else [message]


class Band(BaseModel):
    """A healthy band for cost per contact."""

    model_config = ConfigDict(extra="forbid")
    low: float = Field(ge=0)
    high: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class Benchmark(Band):
    """The default band for all channels, and per-channel overrides."""

    low: float = Field(default=2.70, ge=0)
    high: float = Field(default=5.60, gt=0)
    channels: dict[str, Band] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, value: dict[str, Band]) -> dict[str, Band]:
        for name in value:
            check_label_value(name, "channel")
            if name == "default":
                raise ValueError("'default' is reserved for the default band")
        return value

    def band_for(self, channel: str) -> Band:
        return self.channels.get(channel) or Band(low=self.low, high=self.high)


class CostItem(BaseModel):
    """One line of the cost side. Exactly one way of costing per item."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(min_length=1)
    component: Component
    amount: float | None = Field(default=None, ge=0)
    per: PeriodName | None = None
    seats: int | None = Field(default=None, ge=1)
    amortize_months: int | None = Field(default=None, ge=1)
    per_minute: float | None = Field(default=None, ge=0)
    per_contact: float | None = Field(default=None, ge=0)
    from_: date | None = Field(default=None, alias="from")
    until: date | None = None
    allocate: Literal["handle_time", "contacts"] = "handle_time"
    # How a shared item behaves under `whatif`: "workload" items (agent labour, per-seat
    # licences) scale with the agents' handle hours; "fixed" ones (rent, hardware) do not.
    scales_with: Literal["fixed", "workload"] = "fixed"
    channels: list[str] | None = None
    directions: list[Literal["inbound", "outbound"]] | None = None
    queues: list[str] | None = None

    @field_validator("channels", "queues")
    @classmethod
    def _scope_labels(cls, value: list[str] | None) -> list[str] | None:
        for label in value or ():
            check_label_value(label, "scope value")
        return value

    @model_validator(mode="after")
    def _one_way_of_costing(self) -> CostItem:
        ways = []
        if self.per is not None:
            ways.append("amount + per")
        if self.amortize_months is not None:
            ways.append("amount + amortize_months")
        if self.per_minute is not None:
            ways.append("per_minute")
        if self.per_contact is not None:
            ways.append("per_contact")
        if len(ways) != 1:
            found = ", ".join(ways) if ways else "none"
            raise ValueError(
                "needs exactly one way of costing (amount + per, amount + amortize_months, "
                f"per_minute or per_contact); found {found}"
            )
        if ways[0].startswith("amount") and self.amount is None:
            raise ValueError(f"{ways[0]} needs an amount")
        if not ways[0].startswith("amount") and self.amount is not None:
            raise ValueError(f"amount does not go with {ways[0]}")
        if self.scales_with != "fixed" and self.is_usage:
            raise ValueError("scales_with goes with shared items (amount); a usage item is "
                             "recomputed from the minutes and contacts themselves")
        if self.seats is not None and self.per is None:
            raise ValueError("seats only goes with amount + per")
        if self.amortize_months is not None and self.from_ is None:
            raise ValueError("an amortized purchase needs `from`, the date it starts")
        if self.from_ and self.until and self.until < self.from_:
            raise ValueError(f"until ({self.until}) is before from ({self.from_})")
        return self

    @property
    def is_usage(self) -> bool:
        return self.per_minute is not None or self.per_contact is not None

    def in_scope(self, channel: str, direction: str, queue: str) -> bool:
        return (
            (self.channels is None or channel in self.channels)
            and (self.directions is None or direction in self.directions)
            and (self.queues is None or queue in self.queues)
        )


class HoursSettings(BaseModel):
    """`[hours]`: service hours per weekday, closed dates, public holidays (collector.hours).

    The table is written as ``mon-fri = "08:00-18:00"``, ``sat = "09:00-13:00"``,
    ``closed = ["2026-12-24"]``, ``holidays = "NO"``; it is parsed into ``week`` here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    week: tuple[tuple[tuple[int, int], ...], ...]  # Monday first; (start, end) seconds
    closed: tuple[date, ...] = ()
    holidays: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_table(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError('must be a table such as [hours] mon-fri = "08:00-18:00"')
        week: list[tuple[tuple[int, int], ...]] = [()] * 7
        named: dict[int, str] = {}
        parsed: dict[str, Any] = {"week": week}
        for key, spec in value.items():
            if key in ("closed", "holidays"):
                parsed[key] = spec
                continue
            days = parse_days(str(key))
            if not isinstance(spec, str):
                raise ValueError(f"{key}: give the hours as a string such as '08:00-18:00'")
            try:
                spans = parse_intervals(spec)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
            for day in days:
                if day in named:
                    raise ValueError(f"{WEEKDAYS[day]} is given twice ({named[day]} and {key})")
                named[day] = str(key)
                week[day] = spans
        if not any(week):
            raise ValueError(
                "names no open hours; leave [hours] out for a center open around the clock"
            )
        parsed["week"] = tuple(week)
        return parsed

    @field_validator("holidays")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        if value is not None:
            load_holidays(value)  # imports the package only when a country is configured
        return value

    def describe(self) -> str:
        """'mon-fri 08:00-18:00, sat 09:00-13:00; 2 closed dates; holidays NO'."""
        runs: list[str] = []
        day = 0
        while day < 7:
            last = day
            while last + 1 < 7 and self.week[last + 1] == self.week[day]:
                last += 1
            if self.week[day]:
                days = WEEKDAYS[day] + (f"-{WEEKDAYS[last]}" if last > day else "")
                runs.append(f"{days} {format_intervals(self.week[day])}")
            day = last + 1
        text = ", ".join(runs)
        if self.closed:
            text += f"; {len(self.closed)} closed date(s)"
        if self.holidays:
            text += f"; public holidays of {self.holidays}"
        return text


class QueueServiceLevel(BaseModel):
    """`[service_level.queues.<queue>]`: a queue's own threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    threshold: Duration


class ServiceLevelSettings(BaseModel):
    """`[service_level]`: what counts as answered in time and as a short abandon.

    service level = handled with wait <= threshold / (handled + abandoned - short abandons);
    a short abandon is an unhandled contact with wait <= short_abandon.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    threshold: Duration = timedelta(seconds=20)
    short_abandon: Duration = timedelta(seconds=5)
    queues: dict[str, QueueServiceLevel] = Field(default_factory=dict)

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, value: dict[str, QueueServiceLevel]) -> dict[str, QueueServiceLevel]:
        for name in value:
            check_label_value(name, "service_level queue")
            if name == "default":
                raise ValueError("queue 'default' is the label of the default threshold; "
                                 "set [service_level] threshold instead")
        return value


class FcrSettings(BaseModel):
    """`[fcr]`: first contact resolution. A handled contact followed, within `window`
    after its start, by another contact of the same customer is a repeat."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    window: Duration = timedelta(days=7)
    # Key of the customer hashes (HMAC). Unset: a random key made when the store is first
    # created and kept in it. Set it (CONTACT_COST_FCR__CUSTOMER_KEY) on every exporter
    # whose stores must recognise the same customer. Never logged or shown.
    customer_key: SecretStr | None = None

    @field_validator("customer_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("customer_key must be at least 16 characters")
        return value


class ForecastSettings(BaseModel):
    """`[forecast]`: the projection to the end of the period (collector.projection)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Complete ISO weeks before the current one whose weekday-and-hour arrivals make the profile.
    weeks: int = Field(default=4, ge=1, le=52)


class Settings(BaseSettings):
    """The whole configuration. Defaults, types and docs live here and only here."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
    )
    currency: str = "USD"
    timezone: TimeZoneName = "UTC"
    interval: Duration = timedelta(seconds=60)
    store: StoreSetting = Path("state/contact-cost.db")
    # Only from CONTACT_COST_STORE_PASSWORD (load_settings refuses it in the file).
    store_password: SecretStr | None = None
    benchmark: Benchmark = Field(default_factory=Benchmark)
    sources: list[SourceSettings] = Field(default_factory=list)
    costs: list[CostItem] = Field(default_factory=list)
    hours: HoursSettings | None = None  # None: open around the clock
    service_level: ServiceLevelSettings = Field(default_factory=ServiceLevelSettings)
    fcr: FcrSettings = Field(default_factory=FcrSettings)
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)  # [metrics]: series kept

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(f"{value!r} is not an ISO 4217 code such as USD or EUR")
        return value

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, value: list[SourceSettings]) -> list[SourceSettings]:
        seen: set[str] = set()
        for source in value:
            if source.name in seen:
                raise ValueError(f"source name {source.name!r} is used twice")
            seen.add(source.name)
        names = {source.name: source.adapter for source in value}
        for source in value:  # a queue_log enriching a CDR source must name one
            target = (source.model_extra or {}).get("cdr_source")
            if target is not None and names.get(str(target)) != "asterisk_cdr":
                raise ValueError(
                    f"source {source.name!r}: cdr_source {target!r} is not the name of an "
                    "asterisk_cdr source"
                )
        return value

    @property
    def store_is_url(self) -> bool:
        """Whether `store` names a PostgreSQL database (replicas, a leader) or a SQLite file."""
        return isinstance(self.store, str)

    @property
    def store_password_value(self) -> str | None:
        """The PostgreSQL password to pass to psycopg, or None (libpq finds its own)."""
        secret = self.store_password
        return None if secret is None else secret.get_secret_value()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def open_hours(self) -> OpenHours | None:
        """The service hours, or None when the center is open around the clock."""
        if self.hours is None:
            return None
        return open_hours_for(self.hours.week, self.hours.closed, self.hours.holidays,
                              self.timezone)

    @property
    def kpi_definitions(self) -> KpiDefinitions:
        """The service-level and repeat definitions the store rolls up by."""
        sl = self.service_level
        return KpiDefinitions(
            sl.threshold.total_seconds(),
            tuple(sorted((q, s.threshold.total_seconds()) for q, s in sl.queues.items())),
            sl.short_abandon.total_seconds(),
            self.fcr.window.total_seconds(),
        )

    @property
    def customer_key(self) -> bytes | None:
        key = self.fcr.customer_key
        return None if key is None else key.get_secret_value().encode("utf-8")

    def source_interval(self, source: SourceSettings) -> timedelta:
        return source.interval or self.interval

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_data: dict[str, Any] = settings_cls.model_config.get("file_data") or {}  # type: ignore[assignment]
        return (
            init_settings,
            _EnvWithoutSources(settings_cls),
            _FileSource(settings_cls, file_data),
        )


SOURCE_ENV_PREFIX = ENV_PREFIX + "SOURCES__"


class _EnvWithoutSources(EnvSettingsSource):
    """CONTACT_COST_* env vars, except the per-source ones (applied to the file's sources)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        loaded = super()._load_env_vars()
        return {k: v for k, v in loaded.items() if not k.upper().startswith(SOURCE_ENV_PREFIX)}


class _FileSource(PydanticBaseSettingsSource):
    """The TOML file's contents, already merged with per-source env overrides."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


def apply_source_env(raw: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Apply CONTACT_COST_SOURCES__<NAME>__<FIELD>[__<KEY>]=value to the named source.

    This is how a source's token or password stays out of the file. Values that look like
    JSON objects or lists are parsed as JSON. Returns the names of unknown sources.
    """
    sources = raw.get("sources")
    by_name = {
        str(s.get("name", "")).lower(): s
        for s in (sources if isinstance(sources, list) else [])
        if isinstance(s, dict)
    }
    unknown = []
    for key, value in sorted(environ.items()):
        if not key.upper().startswith(SOURCE_ENV_PREFIX):
            continue
        parts = key[len(SOURCE_ENV_PREFIX) :].lower().split("__")
        if len(parts) < 2 or parts[0] not in by_name:
            unknown.append(key)
            continue
        node = by_name[parts[0]]
        for part in parts[1:-1]:
            node = node.setdefault(part, {})
        parsed: Any = value
        if value[:1] in "[{":
            with contextlib.suppress(ValueError):
                parsed = json.loads(value)
        node[parts[-1]] = parsed
    return unknown


def _field_path(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    """sources[0].queues -> sources[0] (pbx).queues, so the message names the source."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and item < len(node):
                node = node[item]
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    label += f" ({node['name']})"
            else:
                node = None
            parts.append(label)
        else:
            if item.startswith(("function-", "literal[", "union[")) or item in {
                "list[str]",
                "float",
                "int",
                "date",
            }:
                continue
            parts.append(("." if parts else "") + item)
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def _unwrap(annotation: Any) -> Any:
    """Annotated[X, ...] -> X and X | None -> X, so a field's model can be found."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model that validated the object at `loc` (a field path), if known."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            if get_origin(current) not in (list, tuple):
                return None
            current = get_args(current)[0]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            fields = {f.alias or n: f for n, f in current.model_fields.items()}
            field = fields.get(part) or current.model_fields.get(part)
            if field is None:
                if part.startswith(("function-", "literal[", "union[")):
                    continue
                return None
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def unknown_field_hint(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> str:
    """'unknown field; did you mean `component`?' for a misspelt field name."""
    parent = _model_at(model, loc[:-1]) if model is not None else None
    if parent is None or not isinstance(loc[-1], str):
        return "unknown field"
    valid = sorted(f.alias or n for n, f in parent.model_fields.items())
    close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean `{close[0]}`?"
    return "unknown field; valid fields: " + ", ".join(valid)


def validation_problems(
    exc: ValidationError, raw: dict[str, Any], model: type[BaseModel] | None = None
) -> list[str]:
    """Every problem as 'field: message', one per line, in pydantic's order.

    `model` (the model that was validated) lets an unknown field name its nearest valid
    name. Input values are never included, so a bad secret does not end up in the text.
    """
    lines: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        field = _field_path(loc, raw)
        if error["type"] == "extra_forbidden" and loc:
            message = unknown_field_hint(model, loc)
        else:
            message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{field}: {message}")
    return list(dict.fromkeys(lines))


def first_problem(exc: ValidationError, raw: dict[str, Any]) -> str:
    """The first problem as 'field: message', plus how many more there are."""
    problems = validation_problems(exc, raw)
    extra = len(problems) - 1
    more = f" (and {extra} more problem{'s' * (extra > 1)})" if extra else ""
    return f"{problems[0]}{more}"


def describe_validation_error(exc: ValidationError, raw: dict[str, Any], origin: str) -> str:
    """One line per problem: origin: field: message."""
    return "\n".join(f"{origin}: {line}" for line in validation_problems(exc, raw, Settings))


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_settings(path: Path | str | None) -> Settings:
    """Read and validate the configuration; raise ConfigError with one readable line.

    Relative paths inside the file (store, source paths) resolve against the current
    directory, as Prometheus resolves them, so `make run` from the checkout works.
    """
    raw: dict[str, Any] = {}
    origin = "environment"
    if path is not None:
        path = Path(path)
        raw = read_toml(path)
        origin = str(path)
    unknown = apply_source_env(raw, os.environ)
    if unknown:
        raise ConfigError(f"{unknown[0]}: no source of that name in {origin}")
    # The store's password is a secret: only the environment may hold it. Its value is
    # never part of the message; the rest of the file is still checked.
    problems = [f"{origin}: {STORE_PASSWORD_IN_FILE}"] if "store_password" in raw else []
    file_data = {k: v for k, v in raw.items() if k != "store_password"}
    model_config = {**Settings.model_config, "file_data": file_data}
    bound = type("BoundSettings", (Settings,), {"model_config": model_config})
    try:
        settings: Settings = bound()
    except ValidationError as exc:
        prefix = "environment or " if any(k.startswith(ENV_PREFIX) for k in os.environ) else ""
        problems += describe_validation_error(exc, file_data, f"{prefix}{origin}").splitlines()
    if problems:
        raise ConfigError("\n".join(problems), problems) from None
    # A plain Settings (the bound subclass only carried the file's data), so it pickles:
    # the recompute worker process receives it.
    return Settings.model_construct(
        _fields_set=settings.model_fields_set,
        **{name: getattr(settings, name) for name in Settings.model_fields},
    )
