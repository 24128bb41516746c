"""contact-cost-exporter: cost per contact for contact centers, as Prometheus gauges."""

__version__ = "0.1.0"
