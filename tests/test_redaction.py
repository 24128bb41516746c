"""Credentials in a URL (http://user:SECRET@host) are never shown (issue 10, item 10).

Where a URL is shown: --config.check and the landing page (Adapter.describe and a source's
last error), and the API client's log lines and SourceError messages.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from adapters.base import SourceError, redact_url
from adapters.zendesk import ZendeskAdapter, ZendeskSettings
from collector.config import Settings
from collector.runtime import Exporter, LoadedConfig
from collector.server import landing_page
from tests.vendor_support import CONTEXT, FAST

SECRET = "s3cr3t-Passw0rd"


@pytest.mark.parametrize(("url", "shown"), [
    (f"http://user:{SECRET}@host.example/api", "http://***@host.example/api"),
    (f"https://{SECRET}@host.example:8443/", "https://***@host.example:8443/"),
    (f"https://a:b@c:{SECRET}@host.example/", "https://***@host.example/"),  # '@' in password
    ("https://host.example/api?x=1", "https://host.example/api?x=1"),  # nothing to hide
    ("/var/log/asterisk/cdr-csv/Master.csv", "/var/log/asterisk/cdr-csv/Master.csv"),
    ("mailto:someone@example.com", "mailto:someone@example.com"),  # not a URL with a host
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def zendesk(base_url: str) -> ZendeskAdapter:
    return ZendeskAdapter(ZendeskSettings(
        name="zd", adapter="zendesk", base_url=base_url, email="agent@example.com",
        api_token="token-value", retries=0, **FAST), CONTEXT)


def test_describe_hides_userinfo_and_secret_fields() -> None:
    adapter = zendesk(f"https://agent:{SECRET}@acme.zendesk.com/")
    shown = adapter.describe()
    assert shown == "base_url=https://***@acme.zendesk.com/"
    assert "token-value" not in shown


def test_http_client_errors_and_logs_never_carry_userinfo(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    httpserver.expect_request("/api/v2/incremental/tickets/cursor.json").respond_with_data(
        "nope", status=401)
    base = httpserver.url_for("/").replace("http://", f"http://agent:{SECRET}@")
    adapter = zendesk(base)
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as answered:
        list(adapter.pull(None))
    assert "answered 401" in str(answered.value)
    closed = zendesk(f"http://agent:{SECRET}@127.0.0.1:9/")  # the discard port: refused
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as refused:
        list(closed.pull(None))
    assert "cannot connect" in str(refused.value)
    for text in (str(answered.value), str(refused.value), caplog.text):
        assert SECRET not in text
    adapter.close()
    closed.close()


def test_landing_page_and_config_check_hide_userinfo(tmp_path: Path) -> None:
    adapter = zendesk(f"http://agent:{SECRET}@127.0.0.1:9/")
    exporter = Exporter(LoadedConfig(Settings(store=tmp_path / "s.db"), (adapter,), "test"))
    try:
        exporter.ingest("zd")  # fails: the last error is shown on the page
        page = landing_page(exporter, "/metrics")
    finally:
        exporter.close()
    assert "cannot connect" in page and SECRET not in page

    config = tmp_path / "config.toml"
    config.write_text(
        f'store = "{tmp_path / "c.db"}"\n[[sources]]\nname = "zd"\nadapter = "zendesk"\n'
        f'base_url = "https://agent:{SECRET}@acme.zendesk.com/"\n'
        'email = "agent@example.com"\napi_token = "token-value"\n')
    check = subprocess.run(
        [sys.executable, "-m", "collector", "--config.file", str(config), "--config.check"],
        capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "https://***@acme.zendesk.com/" in check.stdout
    assert SECRET not in check.stdout + check.stderr
    assert "token-value" not in check.stdout + check.stderr
