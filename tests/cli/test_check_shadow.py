"""`octoroute check` with `[routing.shadow]`: the candidate named when the config is
good, every shadow problem with its key path when it is not."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_cli import octoroute

MODELS = """
[[models.fast]]
name = "small"
base_url = "http://127.0.0.1:1/v1"

[[models.deep]]
name = "big"
base_url = "http://127.0.0.1:2/v1"
"""


def config_file(tmp_path: Path, routing: str) -> Path:
    path = tmp_path / "octoroute.toml"
    path.write_text(routing + MODELS)
    return path


def test_check_names_the_shadow_candidate(tmp_path):
    path = config_file(
        tmp_path, '[routing]\nstrategy = "rule"\n\n[routing.shadow]\nstrategy = "llm"\nallow_judge = true\n'
    )
    result = octoroute("check", str(path))
    assert result.returncode == 0, result.stderr
    assert "strategy rule, shadow llm (asks the router model)" in result.stdout
    offline = config_file(tmp_path, '[routing]\nstrategy = "rule"\n\n[routing.shadow]\nstrategy = "hybrid"\n')
    assert "strategy rule, shadow hybrid\n" in octoroute("check", str(offline)).stdout
    plain = config_file(tmp_path, '[routing]\nstrategy = "rule"\n')
    assert octoroute("check", str(plain)).stdout.rstrip().endswith("2 endpoints, strategy rule")


def test_check_reports_shadow_problems(tmp_path):
    routing = (
        '[routing]\nstrategy = "rule"\nrouter_tier = "balanced"\n\n'
        '[routing.shadow]\nstrategy = "rule"\nsample = 2\nmax_pending = 0\n'
    )
    result = octoroute("check", str(config_file(tmp_path, routing)))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert "routing.shadow.sample: must be <= 1" in [line.strip() for line in lines]
    assert "routing.shadow.max_pending: must be >= 1" in [line.strip() for line in lines]
    same = config_file(tmp_path, routing.replace("sample = 2\nmax_pending = 0\n", ""))
    result = octoroute("check", str(same))
    assert result.returncode == 1
    assert "routing.shadow.strategy: 'rule' is already the live strategy; shadow a different one" in result.stderr
    judge = config_file(
        tmp_path,
        routing.replace('strategy = "rule"\nsample', 'strategy = "llm"\nallow_judge = true\nsample').replace(
            "sample = 2\nmax_pending = 0\n", ""
        ),
    )
    result = octoroute("check", str(judge))
    assert result.returncode == 1
    assert (
        "routing.router_tier: 'balanced' has no endpoints under [models], and the shadow strategy 'llm'"
        in result.stderr
    )
