"""`octoroute check` and `octoroute route`: config validation and dry-run routing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.table import Table

from octoroute.config import Config, load_config, parse_config
from octoroute.config.topology import build_topology, config_warnings, default_tier
from octoroute.core.errors import ConfigError
from octoroute.core.types import Features, Importance, Strategy, TaskType
from octoroute.routing.features import extract_features
from octoroute.routing.router import Router
from octoroute.service import settle_decision

_ROUTE_ONLY = {
    "models": {
        "fast": [{"name": "fast", "base_url": "http://127.0.0.1:1/v1"}],
        "balanced": [{"name": "balanced", "base_url": "http://127.0.0.1:1/v1"}],
        "deep": [{"name": "deep", "base_url": "http://127.0.0.1:1/v1"}],
    }
}


def run_check(path: Path, env: Mapping[str, str]) -> int:
    out, err = Console(), Console(stderr=True)
    try:
        config = load_config(path, env)
    except ConfigError as exc:
        print_problems(err, path, exc)
        return 1
    endpoints = sum(len(eps) for eps in config.models.values())
    out.print(
        f"[green]ok[/] {path}: {len(config.models)} groups ({', '.join(config.models)}), "
        f"{endpoints} endpoints, strategy {config.routing.strategy}"
    )
    for warning in config_warnings(config, build_topology(config, env)):
        out.print(f"[yellow]warning[/] {warning}", highlight=False)
    return 0


def print_problems(console: Console, path: Path, exc: ConfigError, consequence: str = "") -> None:
    """Every config problem on its own line, with its key path."""
    console.print(f"[bold red]{path}: {len(exc.problems)} problem(s){consequence}[/]")
    for problem in exc.problems:
        console.print(f"  {problem}", markup=False, highlight=False)


def run_route(
    prompt: str, importance: str | None, task_type: str | None, config_path: Path | None, env: Mapping[str, str]
) -> int:
    err = Console(stderr=True)
    try:
        config = load_config(config_path, env) if config_path else parse_config(_ROUTE_ONLY, env)
    except ConfigError as exc:
        err.print(f"[bold red]config problems:[/]\n{exc}", markup=True, highlight=False)
        return 1
    features = extract_features(
        [{"role": "user", "content": prompt}],
        tools_present=False,
        importance=Importance(importance) if importance else config.routing.default_importance,
        task_type=TaskType(task_type) if task_type else None,
    )
    _print_decision(config, features)
    return 0


def _print_decision(config: Config, features: Features) -> None:
    default = default_tier(config)
    router = Router(config.routing.strategy, default, None)
    decision = router.explain(features)
    if decision is not None:
        decision = settle_decision(decision, config.models, default)
    table = Table(show_header=False, box=None)
    if decision is None:
        table.add_row("tier", f"decided by the LLM router on '{config.routing.router_tier}'")
        table.add_row("strategy", str(config.routing.strategy))
        if config.routing.strategy is Strategy.LLM:
            fallback = "the rules, then the default tier"
        else:
            fallback = f"the default tier '{default}'"
        table.add_row("reason", f"serve would ask the router model; if it fails: {fallback}")
    else:
        table.add_row("tier", decision.group)
        table.add_row("strategy", decision.strategy.value)
        table.add_row(
            "reason", f"{decision.reason.value} ({decision.detail})" if decision.detail else decision.reason.value
        )
    for name in (
        "token_estimate",
        "task_type",
        "task_type_explicit",
        "importance",
        "code_fences",
        "code_lines",
        "message_count",
        "has_tools",
        "has_images",
    ):
        value = getattr(features, name)
        table.add_row(name, str(value.value if hasattr(value, "value") else value))
    Console().print(table)
