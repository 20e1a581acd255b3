"""`octoroute eval`: routing quality of a strategy on labelled prompts, or of a decision log.

Two inputs, one report:

- `DATA.jsonl`: lines with `prompt`, `weak_score`, `strong_score` (the format of
  RouteLLM's benchmarks in `../shared/data/routellm/`); every prompt is scored
  with the offline scorer `octoroute score` uses (`cli.score.offline_scorer`).
- `--log events.jsonl --labels labels.jsonl`: the `request` events of octoroute's
  event file carry the live strategy's `score` (and with shadow mode the
  candidate's `shadow_score`); the labels say how good the weak and the strong
  answer were per `request_id`.

This module reads the files and assembles the report; the metrics are
`routing.evaluation`'s, the table and JSON are `eval_report`'s, the plot is
`eval_plot`'s, and `eval_command` runs the command over them. Every problem is
an `EvalProblem`: one line on stderr and exit status 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random

import orjson

from octoroute.cli.score import load_routing_config, offline_scorer
from octoroute.config import Config
from octoroute.core.errors import ConfigError, EvaluationError
from octoroute.core.types import Strategy
from octoroute.routing.evaluation import (
    Labels,
    PairedComparison,
    RandomBaseline,
    RouterMetrics,
    compare_paired,
    evaluate_scores,
    length_score,
    p_value_against,
    random_baseline,
)
from octoroute.routing.scoring import OfflineScorer

EXIT_PROBLEM = 2
PLOT_EXTRA_HINT = "pip install 'octoroute[eval]'"


class EvalProblem(Exception):
    """A problem with the command's input, said in one line."""


@dataclass(frozen=True, slots=True)
class EvalOptions:
    draws: int  # random-baseline draws
    resamples: int  # paired-bootstrap resamples (0: no comparison)
    seed: int


@dataclass(frozen=True, slots=True)
class Subject:
    """Scores of one router on labelled items."""

    name: str
    scores: tuple[float, ...]
    labels: Labels


@dataclass(frozen=True, slots=True)
class RowReport:
    name: str
    items: int
    metrics: RouterMetrics
    p_vs_random: float
    vs_length: PairedComparison | None


@dataclass(frozen=True, slots=True)
class Report:
    """What `octoroute eval` prints: a row per router, the length and random baselines."""

    title: str
    labels: Labels
    rows: tuple[RowReport, ...]
    length: RowReport | None
    random: RandomBaseline
    options: EvalOptions
    notes: tuple[str, ...] = ()
    counts: tuple[tuple[str, int], ...] = ()  # log mode: how many lines went where


# -- reading -----------------------------------------------------------------


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """(line number, object) for every non-blank line; a line that is not a JSON object is a problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EvalProblem(f"cannot read {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise EvalProblem(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise EvalProblem(f"{path}:{number}: not a JSON object")
        yield number, record


def number_field(record: Mapping[str, object], key: str, where: str) -> float:
    if key not in record:
        raise EvalProblem(f"{where}: missing key {key!r}")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EvalProblem(f"{where}: {key!r} must be a number, got {value!r}")
    return float(value)


def read_data(path: Path) -> tuple[list[str], Labels]:
    """Prompts and their weak/strong quality from a DATA.jsonl file."""
    prompts: list[str] = []
    weak: list[float] = []
    strong: list[float] = []
    for number, record in read_jsonl(path):
        where = f"{path}:{number}"
        prompt = record.get("prompt")
        if not isinstance(prompt, str):
            raise EvalProblem(
                f"{where}: missing key 'prompt'" if prompt is None else f"{where}: 'prompt' must be a string"
            )
        prompts.append(prompt)
        weak.append(number_field(record, "weak_score", where))
        strong.append(number_field(record, "strong_score", where))
    if not prompts:
        raise EvalProblem(f"{path}: no rows to evaluate")
    return prompts, checked_labels(weak, strong, str(path))


def checked_labels(weak: Sequence[float], strong: Sequence[float], source: str) -> Labels:
    try:
        return Labels.of(weak, strong)
    except EvaluationError as exc:
        raise EvalProblem(f"{source}: {exc}") from exc


# -- scoring DATA ------------------------------------------------------------


def load_routing(
    config_path: Path | None, strategy: str | None, env: Mapping[str, str]
) -> tuple[Config, OfflineScorer]:
    """The config (or the defaults with three tiers) and the scorer `octoroute score` uses for it,
    with `--strategy` in place of the config's own."""
    try:
        config = load_routing_config(config_path, env)
    except ConfigError as exc:
        problems = "; ".join(str(p) for p in exc.problems)
        raise EvalProblem(f"{config_path or 'default config'}: {problems}") from exc
    chosen = Strategy(strategy) if strategy else None
    try:
        return config, offline_scorer(config, chosen)
    except (ImportError, OSError, ValueError) as exc:  # the learned model's weights could not be loaded
        raise EvalProblem(f"cannot load the {chosen or config.routing.strategy} scorer: {exc}") from exc


