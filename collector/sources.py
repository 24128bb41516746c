"""Turn the configured [[sources]] into adapter instances, loading only the adapters named."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from adapters.base import Adapter, AdapterContext, AdapterNotInstalled, load_adapter_class
from collector.config import ConfigError, Settings, SourceSettings, first_problem
from collector.logsafe import describe_error


def build_adapters(settings: Settings, origin: str) -> list[Adapter]:
    """Validate each source against its adapter's own settings model and instantiate it.

    Raises ConfigError naming the file, the source and the field, for an unknown adapter
    or an invalid adapter setting, whatever raised it (pydantic, or a validator or
    constructor of the adapter's own); the adapters built before it are closed.
    """
    context = AdapterContext(timezone=settings.tz, currency=settings.currency)
    adapters: list[Adapter] = []
    try:
        for index, source in enumerate(settings.sources):
            adapters.append(_build_adapter(source, f"{origin}: sources[{index}] ({source.name})",
                                           context))
    except BaseException:
        for adapter in adapters:
            adapter.close()
        raise
    return adapters


def _build_adapter(source: SourceSettings, where: str, context: AdapterContext) -> Adapter:
    try:
        cls = load_adapter_class(source.adapter)
    except AdapterNotInstalled as exc:
        raise ConfigError(f"{where}.adapter: {exc}") from None
    data: dict[str, Any] = source.model_dump(by_alias=True, exclude_unset=True)
    data.update(source.model_extra or {})
    try:
        validated = cls.settings_model.model_validate(data)
        return cls(validated, context)
    except ValidationError as exc:
        raise ConfigError(f"{where}.{first_problem(exc, data)}") from None
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. zoneinfo raising KeyError in a validator
        raise ConfigError(f"{where}: {describe_error(exc)}") from None
