"""`pip install octoroute-*.whl` as a user does it: the wheel carries every data
file, and the installed command checks a config and serves (issue 12, item 6)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import openai
import urllib3
from tests.integration.installed import REPO, Installed, ServerProcess, package_data_files, wheel_files

GATEWAY_LINE = re.compile(r"Gateway:\s+(http://127\.0\.0\.1:\d+)")
HTTP = urllib3.PoolManager()

MINIMAL = """\
[server]
host = "127.0.0.1"
port = 3000

[[models.fast]]
name = "qwen3:8b"
base_url = "http://127.0.0.1:11434/v1"

[routing]
strategy = "hybrid"
router_tier = "fast"
"""


def run(installed: Installed, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(installed.octoroute), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=installed.env(),
        check=False,
    )


def test_the_wheel_carries_every_data_file_of_the_package(installed):
    data = package_data_files()
    assert {"octoroute/py.typed", "octoroute/observe/dashboard.html"} <= data  # the walk finds them
    files = wheel_files(installed.wheel)
    assert data - files == set(), "package data missing from the wheel (pyproject [tool.setuptools.package-data])"
    entry_points = next(name for name in files if name.endswith(".dist-info/entry_points.txt"))
    assert entry_points.startswith("octoroute-")


def test_the_installed_command_runs_from_the_wheel_not_the_repository(installed, tmp_path):
    where = subprocess.run(
        [str(installed.python), "-c", "import octoroute; print(octoroute.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=installed.env(),
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.venv)
    version = run(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0
    assert version.stdout.startswith("octoroute ")


def test_the_installed_command_checks_a_config(installed, tmp_path):
    config = tmp_path / "octoroute.toml"
    config.write_text(MINIMAL)
    checked = run(installed, "check", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"ok {config}: 1 groups (fast)")
    config.write_text(MINIMAL.replace("port = 3000", 'port = "3000"'))
    refused = run(installed, "check", str(config), cwd=tmp_path)
    assert refused.returncode == 1
    assert "server.port" in refused.stderr


def test_the_installed_demo_serves_health_the_dashboard_and_a_routed_chat(installed, tmp_path):
    server = ServerProcess([str(installed.octoroute), "serve", "--demo", "--port", "0"], installed.env(), tmp_path)
    try:
        url = server.wait_for(GATEWAY_LINE).group(1)
        health = HTTP.request("GET", f"{url}/health")
        assert (health.status, health.data) == (200, b"OK")
        dashboard = HTTP.request("GET", f"{url}/dashboard")  # dashboard.html, read from the wheel's files
        assert dashboard.status == 200
        assert dashboard.headers["Content-Type"].startswith("text/html")
        assert dashboard.data == (REPO / "src/octoroute/observe/dashboard.html").read_bytes()
        with openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as client:
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": "hi there"}]
            )
        assert raw.headers["X-Octoroute-Strategy"] == "learned"  # learned_weights.json loaded from the wheel
        assert "answering: hi there" in (raw.parse().choices[0].message.content or "")
    finally:
        code = server.stop()
    assert code == 0, "".join(server.seen)
