"""--config.check's summary shows the [service_level] and [fcr] definitions the figures use
(issue 9 item 7: the whole truth), defaults included, and never the customer key itself."""

from __future__ import annotations

from pathlib import Path

from collector.configcheck import check_config, summary

BASE = 'currency = "USD"\ntimezone = "Europe/Oslo"\n'
SECRET = "k3y-that-must-never-show-0123456789"


def summary_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "c.toml"
    path.write_text(text)
    result = check_config(path, environ={})
    assert not result.problems, result.problems
    assert result.config is not None
    return summary(result.config).splitlines()


def test_defaults_are_shown(tmp_path: Path) -> None:
    lines = summary_of(tmp_path, BASE)
    # The defaults of issue 11: 20 s threshold, 5 s short abandon, 7 d = 604,800 s window.
    assert "service level: answered within 20s (wait <= threshold); short abandons within 5s" \
        in lines
    assert ("first contact resolution: a repeat follows a handled contact of the same customer "
            "within 168h (604,800 s); customer key made at random and kept in the store") in lines


def test_queue_thresholds_window_and_key_source(tmp_path: Path) -> None:
    lines = summary_of(tmp_path, BASE + (
        '[service_level]\nthreshold = "15s"\nshort_abandon = "3s"\n'
        '[service_level.queues.sales]\nthreshold = "30s"\n'
        '[service_level.queues.billing]\nthreshold = "1m"\n'
        f'[fcr]\nwindow = "2d"\ncustomer_key = "{SECRET}"\n'
    ))
    # Queues in name order; 2 d = 172,800 s.
    assert ("service level: answered within 15s (wait <= threshold); queue billing 1m; "
            "queue sales 30s; short abandons within 3s") in lines
    assert ("first contact resolution: a repeat follows a handled contact of the same customer "
            "within 48h (172,800 s); customer key from the configuration") in lines
    assert not any(SECRET in line for line in lines)
