"""deploy/octoroute.service as systemd reads it: `systemd-analyze verify` (with its
ExecStart pointed at the wheel installed by the test) and the exposure score of
`systemd-analyze security` for its hardening options."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.integration.installed import DEPLOY

UNIT = DEPLOY / "octoroute.service"
INSTALL_PREFIX = "/opt/octoroute"
EXPOSURE = re.compile(r"Overall exposure level for octoroute\.service: (\d+\.\d)")


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and line[0] not in "#;[" and "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def unit_for(installed_prefix: Path, where: Path) -> Path:
    """The unit with its ExecStart under the test's install instead of /opt/octoroute."""
    text = UNIT.read_text()
    assert f"ExecStart={INSTALL_PREFIX}/bin/octoroute serve" in text
    target = where / "octoroute.service"
    target.write_text(text.replace(INSTALL_PREFIX, str(installed_prefix)))
    return target


def test_systemd_analyze_verifies_the_unit_against_the_installed_wheel(installed, tmp_path):
    verified = systemd_analyze("verify", str(unit_for(installed.venv, tmp_path)))
    assert verified.returncode == 0, verified.stderr
    assert "octoroute.service" not in verified.stderr  # no warning about this unit


def test_verify_would_catch_an_exec_start_that_is_not_installed(tmp_path):
    verified = systemd_analyze("verify", str(unit_for(tmp_path / "nowhere", tmp_path)))
    assert verified.returncode != 0
    assert "is not executable" in verified.stderr


def test_the_unit_is_hardened_as_systemd_rates_it(installed, tmp_path):
    unit = unit_for(installed.venv, tmp_path)
    rated = systemd_analyze("security", "--offline=yes", "--threshold=20", str(unit))  # tenths: at most 2.0
    exposure = EXPOSURE.search(rated.stdout)
    assert exposure, rated.stdout + rated.stderr
    assert rated.returncode == 0, f"exposure {exposure.group(1)} is above 2.0:\n{rated.stdout}"


def test_the_unit_runs_unprivileged_reloads_with_sighup_and_reads_secrets_from_a_file():
    unit = directives()
    assert unit["User"] == ["octoroute"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["ProtectHome"] == ["yes"]
    assert unit["PrivateTmp"] == ["yes"]
    assert unit["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["EnvironmentFile"] == ["-/etc/octoroute/octoroute.env"]
    assert "--config /etc/octoroute/octoroute.toml" in unit["ExecStart"][0]
