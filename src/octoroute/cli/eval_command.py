"""`octoroute eval`, the command: checks the arguments, builds the report
(`evaluate`), writes the plot (`eval_plot`) and prints the table or JSON
(`eval_report`). Every problem is one line on stderr and exit status 2."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from octoroute.cli.evaluate import EXIT_PROBLEM, EvalOptions, EvalProblem, evaluate_data, evaluate_log


@dataclass(frozen=True, slots=True)
class EvalArgs:
    data: Path | None
    log: Path | None
    labels: Path | None
    config: Path | None
    strategy: str | None
    plot: Path | None
    options: EvalOptions
    as_json: bool


def run_eval(args: EvalArgs, env: Mapping[str, str]) -> int:
    """Evaluate, print the table (or JSON), write the plot; 2 with one line on stderr on any problem."""
    from rich.console import Console

    from octoroute.cli import eval_plot, eval_report

    err = Console(stderr=True, soft_wrap=True)
    try:
        _check_args(args)
        if args.plot is not None:
            eval_plot.check_plotting()
        if args.log is not None and args.labels is not None:
            report = evaluate_log(args.log, args.labels, args.options)
        else:
            report = evaluate_data(_given(args.data), args.config, args.strategy, args.options, env)
        if args.plot is not None:
            eval_plot.write_plot(report, args.plot)
    except EvalProblem as exc:
        err.print(f"octoroute eval: {exc}", markup=False, highlight=False)
        return EXIT_PROBLEM
    if args.as_json:
        print(orjson.dumps(eval_report.report_json(report, str(args.plot) if args.plot else None)).decode())
    else:
        eval_report.render_table(report, Console(soft_wrap=False))
        if args.plot is not None:
            Console().print(f"plot written to {args.plot}", highlight=False)
    return 0


def _check_args(args: EvalArgs) -> None:
    if args.data is not None and (args.log is not None or args.labels is not None):
        raise EvalProblem("give DATA.jsonl, or --log with --labels, not both")
    if args.data is None and (args.log is None or args.labels is None):
        raise EvalProblem("give DATA.jsonl, or --log events.jsonl with --labels labels.jsonl")
    if args.log is not None and (args.config is not None or args.strategy is not None):
        raise EvalProblem("--config and --strategy score DATA.jsonl; a log already carries its scores")


def _given(path: Path | None) -> Path:
    if path is None:
        raise EvalProblem("give DATA.jsonl, or --log events.jsonl with --labels labels.jsonl")
    return path
