"""`octoroute check` and `octoroute route [--explain]`: config validation and dry-run routing."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from octoroute.cli.score import load_routing_config, offline_scorer
from octoroute.config import Config, load_config
from octoroute.config.models import JUDGE_STRATEGIES
from octoroute.config.topology import build_topology, config_warnings, default_tier
from octoroute.config.weightsfile import read_weights_file
from octoroute.core.errors import ConfigError
from octoroute.core.types import Features, Importance, JudgeFailure, Strategy, TaskType, Tier
from octoroute.routing.features import extract_features
from octoroute.routing.router import to_decision
from octoroute.routing.rules import evaluate_rules
from octoroute.routing.scoring import JudgeScorer, Scored
from octoroute.routing.tool import ROUTE_FUNCTION
from octoroute.service import build_capabilities, capability_warnings, settle_decision


def run_check(path: Path, env: Mapping[str, str]) -> int:
    out, err = Console(), Console(stderr=True)
    try:
        config = load_config(path, env)
    except ConfigError as exc:
        print_problems(err, path, exc)
        return 1
    endpoints = sum(len(eps) for eps in config.models.values())
    shadow = config.routing.shadow
    shadowed = ""
    if shadow is not None:
        asks = " (asks the router model)" if shadow.allow_judge and shadow.strategy in JUDGE_STRATEGIES else ""
        own = shadow.learned_weights
        model = f" with learned weights {_weights_named(own)}" if own else ""
        shadowed = f", shadow {shadow.strategy}{asks}{model}"
    weights = config.routing.learned_weights
    learned = f", learned weights {_weights_named(weights)}" if weights else ""
    out.print(
        f"[green]ok[/] {path}: {len(config.models)} groups ({', '.join(config.models)}), "
        f"{endpoints} endpoints, strategy {config.routing.strategy}{learned}{shadowed}",
        highlight=False,
    )
    topology = build_topology(config, env)
    capabilities = capability_warnings(config, topology, build_capabilities(config))
    for warning in (*config_warnings(config, topology), *capabilities):
        out.print(f"[yellow]warning[/] {escape(warning)}", highlight=False)
    return 0


def _weights_named(path: str) -> str:
    """'w.json (trained-3f2a9c1e)': a weights file the config check has read, with its version."""
    return f"{path} ({read_weights_file(path)[1].version})"


def print_problems(console: Console, path: Path, exc: ConfigError, consequence: str = "") -> None:
    """Every config problem on its own line, with its key path."""
    console.print(f"[bold red]{path}: {len(exc.problems)} problem(s){consequence}[/]")
    for problem in exc.problems:
        console.print(f"  {problem}", markup=False, highlight=False)


def run_route(
    prompt: str,
    importance: str | None,
    task_type: str | None,
    config_path: Path | None,
    env: Mapping[str, str],
    *,
    explain: bool = False,
) -> int:
    err = Console(stderr=True)
    try:
        config = load_routing_config(config_path, env)
    except ConfigError as exc:
        err.print(f"[bold red]config problems:[/]\n{exc}", markup=True, highlight=False)
        return 1
    features = extract_features(
        [{"role": "user", "content": prompt}],
        tools_present=False,
        importance=Importance(importance) if importance else config.routing.default_importance,
        task_type=TaskType(task_type) if task_type else None,
    )
    _print_decision(config, features, prompt, explain)
    return 0


def _print_decision(config: Config, features: Features, prompt: str, explain: bool) -> None:
    default = default_tier(config)
    strategy = config.routing.strategy
    table = Table(show_header=False, box=None)
    rule_step = evaluate_rules(features) if strategy is Strategy.HYBRID else None
    unasked = tool_fallback(config, features, default) if strategy is Strategy.TOOL else None
    if unasked is None and (
        strategy in (Strategy.LLM, Strategy.TOOL) or (strategy is Strategy.HYBRID and rule_step is None)
    ):
        how = f"a call to {ROUTE_FUNCTION}" if strategy is Strategy.TOOL else "the LLM router"
        table.add_row("tier", f"decided by {how} on '{config.routing.router_tier}'")
        table.add_row("strategy", strategy.value)
        fallback = "the rules, then the default tier" if strategy is not Strategy.HYBRID else "the default tier"
        asks = f"to call {ROUTE_FUNCTION}" if strategy is Strategy.TOOL else "for a tier"
        table.add_row("reason", f"serve would ask the router model {asks}; if it fails: {fallback} '{default}'")
        scored = offline_scorer(config).score(features, prompt) if explain else None
        if scored is not None:
            table.add_row("offline score", f"{scored.score:.3f} (the learned scorer, as `octoroute score` reports)")
    else:
        scored = unasked or offline_scorer(config).score(features, prompt)
        decision = settle_decision(to_decision(scored), config.models, default)
        table.add_row("tier", decision.group)
        table.add_row("strategy", decision.strategy.value)
        table.add_row("score", f"{scored.score:.3f}")
        table.add_row(
            "reason", f"{decision.reason.value} ({decision.detail})" if decision.detail else decision.reason.value
        )
    if explain and scored is not None:
        for line in explanation(scored):
            table.add_row(*line)
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
    Console().print(table, highlight=False)


def tool_fallback(config: Config, features: Features, default: Tier) -> Scored | None:
    """`tool`'s decision when no router-tier model can call tools by the capability
    table: `serve` asks no model then, so the fallback is known offline; else None."""
    capabilities = build_capabilities(config)
    router = config.models.get(config.routing.router_tier, [])
    if any(capabilities.lookup(ep.name).tools for ep in router):
        return None

    async def unsupported(_features: Features, _text: str) -> JudgeFailure:
        return JudgeFailure.TOOLS_UNSUPPORTED

    return asyncio.run(JudgeScorer(Strategy.TOOL, unsupported, default).score(features, ""))


def explanation(scored: Scored) -> list[tuple[str, str]]:
    """`route --explain`: what moved the score and which cut point it crossed."""
    rows: list[tuple[str, str]] = []
    if scored.cut:
        rows.append(("cut point", scored.cut))
    for i, (name, effect) in enumerate(scored.factors):
        rows.append(("moved by" if i == 0 else "", f"{effect:+.3f}  {name}"))
    if not scored.factors and scored.strategy is not Strategy.LEARNED:
        rows.append(
            ("cut point", f"none: {scored.strategy.value} picks a tier; its nominal score is {scored.score:.1f}")
        )
    return rows
