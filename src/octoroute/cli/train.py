"""`octoroute train`: fit the learned scorer on your own labelled prompts.

Reads DATA.jsonl in `octoroute eval`'s format (`prompt`, `weak_score`,
`strong_score`), or an event file recorded with `log_content` and its labels
(`--log`, `--labels`, as `eval` takes them), measures the settings by k-fold cross-validation (every prompt
scored by a model that never saw it, calibrated as a served file is), prints
`octoroute eval`'s table for that model beside the bundled default and the
length baseline, then fits on everything and writes a weights file for
`[routing] learned_weights`. Its reference distribution is the data's own, so
`tier_shares` cut your traffic in the shares asked for.

The fit is the bundled model's (`routing.fitting`): ridge regression on the
counts and densities with length as an explicit prior, optionally word terms.
Needs the `train` extra; every problem is one line on stderr and exit status 2.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from random import Random
from typing import TYPE_CHECKING

import orjson
from rich.console import Console

from octoroute.cli.evaluate import (
    EXIT_PROBLEM,
    EvalOptions,
    EvalProblem,
    Report,
    Subject,
    build_report,
    log_prompts,
    read_data,
)
from octoroute.core.errors import EvaluationError
from octoroute.routing.evaluation import Labels, PairedComparison, compare_paired, length_score
from octoroute.routing.learned import LearnedModel
from octoroute.routing.scoring import bundled_model

if TYPE_CHECKING:  # the module imports numpy and scikit-learn: only when training
    from octoroute.routing.fitting import Settings

TRAIN_EXTRA_HINT = "pip install 'octoroute[train]'"
SELECT_TEXT_WEIGHTS = (0.5, 1.0, 2.0, 4.0)  # with and without word terms: eight settings
SELECT_WIDEN = 4  # a best setting at weight 4 is tried at 8, 16, 32, 64 while it improves
MIN_PER_FOLD = 10  # fewer held-out prompts per fold make the out-of-fold curve meaningless


@dataclass(frozen=True, slots=True)
class TrainArgs:
    data: Path | None  # DATA.jsonl, or:
    log: Path | None  # an event file (with log_content) and
    labels: Path | None  # its labels, as for `octoroute eval --log --labels`
    out: Path
    force: bool
    folds: int
    terms: bool
    text_weight: float | None  # None: 1, or chosen with `select`
    name: str | None
    options: EvalOptions
    as_json: bool = False
    select: bool = False  # choose terms and text weight by (nested) cross-validation


@dataclass(frozen=True, slots=True)
class Trained:
    report: Report
    payload: bytes
    version: str
    terms: int
    bundled: str  # the bundled model's version
    versus_bundled: PairedComparison | None  # trained minus bundled, when the bootstrap ran
    settings: Settings  # what the written file was fitted with
    selection: tuple[tuple[Settings, float], ...] = ()  # with --select: each setting's cross-validated APGR


def train(args: TrainArgs) -> Trained:
    """Cross-validate, fit on everything, and return the report and the weights file's bytes."""
    try:
        from octoroute.routing import fitting
    except ImportError as exc:
        raise EvalProblem(
            f"needs numpy, scipy and scikit-learn ({exc.name or exc} is missing): {TRAIN_EXTRA_HINT}"
        ) from None
    if args.out.exists() and not args.force:
        raise EvalProblem(f"{args.out} exists; give --force to replace it")
    if args.folds < 2:
        raise EvalProblem("--folds must be 2 or more")
    if args.select and (args.terms or args.text_weight is not None):
        raise EvalProblem("--select chooses --terms and --text-weight itself; give one or the other")
    prompts, labels, source = _read_input(args)
    if len(prompts) < args.folds * MIN_PER_FOLD:
        raise EvalProblem(
            f"{source}: {len(prompts)} prompts; {args.folds}-fold cross-validation needs at least "
            f"{args.folds * MIN_PER_FOLD} ({MIN_PER_FOLD} per fold)"
        )
    items = [fitting.Labelled(p, w, s) for p, w, s in zip(prompts, labels.weak, labels.strong, strict=True)]
    base = fitting.Settings(
        target="mix",
        alpha=3.0,
        center_sources=False,
        length_prior=True,
        use_terms=args.terms,
        text_weight=1.0 if args.text_weight is None else args.text_weight,
    )
    feats = fitting.featurize(prompts)
    seed = args.options.seed
    selection: tuple[tuple[Settings, float], ...] = ()
    if args.select:
        grid = [replace(base, use_terms=t, text_weight=w) for t in (False, True) for w in SELECT_TEXT_WEIGHTS]
        trained, chosen = fitting.nested_out_of_fold_scores(items, feats, grid, args.folds, seed, SELECT_WIDEN)
        settings, tried = fitting.select_settings(items, feats, grid, args.folds, seed, SELECT_WIDEN)
        selection = tuple(tried)
        notes = [
            f"trained: {args.folds}-fold cross-validation, each fold's setting chosen by an inner "
            f"{args.folds}-fold cross-validation of its training part ({'; '.join(map(describe, chosen))})",
            f"written: {describe(settings)}, chosen on all prompts (cross-validated APGR "
            + "; ".join(f"{describe(s)} {a:.3f}" for s, a in selection)
            + ")",
        ]
    else:
        settings = base
        trained = fitting.out_of_fold_scores(items, feats, settings, args.folds, seed)
        notes = [f"trained: {args.folds}-fold cross-validation, every prompt scored by a model fitted without it"]
    default = bundled_model()
    bundled = [default.predict(p).score for p in prompts]
    versus = _versus_bundled(trained, bundled, labels, args.options)
    if versus is not None:
        notes.append(
            f"trained vs bundled default ({default.version}): Δ APGR {versus.difference:+.3f} "
            f"[{versus.low:+.3f}, {versus.high:+.3f}], p {versus.p_value:.3f}"
        )
    report = build_report(
        f"{source}: {len(prompts)} prompts",
        [Subject("trained", tuple(trained), labels), Subject(f"bundled {default.version}", tuple(bundled), labels)],
        labels,
        [length_score(p) for p in prompts],
        args.options,
        notes,
    )
    fitted = fitting.fit(items, feats, settings)
    version = args.name or f"trained-{_digest(prompts, labels.weak, labels.strong, describe(settings))}"
    document = fitting.export(fitted, fitted.raw_scores(feats), version, settings.reference_points)
    payload = orjson.dumps(document, option=orjson.OPT_SORT_KEYS) + b"\n"
    LearnedModel.from_bytes(payload)  # what serving will read must load
    return Trained(report, payload, version, len(fitted.terms), default.version, versus, settings, selection)


