"""deploy/octoroute.service as systemd reads it: `systemd-analyze verify` (with its
ExecStart pointed at the wheel installed by the test), the exposure score of
`systemd-analyze security` for its hardening options, and the installed gateway
serving under the kernel's write-xor-execute switch (MemoryDenyWriteExecute)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import openai
from tests.integration.installed import DEPLOY, ServerProcess

GATEWAY_LINE = re.compile(r"Gateway:\s+(http://127\.0\.0\.1:\d+)")

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


# The unit's MemoryDenyWriteExecute=yes, approximated without systemd: the kernel's own
# per-process switch (prctl PR_SET_MDWE, Linux 6.3+, kept across execve) refuses memory that
# is writable and executable, or that becomes executable, just as systemd's seccomp filter does.
UNDER_MDWE = (
    "import ctypes, os, sys\n"
    "if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:\n"  # PR_SET_MDWE, REFUSE_EXEC_GAIN
    "    sys.exit('prctl(PR_SET_MDWE) failed: ' + os.strerror(ctypes.get_errno()))\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)
WRITE_EXECUTE = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"


def test_octoroute_serves_under_memory_deny_write_execute(installed, tmp_path):
    python = str(installed.python)
    refused = subprocess.run(
        [python, "-c", UNDER_MDWE, python, "-c", WRITE_EXECUTE], capture_output=True, text=True, check=False
    )
    assert refused.returncode != 0, "the switch is off: this check would prove nothing"
    assert "PermissionError" in refused.stderr or "Operation not permitted" in refused.stderr, refused.stderr
    argv = [python, "-c", UNDER_MDWE, str(installed.octoroute), "serve", "--demo", "--port", "0"]
    server = ServerProcess(argv, installed.env(), tmp_path)
    try:
        url = server.wait_for(GATEWAY_LINE).group(1)
        with openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as client:
            whole = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi there"}])
            streamed = client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "hi there"}], stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        assert "answering: hi there" in (whole.choices[0].message.content or "")
        assert "answering: hi there" in text
    finally:
        code = server.stop()
    assert code == 0, "".join(server.seen)