def score_prompts(scorer: OfflineScorer, prompts: Sequence[str]) -> tuple[float, ...]:
    return tuple(scorer.score_prompt(prompt).score for prompt in prompts)


# -- assembling the report ---------------------------------------------------


def build_report(
    title: str,
    subjects: Sequence[Subject],
    labels: Labels,
    length_scores: Sequence[float] | None,
    options: EvalOptions,
    notes: Sequence[str] = (),
    counts: Sequence[tuple[str, int]] = (),
) -> Report:
    """Metrics of every subject and the baselines on `labels` (a subject may cover a subset)."""
    baselines: dict[int, RandomBaseline] = {}

    def baseline_for(items: Labels) -> RandomBaseline:
        key = id(items)
        if key not in baselines:
            baselines[key] = random_baseline(items, options.draws, Random(options.seed))
        return baselines[key]

    def row(subject: Subject, against_length: Sequence[float] | None) -> RowReport:
        metrics = evaluate_scores(subject.scores, subject.labels)
        comparison = None
        if against_length is not None and options.resamples > 0:
            comparison = compare_paired(
                subject.scores, against_length, subject.labels, options.resamples, Random(options.seed + 1)
            )
        p_value = p_value_against(metrics.apgr_every, baseline_for(subject.labels).apgrs)
        return RowReport(subject.name, len(subject.scores), metrics, p_value, comparison)

    try:
        random = baseline_for(labels)
        rows = tuple(row(s, _length_for(s, labels, length_scores)) for s in subjects)
        length = None if length_scores is None else row(Subject("length", tuple(length_scores), labels), None)
    except EvaluationError as exc:
        raise EvalProblem(str(exc)) from exc
    return Report(title, labels, rows, length, random, options, tuple(notes), tuple(counts))


def _length_for(subject: Subject, labels: Labels, length_scores: Sequence[float] | None) -> Sequence[float] | None:
    """The length baseline on the subject's items, when it covers the same items."""
    if length_scores is None or subject.labels is not labels:
        return None
    return length_scores


def evaluate_data(
    path: Path, config_path: Path | None, strategy: str | None, options: EvalOptions, env: Mapping[str, str]
) -> Report:
    prompts, labels = read_data(path)
    config, scorer = load_routing(config_path, strategy, env)
    scores = score_prompts(scorer, prompts)
    name = strategy or str(config.routing.strategy)
    return build_report(
        f"{path}: {len(prompts)} prompts",
        [Subject(name, scores, labels)],
        labels,
        [length_score(p) for p in prompts],
        options,
    )


# -- a decision log ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Label:
    weak: float
    strong: float


def read_labels(path: Path) -> dict[str, _Label]:
    labels: dict[str, _Label] = {}
    for number, record in read_jsonl(path):
        where = f"{path}:{number}"
        request_id = record.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise EvalProblem(f"{where}: missing key 'request_id'")
        if request_id in labels:
            raise EvalProblem(f"{where}: request_id {request_id!r} is labelled twice")
        labels[request_id] = _Label(
            number_field(record, "weak_score", where), number_field(record, "strong_score", where)
        )
    if not labels:
        raise EvalProblem(f"{path}: no labels")
    return labels


def _optional_number(record: Mapping[str, object], key: str) -> float | None:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class _Joined:
    """A labelled request event with a live score."""

    score: float
    label: _Label
    record: Mapping[str, object]


SHADOW_FIELDS = ("shadow_strategy", "shadow_tier", "shadow_score", "shadow_reason")


