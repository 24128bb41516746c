"""The landing page in a real browser: the exporter's CLI on loopback, Debian's headless Chromium.

The exports are written relative to the real clock (one contact a day for the last 35 local
days), so the 30-day chart has a value on each of its days. Costs are per contact only, so
every day's cost per contact is known by hand: voice 3.00 USD (band 2.00-4.00: in band),
e-mail 5.00 USD (band 1.00-4.00: above band).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import bcrypt
import pytest

from .conftest import ExporterProcess, http_get, wait_for
from .pki import make_pki

ZONE = ZoneInfo("Europe/Oslo")
PASSWORD = "page-viewer-pass"


def chromium() -> str:
    """Debian's `chromium`; in CI (CI=true) a missing one fails the test, else it skips."""
    path = shutil.which("chromium")
    if path is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def browse(url: str, tmp_path: Path, *extra: str) -> str:
    """The DOM after the page loaded, as headless Chromium serialises it."""
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", *extra, "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(url: str, tmp_path: Path, *extra: str) -> Path:
    shot = tmp_path / "landing.png"
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1280,2000", *extra, f"--screenshot={shot}", url],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return shot


def write_exports(directory: Path, now: datetime) -> None:
    """One voice call and one e-mail a day, 00:00:30 local, for the last 35 local days."""
    today = now.astimezone(ZONE).date()
    calls, mails = ["id,start,handle,queue"], ["id,start,handle"]
    for back in range(35):
        day = today - timedelta(days=back)
        start = datetime(day.year, day.month, day.day, 0, 0, 30, tzinfo=ZONE)
        if start > now:
            continue  # the first half-minute after midnight: today has no contact yet
        stamp = start.astimezone(UTC).isoformat()
        queue = "support" if back % 2 else "sales"
        calls.append(f"c{back},{stamp},300,{queue}")
        mails.append(f"m{back},{stamp},120")
    (directory / "calls.csv").write_text("\n".join(calls) + "\n")
    (directory / "mails.csv").write_text("\n".join(mails) + "\n")


CONFIG = """
currency = "USD"
timezone = "Europe/Oslo"
interval = "2s"
store = "state.db"

[benchmark]
low = 2.0
high = 4.0
[benchmark.channels.email]
low = 1.0
high = 4.0

[[sources]]
name = "phones"
adapter = "csv"
path = "calls.csv"
channel = "voice"
columns = { id = "id", started_at = "start", handle_seconds = "handle", queue = "queue" }
queues = { "support" = "support", "sales" = "sales" }

[[sources]]
name = "helpdesk"
adapter = "csv"
path = "mails.csv"
channel = "email"
queue = "support"
columns = { id = "id", started_at = "start", handle_seconds = "handle" }

[[costs]]
name = "Voice handling"
component = "salaries"
per_contact = 3.0
channels = ["voice"]

[[costs]]
name = "E-mail handling"
component = "salaries"
per_contact = 5.0
channels = ["email"]
"""


def text_of(dom: str) -> str:
    """The text, the style sheet and tags dropped and whitespace collapsed."""
    dom = re.sub(r"<style>.*?</style>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def check_page(dom: str, now: datetime) -> None:
    text = text_of(dom)
    assert "Money in USD" in text
    assert "time zone Europe/Oslo" in text
    assert "All voice" in text and "queue sales" in text and "queue support" in text
    assert "All email" in text
    # Every window of voice is 3.00 USD in band; of e-mail 5.00 USD above band.
    assert re.search(r"All voice 3\.00 USD in band \d+ contacts?", text), text[:3000]
    assert re.search(r"All email 5\.00 USD above band \d+ contacts?", text), text[:3000]
    assert "AHT 5 min 00 s" in text and "AHT 2 min 00 s" in text
    svgs = re.findall(r"<svg\b.*?</svg>", dom, re.S)
    assert len(svgs) == 2  # one chart per channel
    for svg in svgs:
        marks = re.findall(r'<circle class="day (\w+)"', svg)
        assert len(marks) == 30  # one point per day
        assert marks.count("none") <= 1  # at most today, in its first half-minute
    email = next(s for s in svgs if 'data-channel="email"' in s)
    assert set(re.findall(r'<circle class="day (\w+)"', email)) <= {"above", "none"}
    voice = next(s for s in svgs if 'data-channel="voice"' in s)
    assert set(re.findall(r'<circle class="day (\w+)"', voice)) <= {"in", "none"}
    today = now.astimezone(ZONE).date()
    assert f"{(today - timedelta(days=29)):%a %d %b %Y}: 3.00 USD per contact, 1 contact " in voice
    # Sources: both up, a last read and a newest contact, 35 stored contacts (34 just after
    # midnight), none rejected.
    assert re.search(r"phones csv up \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \d{4}-\d\d-\d\d", text)
    assert re.search(r"helpdesk csv up .*? 3[45] 0", text)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "config.toml").write_text(CONFIG)
    write_exports(tmp_path, datetime.now(UTC))
    return tmp_path


def wait_for_figures(proc: ExporterProcess) -> None:
    def figures_shown() -> bool:
        return b"All voice" in http_get(proc.url + "/")[1]

    wait_for(figures_shown, timeout=60, what="figures on the landing page")


def test_landing_page_in_headless_chromium(workdir: Path, start_exporter: Callable[..., ExporterProcess]) -> None:
    chromium()
    proc = start_exporter(workdir / "config.toml")
    wait_for_figures(proc)
    now = datetime.now(UTC)
    dom = browse(proc.url + "/", workdir)
    check_page(dom, now)
    with urllib.request.urlopen(proc.url + "/", timeout=5) as response:
        csp = response.headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'none'")  # no script, nothing from another host
    shot = screenshot(proc.url + "/", workdir)
    assert shot.stat().st_size > 10_000  # a page with two charts, not a blank one
    print(f"screenshot: {shot}")


def test_landing_page_over_tls_with_basic_auth(workdir: Path, start_exporter: Callable[..., ExporterProcess]) -> None:
    chromium()
    pki = make_pki(workdir / "pki")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web = workdir / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki.server_cert}\n"
                   f"  key_file: {pki.server_key}\nbasic_auth_users:\n  viewer: '{hashed}'\n")
    proc = start_exporter(
        workdir / "config.toml", ["--web.config.file", str(web)], ready=False)
    url = f"https://viewer:{PASSWORD}@127.0.0.1:{proc.port}/"
    insecure = "--ignore-certificate-errors"  # the test's own CA, not in Chromium's store

    def figures_shown() -> bool:
        if proc.proc.poll() is not None:
            raise AssertionError(proc.log.read_text())
        return "All voice" in browse(url, workdir, insecure)

    wait_for(figures_shown, timeout=90, interval=1, what="figures over TLS with basic auth")
    check_page(browse(url, workdir, insecure), datetime.now(UTC))
    # without the password the browser gets the 401, not the figures
    denied = browse(f"https://127.0.0.1:{proc.port}/", workdir, insecure)
    assert "All voice" not in denied and "USD" not in denied
