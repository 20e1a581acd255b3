"""deploy/Dockerfile without a Docker daemon (CI has none, and no registry to pull
the base image from): hadolint, what its COPY takes from the build context, and
its ENTRYPOINT + CMD and HEALTHCHECK run on this host against the installed
wheel. deploy/smoke-image.sh builds and runs the image where a daemon is up."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import urllib3
from tests.integration.installed import (
    DOCKERFILE,
    REPO,
    Installed,
    Instruction,
    ServerProcess,
    copy_sources,
    dockerfile_instructions,
    stages,
)

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")
CONFIG_IN_IMAGE = "/etc/octoroute/octoroute.toml"
HTTP = urllib3.PoolManager()

CONFIG = """\
[[models.fast]]
name = "m"
base_url = "http://127.0.0.1:9/v1"
"""


def final_stage() -> list[Instruction]:
    return stages(dockerfile_instructions())[-1]


def one(stage: list[Instruction], keyword: str) -> Instruction:
    (found,) = [i for i in stage if i.keyword == keyword]
    return found


def ignored_by_dockerignore(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    patterns = [
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatchcase(p, glob) or (glob.startswith("**/") and fnmatch.fnmatchcase(p, glob[3:]))
               for p in prefixes):  # fmt: skip
            ignored = not negated
    return ignored


def test_hadolint_passes_the_dockerfile():
    hadolint = Path(sys.executable).parent / "hadolint"
    linted = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_what_the_build_stage_copies_is_in_the_build_context():
    sources = copy_sources(stages(dockerfile_instructions())[0])
    assert sources == ["pyproject.toml", "README.md", "src"]
    for source in sources:
        assert (REPO / source).exists(), source
        assert not ignored_by_dockerignore(source), f".dockerignore leaves out {source}"
    for path in ("src/octoroute/observe/dashboard.html", "src/octoroute/fleet/capabilities.toml"):
        assert not ignored_by_dockerignore(path), path
    for path in ("tests/conftest.py", ".venv/bin/python", "src/octoroute/__pycache__/x.pyc", ".git/HEAD"):
        assert ignored_by_dockerignore(path), f"{path} would be sent to the daemon"


def test_the_image_runs_as_a_non_root_user_and_exposes_the_port_it_serves():
    stage = final_stage()
    user = one(stage, "USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), user  # numeric: Kubernetes runAsNonRoot can verify it
    assert gid.isdigit(), user
    assert min(int(uid), int(gid)) > 0, user
    command = one(stage, "CMD").exec_form()
    port = command[command.index("--port") + 1]
    assert one(stage, "EXPOSE").args == port
    assert f"127.0.0.1:{port}/health" in one(stage, "HEALTHCHECK").args
    assert command[command.index("--config") + 1] == CONFIG_IN_IMAGE


def in_this_test(argv: list[str], config: Path) -> list[str]:
    """The image's command with the host's paths: the mounted config, loopback, any free port."""
    swapped = {CONFIG_IN_IMAGE: str(config), "0.0.0.0": "127.0.0.1", "3000": "0"}
    return [swapped.get(arg, arg) for arg in argv]


def run_healthcheck(installed: Installed, port: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    healthcheck = one(final_stage(), "HEALTHCHECK").exec_form()
    assert healthcheck[0] == "python"  # no curl in the slim image; PATH finds the venv's python
    argv = [arg.replace("127.0.0.1:3000", f"127.0.0.1:{port}") for arg in healthcheck]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=installed.env(), timeout=30, check=False)


def test_the_image_command_serves_the_mounted_config_and_its_healthcheck_sees_it(installed, tmp_path):
    config = tmp_path / "octoroute.toml"
    config.write_text(CONFIG)
    stage = final_stage()
    argv = one(stage, "ENTRYPOINT").exec_form() + one(stage, "CMD").exec_form()
    argv = in_this_test(argv, config)
    assert argv[0] == "octoroute"
    server = ServerProcess([str(installed.venv / "bin" / argv[0]), *argv[1:]], installed.env(), tmp_path)
    try:
        url, port = server.wait_for(LISTENING).groups()
        healthy = run_healthcheck(installed, port, tmp_path)
        assert healthy.returncode == 0, healthy.stderr
        models = HTTP.request("GET", f"{url}/models").json()
        assert [(row["model"], row["base_url"]) for row in models["endpoints"]] == [("m", "http://127.0.0.1:9/v1")]
    finally:
        code = server.stop()
    assert code == 0, "".join(server.seen)
    down = run_healthcheck(installed, port, tmp_path)
    assert down.returncode != 0  # the check fails once the gateway is gone
