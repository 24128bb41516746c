"""A third-party adapter package, built and installed as a stranger would, works end to end.

tests/fixtures/thirdparty_adapter is a package of its own (pyproject.toml, entry point
`demo_jsonl` in group contact_cost.adapters) that imports only the contract. It is built
and installed into a directory of this session (pip, no index, no network), which the
exporter subprocess gets on its PYTHONPATH: the exporter finds it by entry point, pulls its
file, and routes its signed pushes, without a line of collector/ naming it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import parse_exposition, wait_for

PACKAGE = Path(__file__).resolve().parent / "fixtures" / "thirdparty_adapter"
SECRET = "demo-shared-secret"


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Build and install the fixture package into a fresh directory; its path."""
    work = tmp_path_factory.mktemp("thirdparty")
    source = work / "src"
    shutil.copytree(PACKAGE, source)  # the build writes build/ and egg-info next to it
    target = work / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target),
         str(source)],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(target.glob("contact_cost_demo_adapter-0.1.0.dist-info/entry_points.txt"))
    return str(target)


def env_with(plugin_path: str) -> dict[str, str]:
    existing = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": plugin_path + (os.pathsep + existing if existing else "")}


def test_the_installed_package_is_listed_and_loaded_by_name(plugin_path: str) -> None:
    code = ("from adapters.base import installed_adapters, load_adapter_class\n"
            "print(sorted(installed_adapters()))\n"
            "cls = load_adapter_class('demo_jsonl')\n"
            "print(cls.__module__, cls.webhook_kind)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **env_with(plugin_path)}, timeout=60)
    assert result.returncode == 0, result.stderr
    listed, loaded = result.stdout.splitlines()
    assert "'demo_jsonl'" in listed and "'csv'" in listed
    assert loaded == "demo_contacts demo"


def test_thirdparty_adapter_pulls_its_file_and_receives_a_signed_push(
    tmp_path: Path, start_exporter: Callable[..., Any], plugin_path: str
) -> None:
    now = time.time()  # starts a few seconds ago: today's window, unless run at midnight
    lines = [
        {"id": "c-1", "start": now - 3, "channel": "chat", "queue": "Team A", "seconds": 100},
        {"id": "c-2", "start": now - 2, "channel": "chat", "queue": "Team A", "seconds": 50},
        {"id": "c-3", "start": "yesterday", "channel": "chat"},  # line 3: rejected, date
    ]
    export = tmp_path / "contacts.jsonl"
    export.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = tmp_path / "config.toml"
    config.write_text(
        'currency = "USD"\ntimezone = "UTC"\ninterval = "1s"\n'
        f'store = "{tmp_path / "state.db"}"\n\n'
        '[[sources]]\nname = "demo"\nadapter = "demo_jsonl"\n'
        f'path = "{export}"\nwebhook = true\nwebhook_secret = "{SECRET}"\n'
        'queues = { "Team A" = "support" }\n'
    )
    check = subprocess.run(
        [sys.executable, "-m", "collector", "--config.file", str(config), "--config.check"],
        capture_output=True, text=True, env={**os.environ, **env_with(plugin_path)},
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "demo" in check.stdout and SECRET not in check.stdout + check.stderr
    exporter = start_exporter(config, env=env_with(plugin_path))

    def sample(name: str, **labels: str) -> float | None:
        return parse_exposition(exporter.metrics()).get((name, frozenset(labels.items())))

    def support_chats() -> float | None:
        return sample("contactcenter_contacts", period="day", window="current",
                      channel="chat", direction="inbound", queue="support")

    # Pulled from the file: c-1 and c-2 stored, line 3 one rejection with reason date.
    assert wait_for(support_chats, timeout=20, what="the pulled contacts") == 2
    assert sample("contactcenter_source_records_total", source="demo") == 2
    assert sample("contactcenter_source_rejected_records_total", source="demo",
                  reason="date") == 1

    def post(body: bytes, signature: str) -> int:
        request = urllib.request.Request(
            exporter.url + "/webhooks/demo/demo", data=body, method="POST",
            headers={"Content-Type": "application/json", "X-Demo-Signature": signature})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    pushed = json.dumps({"id": "c-4", "start": now - 1, "channel": "chat",
                         "queue": "Team A", "seconds": 40}).encode()
    signature = hmac.new(SECRET.encode(), pushed, hashlib.sha256).hexdigest()
    assert post(pushed, signature) == 200
    assert post(pushed, signature) == 200  # a redelivery, stored once
    assert post(pushed, "0" * 64) == 401  # not signed with the secret
    unusable = b'{"id": "c-5", "start": "soon"}'
    assert post(unusable, hmac.new(SECRET.encode(), unusable, hashlib.sha256).hexdigest()) == 400

    assert wait_for(lambda: support_chats() == 3 or None, timeout=20,
                    what="the pushed contact in the gauges")
    for status, count in (("accepted", 1), ("duplicate", 1), ("unauthorized", 1),
                          ("rejected", 1)):
        assert sample("contactcenter_webhook_requests_total", source="demo",
                      status=status) == count, status
    assert sample("contactcenter_source_rejected_records_total", source="demo",
                  reason="date") == 2
