"""Argument parsing and dispatch for `octoroute`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from octoroute import __version__
from octoroute.core.types import Importance, Strategy, TaskType

DEFAULT_CONFIG = Path("octoroute.toml")
OFFLINE_STRATEGIES = [s.value for s in Strategy if s is not Strategy.DIRECT]


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (not the usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="octoroute", description="A fast gateway in front of self-hosted LLM servers.")
    parser.add_argument("--version", action="version", version=f"octoroute {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, help=f"TOML config (default: ./{DEFAULT_CONFIG} if present)")
    serve.add_argument("--host", type=_host, help="bind address (overrides server.host)")
    serve.add_argument("--port", type=_port, help="port, 1-65535 or 0 for any free one (overrides server.port)")
    serve.add_argument(
        "--workers", type=_positive, default=1, metavar="N", help="worker processes sharing the port (default 1)"
    )
    serve.add_argument("--demo", action="store_true", help="run against a built-in simulated fleet (no LLM needed)")
    serve.add_argument("--watch", action="store_true", help="reload the config when its file changes (as SIGHUP does)")
    serve.add_argument(
        "--watch-interval",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="with --watch: seconds between looks at the file (default 1)",
    )

    check = sub.add_parser("check", help="validate a config file and list every problem")
    check.add_argument("path", type=Path)

    doctor = sub.add_parser(
        "doctor",
        help="probe every endpoint live and check the environment; the fix for each problem",
        description="Asks each endpoint's server for its models, a tiny chat (plain and streamed), a forced tool "
        "call, its context window and slots; checks API keys, .env files and the bind address. Exit 0 when "
        "nothing failed, 1 otherwise.",
    )
    doctor.add_argument("--config", type=Path, help=f"TOML config (default: ./{DEFAULT_CONFIG} if present)")
    doctor.add_argument(
        "--timeout", type=_seconds, default=30.0, help="seconds each probe request may take (default 30)"
    )

    init = sub.add_parser(
        "init",
        help="find LLM servers on this machine's loopback and write a config for them",
        description="Asks 127.0.0.1 on the default ports of Ollama (11434), LM Studio (1234), llama.cpp (8080) "
        "and vLLM (8000), plus every --port, for their models; assigns chat models tiers by size, puts "
        "embedding models in a group 'embed' that serves embeddings only, and writes a commented config. "
        "Exit 1 when no server with a chat model answers.",
    )
    init.add_argument("--port", type=_port, action="append", default=[], help="another port to ask (repeatable)")
    init.add_argument("--no-default-ports", action="store_true", help="ask only the --port ports")
    init.add_argument("--output", "-o", type=Path, help="write the config here (default: standard output)")
    init.add_argument("--force", action="store_true", help="overwrite --output if it exists")

    route = sub.add_parser("route", help="show where a prompt would be routed, without calling any model")
    route.add_argument("prompt")
    route.add_argument("--importance", choices=[i.value for i in Importance])
    route.add_argument("--task-type", choices=[t.value for t in TaskType])
    route.add_argument("--config", type=Path, help=f"TOML config (default: ./{DEFAULT_CONFIG} if present)")
    route.add_argument("--explain", action="store_true", help="show the score, what moved it and the cut point crossed")

    score = sub.add_parser(
        "score",
        help="score JSONL prompts from stdin, offline: one {score, tier, reason} line per input line",
        description='Reads JSON lines with "prompt" (optional "importance", "task_type") on stdin and writes '
        '{"score", "tier", "reason"} per line, in order. Never calls a model.',
    )
    score.add_argument("--config", type=Path, help="TOML config whose [routing] to use (default: the defaults)")

    stats = sub.add_parser("stats", help="live view of a running gateway (from its /metrics.json)")
    stats.add_argument("--url", help="gateway base URL or its /metrics.json URL (default: http://127.0.0.1:3000)")
    stats.add_argument("--interval", type=_seconds, default=2.0, help="seconds between refreshes (default 2)")
    stats.add_argument("--once", action="store_true", help="print one snapshot and exit")
    stats.add_argument("--token", help="metrics token (default: $OCTOROUTE_METRICS_TOKEN)")

    keys = sub.add_parser(
        "keys",
        help="client API keys for [auth]: create (prints the key once), list, revoke",
        description="Keys live hashed in the keys file (auth.keys_file): give --file, or --config to read its path.",
    )
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("name", nargs="?", help="the key's name (create, revoke)")
    keys.add_argument("--file", type=Path, help="the keys file (default: auth.keys_file of --config)")
    keys.add_argument("--config", type=Path, help="TOML config: its auth.keys_file, and per-key permissions for list")

    evaluate = sub.add_parser(
        "eval",
        help="routing quality (RouteLLM's APGR, CPT) of a strategy on labelled prompts, or of a decision log",
        description="Scores DATA.jsonl (lines with prompt, weak_score, strong_score) offline and reports APGR, "
        "CPT(50%%), CPT(80%%) against the length and random baselines; or evaluates an event file's scores "
        "with --log and --labels.",
    )
    evaluate.add_argument("data", nargs="?", type=Path, metavar="DATA.jsonl")
    evaluate.add_argument("--config", type=Path, help="TOML config whose [routing] scores DATA (default: the defaults)")
    evaluate.add_argument("--strategy", choices=OFFLINE_STRATEGIES, help="score with this strategy instead")
    evaluate.add_argument("--log", type=Path, metavar="EVENTS.jsonl", help="octoroute's event file to evaluate")
    evaluate.add_argument("--labels", type=Path, metavar="LABELS.jsonl", help="request_id, weak_score, strong_score")
    evaluate.add_argument("--plot", type=Path, metavar="OUT.png", help="write the call-performance curve as a PNG")
    _add_sampling(evaluate, "seed of the random baseline and bootstrap (default 0)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of the table")

    train = sub.add_parser(
        "train",
        help="fit the learned scorer on your own labelled prompts; writes a file for [routing] learned_weights",
        description="Reads DATA.jsonl (lines with prompt, weak_score, strong_score, as for eval) or an event "
        "file recorded with log_content and its labels (--log, --labels), reports the "
        "cross-validated APGR of the model it fits beside the bundled default and the length baseline, then "
        "fits on every prompt and writes the weights. Needs the train extra: pip install 'octoroute[train]'.",
    )
    train.add_argument("data", nargs="?", type=Path, metavar="DATA.jsonl")
    train.add_argument(
        "--log", type=Path, metavar="EVENTS.jsonl", help="octoroute's event file, recorded with log_content = true"
    )
    train.add_argument("--labels", type=Path, metavar="LABELS.jsonl", help="request_id, weak_score, strong_score")
    train.add_argument("--out", "-o", type=Path, required=True, metavar="WEIGHTS.json", help="the weights file")
    train.add_argument("--force", action="store_true", help="replace --out if it exists")
    train.add_argument("--folds", type=_positive, default=5, metavar="K", help="cross-validation folds (default 5)")
    train.add_argument(
        "--terms", action="store_true", help="also fit word terms (unigrams, bigrams), not only counts and length"
    )
    train.add_argument(
        "--text-weight",
        type=_weight,
        metavar="W",
        help="the text part's spread relative to the length prior (default 1; 0: length alone)",
    )
    train.add_argument(
        "--select",
        action="store_true",
        help="choose --terms and --text-weight (0.5, 1, 2, 4) by cross-validation; the table's row is nested",
    )
    train.add_argument("--name", help="the model's version string (default: trained-<hash of DATA>)")
    _add_sampling(train, "seed of the folds, random baseline and bootstrap (default 0)")
    train.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return parser


def _add_sampling(parser: argparse.ArgumentParser, seed_help: str) -> None:
    """The random baseline's and the paired bootstrap's options (`eval`, `train`)."""
    parser.add_argument(
        "--bootstrap", type=_count, default=1000, metavar="N", help="paired-bootstrap resamples (default 1000; 0: none)"
    )
    parser.add_argument(
        "--draws", type=_positive, default=1000, metavar="N", help="random-baseline draws (default 1000)"
    )
    parser.add_argument("--seed", type=_count, default=0, help=seed_help)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        from octoroute.cli.commands import run_check

        return run_check(args.path, os.environ)
    if args.command == "doctor":
        from octoroute.cli.doctor import run_doctor

        return run_doctor(args.config or _default_config(), os.environ, args.timeout)
    if args.command == "init":
        from octoroute.cli.init import run_init

        if args.no_default_ports and not args.port:
            print("octoroute init: --no-default-ports needs at least one --port", file=sys.stderr)
            return 2
        return run_init(
            args.port, args.output, args.force, sys.stdout, sys.stderr, default_ports=not args.no_default_ports
        )
    if args.command == "route":
        from octoroute.cli.commands import run_route

        return run_route(
            args.prompt,
            args.importance,
            args.task_type,
            args.config or _default_config(),
            os.environ,
            explain=args.explain,
        )
    if args.command == "score":
        from octoroute.cli.score import run_score

        return run_score(args.config, os.environ, sys.stdin.buffer, sys.stdout.buffer, sys.stderr)
    if args.command == "stats":
        from octoroute.cli.stats import run_stats

        return run_stats(args.url, args.token, args.interval, args.once, os.environ)
    if args.command == "keys":
        from octoroute.cli.keys import run_keys

        if args.action != "list" and not args.name:
            print(f"octoroute keys {args.action}: give the key's NAME", file=sys.stderr)
            return 2
        return run_keys(args.action, args.name, args.file, args.config, os.environ, sys.stdout)
    if args.command == "eval":
        from octoroute.cli.eval_command import EvalArgs, run_eval
        from octoroute.cli.evaluate import EvalOptions

        options = EvalOptions(draws=args.draws, resamples=args.bootstrap, seed=args.seed)
        return run_eval(
            EvalArgs(args.data, args.log, args.labels, args.config, args.strategy, args.plot, options, args.json),
            os.environ,
        )
    if args.command == "train":
        from octoroute.cli.evaluate import EvalOptions
        from octoroute.cli.train import TrainArgs, run_train

        options = EvalOptions(draws=args.draws, resamples=args.bootstrap, seed=args.seed)
        return run_train(
            TrainArgs(
                args.data,
                args.log,
                args.labels,
                args.out,
                args.force,
                args.folds,
                args.terms,
                args.text_weight,
                args.name,
                options,
                args.json,
                args.select,
            ),
            os.environ,
        )
    from octoroute.cli.serve import run_serve

    return run_serve(
        config_path=args.config or _default_config(),
        host=args.host,
        port=args.port,
        workers=args.workers,
        demo=args.demo,
        env=os.environ,
        watch_interval=args.watch_interval if args.watch else None,
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return value


def _weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be from 0 to 100: {value:g}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a port is a whole number from 1 to 65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a whole number from 1 to 65535 (0: any free port), got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 86400 seconds, got {text}")
    return value


def _host(text: str) -> str:
    if not text.strip() or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"not a host name or address: {text!r}")
    return text


def _default_config() -> Path | None:
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