def describe(settings: Settings) -> str:
    """'terms at text weight 2': the two choices `--select` makes."""
    return f"{'terms' if settings.use_terms else 'counts'} at text weight {settings.text_weight:g}"


def _versus_bundled(
    trained: Sequence[float], bundled: Sequence[float], labels: Labels, options: EvalOptions
) -> PairedComparison | None:
    """The paired bootstrap of trained minus bundled (None with `--bootstrap 0`)."""
    if not options.resamples:
        return None
    try:
        return compare_paired(trained, bundled, labels, options.resamples, Random(options.seed + 2))
    except EvaluationError as exc:
        raise EvalProblem(str(exc)) from exc


def _read_input(args: TrainArgs) -> tuple[list[str], Labels, str]:
    if args.data is not None and (args.log is not None or args.labels is not None):
        raise EvalProblem("give DATA.jsonl, or --log with --labels, not both")
    if args.data is not None:
        prompts, labels = read_data(args.data)
        return prompts, labels, str(args.data)
    if args.log is None or args.labels is None:
        raise EvalProblem("give DATA.jsonl, or --log events.jsonl with --labels labels.jsonl")
    prompts, labels = log_prompts(args.log, args.labels)
    return prompts, labels, f"{args.log} with {args.labels}"


def _digest(prompts: Sequence[str], weak: Sequence[float], strong: Sequence[float], settings: str) -> str:
    """A short hash of what was trained on and how: equal data and settings, equal default version."""
    digest = hashlib.sha256(settings.encode())
    for row in zip(prompts, weak, strong, strict=True):
        digest.update(orjson.dumps(row))
    return digest.hexdigest()[:8]


def write_atomically(path: Path, payload: bytes) -> None:
    """Write through a temporary file in the same directory and rename: a gateway
    reloading meanwhile reads the old file or the new one, never half of one."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def report_json(result: Trained, out: Path) -> dict[str, object]:
    """`--json`: `octoroute eval --json`'s document, plus the comparison with the bundled
    model and the file written."""
    from octoroute.cli import eval_report

    document = eval_report.report_json(result.report, None)
    del document["plot"]
    versus = result.versus_bundled
    document["vs_bundled"] = (
        None if versus is None else {"bundled": result.bundled, **eval_report.comparison_json(versus)}
    )
    document["weights"] = {
        "path": str(out.resolve()),
        "version": result.version,
        "terms": result.terms,
        "settings": _settings_json(result.settings),
    }
    if result.selection:
        document["selection"] = [{**_settings_json(s), "apgr_every": round(a, 6)} for s, a in result.selection]
    return document


def _settings_json(settings: Settings) -> dict[str, object]:
    return {"word_terms": settings.use_terms, "text_weight": settings.text_weight}


def run_train(args: TrainArgs, env: Mapping[str, str]) -> int:
    """Train, print the table, write the file; 2 with one line on stderr on any problem."""
    del env  # nothing is read from the environment
    from octoroute.cli import eval_report

    err = Console(stderr=True, soft_wrap=True)
    try:
        result = train(args)
        write_atomically(args.out, result.payload)
    except EvalProblem as exc:
        err.print(f"octoroute train: {exc}", markup=False, highlight=False)
        return EXIT_PROBLEM
    except OSError as exc:
        err.print(f"octoroute train: cannot write {args.out}: {exc.strerror or exc}", markup=False, highlight=False)
        return EXIT_PROBLEM
    if args.as_json:
        print(orjson.dumps(report_json(result, args.out)).decode(), flush=True)
        return 0
    out = Console(soft_wrap=False)
    eval_report.render_table(result.report, out)
    # Plain print: the config lines must come out unwrapped, ready to paste.
    print(f"wrote {args.out} (version {result.version}, {result.terms} word terms); use it with")
    print(f"  [routing]\n  learned_weights = {orjson.dumps(str(args.out.resolve())).decode()}", flush=True)
    return 0
