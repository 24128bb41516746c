"""config/systemd/contact-cost-exporter.service: what systemd-analyze says of it, and its command.

`systemd-analyze verify` checks every directive and that ExecStart is an executable; the
test points ExecStart at this test's own install (the unit names /opt/...). It prints
problems as warnings and still exits 0, so the output must be empty too; a copy with one
misspelt key proves that it would be reported.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, free_port, http_get, wait_for

UNIT = REPO / "config" / "systemd" / "contact-cost-exporter.service"
INSTALLED = "/opt/contact-cost-exporter/.venv/bin/contact-cost-exporter"
OWN_INSTALL = Path(sys.executable).parent / "contact-cost-exporter"


def systemd_analyze() -> str:
    """Debian's systemd-analyze (package systemd); in CI a missing one fails the test."""
    path = shutil.which("systemd-analyze")
    if path is None:
        message = "systemd-analyze is not installed (apt-get install systemd)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def directives(text: str) -> dict[str, list[str]]:
    """Key -> values of the unit, continuation lines joined, comments dropped."""
    found: dict[str, list[str]] = {}
    for line in re.sub(r"\s*\\\n\s*", " ", text).splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def own_copy(tmp_path: Path, text: str | None = None) -> Path:
    assert OWN_INSTALL.exists(), OWN_INSTALL
    copy = tmp_path / UNIT.name  # verify wants the unit's own name
    copy.write_text((text or UNIT.read_text()).replace(INSTALLED, str(OWN_INSTALL)))
    return copy


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([systemd_analyze(), "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_unit_has_the_service_settings_the_readme_promises() -> None:
    unit = directives(UNIT.read_text())
    assert unit["User"] == ["contact-cost"] and unit["Group"] == ["contact-cost"]
    assert unit["StateDirectory"] == ["contact-cost-exporter"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    # systemd counts death by SIGHUP as clean (no restart on-failure); a reload in the
    # interpreter's first milliseconds, before the handler exists, must still restart.
    assert unit["RestartForceExitStatus"] == ["SIGHUP"]
    assert unit["KillMode"] == ["mixed"]
    # the store lives in the state directory, the one writable place
    assert unit["Environment"] == [
        "CONTACT_COST_STORE=/var/lib/contact-cost-exporter/contact-cost.db"]
    assert unit["ExecStart"][0].startswith(INSTALLED + " --config.file=")


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    result = verify(own_copy(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_systemd_analyze_verify_reports_a_misspelt_key(tmp_path: Path) -> None:
    bad = UNIT.read_text().replace("ExecReload=", "ExecRelaod=")
    result = verify(own_copy(tmp_path, bad))
    assert "Unknown key 'ExecRelaod'" in result.stdout + result.stderr


def test_the_unit_in_the_installed_place_is_refused(tmp_path: Path) -> None:
    """Unchanged, the unit names /opt/...; verify checks that the command exists."""
    if Path(INSTALLED).exists():
        pytest.skip(f"{INSTALLED} exists on this machine")
    result = verify(UNIT)
    assert f"Command {INSTALLED} is not executable" in result.stdout + result.stderr


def test_exposure_is_low(tmp_path: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", str(own_copy(tmp_path))],
        capture_output=True, text=True, timeout=60, check=False)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert found, result.stdout[-2000:] + result.stderr
    assert float(found.group(1)) <= 2.0  # 1.7 at the time of writing: "OK"


def test_the_units_command_serves_reloads_on_sighup_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    """ExecStart as written (paths pointed here), the unit's environment, ExecReload's
    signal and KillMode=mixed's SIGTERM to the main process."""
    unit = directives(UNIT.read_text())
    config = tmp_path / "contact-cost.toml"
    config.write_text('currency = "EUR"\ntimezone = "UTC"\n')
    web = tmp_path / "web-config.yml"
    web.write_text("# plain HTTP in the test\n")
    port = free_port()
    argv = unit["ExecStart"][0].split()
    argv = [
        str(OWN_INSTALL) if arg == INSTALLED
        else arg.replace("/etc/contact-cost-exporter", str(tmp_path))
        .replace("0.0.0.0:9878", f"127.0.0.1:{port}")
        for arg in argv
    ]
    assert argv[1:] == [f"--config.file={config}", f"--web.config.file={web}",
                        f"--web.listen-address=127.0.0.1:{port}"]
    store = unit["Environment"][0].partition("=")[2].replace(
        "/var/lib/contact-cost-exporter", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    log = (tmp_path / "exporter.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACT_COST_")}
    proc = subprocess.Popen(argv, cwd=tmp_path / "state", stdout=log, stderr=subprocess.STDOUT,
                            env={**env, "CONTACT_COST_STORE": store})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_get(url + "/healthz", timeout=1)[0] == 200, timeout=60,
                 what="the exporter started by the unit's command")
        assert Path(store).exists()
        config.write_text('currency = "NOK"\ntimezone = "UTC"\n')
        proc.send_signal(signal.SIGHUP)  # ExecReload
        wait_for(lambda: b"Money in <strong>NOK</strong>" in http_get(url + "/")[1],
                 timeout=30, what="the reloaded currency on the landing page")
        proc.send_signal(signal.SIGTERM)  # systemctl stop, KillMode=mixed
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
