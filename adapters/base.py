"""The adapter contract: settings model, pull() generator of batches, and plug-in loading."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import SecretStr

from collector.config import SourceSettings
from collector.model import Batch

ENTRY_POINT_GROUP = "contact_cost.adapters"


@dataclass(frozen=True)
class AdapterContext:
    """What an adapter may know about the exporter's configuration."""

    timezone: ZoneInfo
    currency: str


class Adapter(abc.ABC):
    """A source of contacts. Subclasses set `settings_model` and implement `pull`.

    `pull(position)` yields Batches in order. Each Batch carries the position after its
    contacts; the caller commits both in one transaction before asking for the next one.
    An adapter raises `SourceError` (or any OSError / requests error) when the source as a
    whole cannot be read; bad records are Rejections, never exceptions.
    """

    settings_model: ClassVar[type[SourceSettings]] = SourceSettings

    def __init__(self, settings: SourceSettings, context: AdapterContext) -> None:
        self.settings = settings
        self.context = context

    @property
    def name(self) -> str:
        return self.settings.name

    @abc.abstractmethod
    def pull(self, position: str | None) -> Iterator[Batch]:
        """Yield batches of new contacts after `position` (None: from the beginning)."""

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release sessions, files and the like. Called on shutdown and reload."""

    def describe(self) -> str:
        """One line for --config.check and the landing page. Never includes secrets."""
        fields = self.settings.model_dump(exclude={"name", "adapter", "interval", "jitter"})
        shown = []
        for key, value in fields.items():
            if isinstance(getattr(self.settings, key, None), SecretStr):
                continue
            if key in {"path", "base_url", "url", "subdomain", "domain"} and value:
                shown.append(f"{key}={value}")
        return ", ".join(shown)


class SourceError(Exception):
    """The source as a whole could not be read (missing file, HTTP 401, ...).

    The message is shown in logs and on the landing page: it must name the source's
    file or endpoint and the problem, and never a secret.
    """

    def __init__(self, message: str, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


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
