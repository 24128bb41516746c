"""contact-cost-exporter: cost per contact for contact centers, as Prometheus gauges."""

from typing import Any


def __getattr__(name: str) -> Any:
    # The version lives in pyproject.toml only; read from the installed metadata on first
    # use, not at import, so `python -m collector` reaches its signal handlers quickly.
    if name == "__version__":
        from importlib.metadata import version

        value = version("contact-cost-exporter")
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
