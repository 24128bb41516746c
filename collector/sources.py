"""Turn the configured [[sources]] into adapter instances, loading only the adapters named."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from adapters.base import Adapter, AdapterContext, AdapterNotInstalled, load_adapter_class
from collector.config import ConfigError, Settings, first_problem


def build_adapters(settings: Settings, origin: str) -> list[Adapter]:
    """Validate each source against its adapter's own settings model and instantiate it.

    Raises ConfigError naming the file, the source and the field, for an unknown adapter
    or an invalid adapter setting.
    """
    context = AdapterContext(timezone=settings.tz, currency=settings.currency)
    adapters: list[Adapter] = []
    for index, source in enumerate(settings.sources):
        where = f"{origin}: sources[{index}] ({source.name})"
        try:
            cls = load_adapter_class(source.adapter)
        except AdapterNotInstalled as exc:
            raise ConfigError(f"{where}.adapter: {exc}") from None
        data: dict[str, Any] = source.model_dump(by_alias=True, exclude_unset=True)
        data.update(source.model_extra or {})
        try:
            validated = cls.settings_model.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{where}.{first_problem(exc, data)}") from None
        adapters.append(cls(validated, context))
    return adapters