def join_log(log_path: Path, labelled: Mapping[str, _Label]) -> tuple[list[_Joined], tuple[tuple[str, int], ...]]:
    """The labelled request events with a score, and how many lines went where.

    A shadow candidate that asked the judge in the background records its verdict
    as a separate `shadow` event with the request's id (before or after the
    request's own record); it is joined into that request's record here."""
    requests = unlabelled = no_score = 0
    seen: set[str] = set()
    joined: list[_Joined] = []
    records = [record for _, record in read_jsonl(log_path)]
    verdicts = {
        str(r.get("request_id")): {k: r[k] for k in SHADOW_FIELDS if k in r}
        for r in records
        if r.get("event") == "shadow"
    }
    for record in records:
        if record.get("event") != "request":
            continue
        verdict = verdicts.get(str(record.get("request_id")))
        if verdict is not None and "shadow_score" not in record:
            record = {**record, **verdict}
        requests += 1
        request_id = record.get("request_id")
        label = labelled.get(request_id) if isinstance(request_id, str) else None
        if label is None:
            unlabelled += 1
            continue
        seen.add(str(request_id))
        score = _optional_number(record, "score")
        if score is None:
            no_score += 1
            continue
        joined.append(_Joined(score, label, record))
    counts = (
        ("request events", requests),
        ("with a label and a score (evaluated)", len(joined)),
        ("without a label", unlabelled),
        ("labelled, without a score (not auto-routed)", no_score),
        ("labels matching no request event", len(labelled) - len(seen)),
    )
    return joined, counts


def evaluate_log(log_path: Path, labels_path: Path, options: EvalOptions) -> Report:
    """The live score and the shadow score of labelled `request` events."""
    joined, counts = join_log(log_path, read_labels(labels_path))
    if not joined:
        raise EvalProblem(f"{log_path}: no request event has both a label and a score")
    labels = _labels_of(joined, f"{log_path} + {labels_path}")
    live_strategies = sorted({str(j.record.get("strategy") or "?") for j in joined})
    subjects = [Subject(f"live ({', '.join(live_strategies)})", tuple(j.score for j in joined), labels)]
    notes: list[str] = []
    shadow = [(s, j) for j in joined if (s := _optional_number(j.record, "shadow_score")) is not None]
    if shadow:
        strategies = sorted({str(j.record.get("shadow_strategy") or "?") for _, j in shadow})
        name = f"shadow ({', '.join(strategies)})"
        covered = labels
        if len(shadow) < len(joined):
            notes.append(
                f"the shadow score is on {len(shadow)} of the {len(joined)} evaluated events: its row covers those"
            )
            covered = _labels_of([j for _, j in shadow], "the events with a shadow score")
        subjects.append(Subject(name, tuple(s for s, _ in shadow), covered))
    length_scores, length_note = _log_lengths([j.record for j in joined])
    notes.append(length_note)
    return build_report(f"{log_path} with {labels_path}", subjects, labels, length_scores, options, notes, counts)


def log_prompts(log_path: Path, labels_path: Path) -> tuple[list[str], Labels]:
    """The text and labels of the labelled, auto-routed `request` events (for `octoroute
    train`); the event file has the text only with `[observability] log_content = true`."""
    joined, _ = join_log(log_path, read_labels(labels_path))
    with_text = [j for j in joined if isinstance(j.record.get("prompt"), str)]
    if not with_text:
        raise EvalProblem(
            f"{log_path}: no labelled request event has its prompt text; "
            "set [observability] log_content = true to record it"
        )
    prompts = [str(j.record["prompt"]) for j in with_text]
    return prompts, _labels_of(with_text, f"{log_path} + {labels_path}")


def _labels_of(joined: Sequence[_Joined], source: str) -> Labels:
    return checked_labels([j.label.weak for j in joined], [j.label.strong for j in joined], source)


def _log_lengths(records: Sequence[Mapping[str, object]]) -> tuple[list[float] | None, str]:
    """Prompt length in characters when the log has the text (log_content), else input tokens, else none."""
    prompts = [r.get("prompt") for r in records]
    if all(isinstance(p, str) for p in prompts):
        return [length_score(str(p)) for p in prompts], "length baseline: prompt characters (the log has the text)"
    tokens = [_optional_number(r, "input_tokens") for r in records]
    if all(t is not None for t in tokens):
        return [float(t or 0) for t in tokens], "length baseline: input tokens (the log has no prompt text)"
    return None, "no length baseline: the log has neither prompt text nor input tokens on every evaluated event"
