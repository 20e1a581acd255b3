"""Finding, configuring and starting the LiteLLM proxy for the comparison runs.

LiteLLM is optional: when it cannot be found the benchmark says so and goes on.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from procs import Service, Services, free_port, wait_ready


def find_litellm(explicit: str | None) -> tuple[list[str] | None, str]:
    """The command that starts LiteLLM's proxy, and where it came from (or why there is none)."""
    if explicit:
        path = shutil.which(explicit) or explicit
        if not Path(path).is_file():
            return None, f"--litellm-bin {explicit} does not exist"
        return [path], f"{path} (--litellm-bin)"
    if importlib.util.find_spec("litellm") is not None:
        script = Path(sys.executable).with_name("litellm")
        if script.is_file():
            return [str(script)], str(script)
        code = "import sys; from litellm.proxy.proxy_cli import run_server; sys.exit(run_server())"
        return [sys.executable, "-c", code], "litellm module of this interpreter"
    return None, "not installed (pip install 'litellm[proxy]', or point --litellm-bin at a litellm executable)"


def litellm_version(command: list[str]) -> str:
    """Read from the interpreter the litellm script runs on (its shebang), without starting it."""
    python = sys.executable
    try:
        first = Path(command[0]).read_bytes()[:300].split(b"\n", 1)[0]
        if first.startswith(b"#!") and command[0] != sys.executable:
            python = first[2:].decode().strip().split()[0]
        code = "import importlib.metadata as m; print(m.version('litellm'))"
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError, UnicodeDecodeError, IndexError):
        return "unknown"


def litellm_config(upstream_port: int, model: str) -> str:
    """model "fast" -> the upstream; every optional feature that costs per request left off."""
    return f"""model_list:
  - model_name: fast
    litellm_params:
      model: openai/{model}
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: x
litellm_settings:
  telemetry: false
  set_verbose: false
  json_logs: false
  turn_off_message_logging: true
  drop_params: true
  request_timeout: 60
general_settings:
  dangerously_permit_weak_or_unset_master_key: true
  disable_spend_logs: true
  disable_error_logs: true
  disable_adding_master_key_hash_to_db: true
  disable_reset_budget: true
  background_health_checks: false
"""


def start_litellm(
    services: Services, command: list[str], work: Path, upstream_port: int, model: str
) -> tuple[Service, int]:
    port = free_port()
    config = work / "litellm.yaml"
    config.write_text(litellm_config(upstream_port, model))
    env = {k: v for k, v in os.environ.items() if k not in ("LITELLM_MASTER_KEY", "DATABASE_URL")}
    env.update(
        LITELLM_LOG="ERROR",  # also keeps uvicorn's per-request access log off
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch from GitHub at start-up
        LITELLM_TELEMETRY="False",
        LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY="true",  # no auth, as octoroute here
        DO_NOT_TRACK="1",
    )
    # --host: everything a benchmark starts listens on loopback only (LiteLLM binds every interface by default)
    argv = [*command, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    service = services.start("litellm", argv, env=env)
    wait_ready(service, port, "/health/liveliness", timeout=180)
    return service, port
