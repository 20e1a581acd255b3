"""Routing-quality metrics: how much of the strong model's quality a router buys per strong call.

The definitions are RouteLLM's (arXiv 2406.18665, section 3.2). A router gives
every prompt a score ("how much does this need the strong model"); sending the
prompts whose score is at or above a threshold to the strong model and the rest
to the weak one costs a share ``c`` of strong calls and reaches a quality
between the weak and the strong model's:

    PGR(c) = (quality of the routed mix - weak mean) / (strong mean - weak mean)

APGR is the area under PGR over c in [0, 1] (trapezoid rule); random routing
gives 0.5. CPT(x) is the smallest share of strong calls that reaches PGR = x.

Two sweeps of thresholds:

- `quantile_curve`: RouteLLM's own evaluation (``routellm/evals/benchmarks.py``):
  the 11 thresholds are the 0, 10, ..., 100 % quantiles of the router's scores
  (``pd.qcut(scores, 10, retbins=True)``, numpy's linear interpolation); the
  first ten send ``score >= threshold`` strong, the last ``score > maximum``
  (none). A router with few distinct scores collapses onto few points here.
- `score_curve`: every distinct score is a threshold (ties move together), from
  cost 0 to cost 1. This is the sweep the issue's bar is measured with, and
  the one CPT, the random baseline's p-value and the bootstrap use.

Pure: no I/O, no clock; randomness comes from a `random.Random` passed in.
Pure Python on purpose (no numpy): scores are sorted once per router and each
random draw or bootstrap resample is a few C-level passes (`accumulate`,
`map`) over the items.

    labels = Labels.of(weak=[0, 1, 0], strong=[1, 1, 0])
    apgr(score_curve([0.9, 0.1, 0.5], labels))   # 1.0: the one gain is ranked first
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, count, pairwise, repeat
from operator import add, ge, itemgetter, mod, mul, sub
from random import Random
from typing import Any

from octoroute.core.errors import EvaluationError

QUANTILE_BINS = 10


@dataclass(frozen=True, slots=True)
class Labels:
    """Per-item quality of the weak and the strong model's answers (same order as the scores)."""

    weak: tuple[float, ...]
    strong: tuple[float, ...]

    @classmethod
    def of(cls, weak: Sequence[float], strong: Sequence[float]) -> Labels:
        """Checked labels: at least one item, equal lengths, finite values, the two means differ."""
        if len(weak) != len(strong):
            raise EvaluationError(f"{len(weak)} weak scores but {len(strong)} strong scores")
        if not weak:
            raise EvaluationError("no items to evaluate")
        values = (*weak, *strong)
        if not all(math.isfinite(v) for v in values):
            raise EvaluationError("weak_score and strong_score must be finite numbers")
        labels = cls(tuple(float(v) for v in weak), tuple(float(v) for v in strong))
        if labels.total_gain == 0:
            raise EvaluationError(
                f"the weak and strong mean quality are equal ({labels.weak_mean:.4g}): PGR is undefined"
            )
        return labels

    @property
    def gains(self) -> tuple[float, ...]:
        """What sending each item to the strong model adds: strong - weak."""
        return tuple(map(sub, self.strong, self.weak))

    @property
    def total_gain(self) -> float:
        return math.fsum(self.strong) - math.fsum(self.weak)

    @property
    def weak_mean(self) -> float:
        return math.fsum(self.weak) / len(self.weak)

    @property
    def strong_mean(self) -> float:
        return math.fsum(self.strong) / len(self.strong)


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """One threshold: the share of items sent strong, the mix's mean quality and its PGR."""

    cost: float
    quality: float
    pgr: float


@dataclass(frozen=True, slots=True)
class Spread:
    """A statistic over random draws: mean, sample standard deviation, 2.5 and 97.5 percentiles."""

    mean: float
    std: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        ordered = sorted(values)
        std = statistics.stdev(ordered) if len(ordered) > 1 else 0.0
        return cls(statistics.fmean(ordered), std, quantile(ordered, 0.025), quantile(ordered, 0.975))


@dataclass(frozen=True, slots=True)
class RouterMetrics:
    """Everything measured for one router's scores."""

    apgr_quantile: float
    apgr_every: float
    cpt50: float
    cpt80: float
    distinct_scores: int
    curve: tuple[CurvePoint, ...]  # the every-distinct-score curve, cost ascending


@dataclass(frozen=True, slots=True)
class RandomBaseline:
    """Random scores evaluated `draws` times; every field is a `Spread` over the draws."""

    draws: int
    apgr_quantile: Spread
    apgr_every: Spread
    cpt50: Spread
    cpt80: Spread
    apgrs: tuple[float, ...]  # every draw's APGR over every distinct score, for p-values


@dataclass(frozen=True, slots=True)
class PairedComparison:
    """Router A against router B on the same items, by a paired bootstrap of the items.

    `difference` is APGR(A) - APGR(B) over every distinct score on the data as
    given; `low`/`high` the 2.5/97.5 percentiles of that difference over the
    resamples; `p_value` the one-sided (1 + #{difference <= 0}) / (resamples + 1),
    small when A is better. Resamples where the strong and weak model tie in
    total (PGR undefined) are `dropped` and not counted in `resamples`.
    """

    difference: float
    low: float
    high: float
    p_value: float
    resamples: int
    dropped: int


@dataclass(frozen=True, slots=True)
class _Ranking:
    """Items ordered by score, highest first, and where each distinct score's group ends."""

    order: tuple[int, ...]
    ends: tuple[int, ...]  # exclusive end (a count of items) of each tie group, in `order`
    ascending: tuple[float, ...]  # the scores sorted ascending, for quantile thresholds

    @classmethod
    def of(cls, scores: Sequence[float]) -> _Ranking:
        if not all(math.isfinite(s) for s in scores):
            raise EvaluationError("a router score is not a finite number")
        order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
        ranked = [scores[i] for i in order]
        ends = [k for k in range(1, len(ranked)) if ranked[k] != ranked[k - 1]]
        ends.append(len(ranked))
        return cls(tuple(order), tuple(ends), tuple(reversed(ranked)))


def length_score(prompt: str) -> float:
    """The length baseline: a prompt's score is its length in characters."""
    return float(len(prompt))


def quantile(ordered: Sequence[float], q: float) -> float:
    """numpy's default (linear) quantile of values already sorted ascending."""
    position = (len(ordered) - 1) * q
    below = math.floor(position)
    fraction = position - below
    if fraction == 0 or below + 1 >= len(ordered):
        return ordered[min(below, len(ordered) - 1)]
    a, b = ordered[below], ordered[below + 1]
    # numpy's _lerp: interpolate from the nearer end, so t = 1 gives b exactly.
    return b - (b - a) * (1 - fraction) if fraction >= 0.5 else a + (b - a) * fraction


def score_curve(scores: Sequence[float], labels: Labels) -> tuple[CurvePoint, ...]:
    """PGR with every distinct score as a threshold: cost 0, then one point per tie group."""
    _check_lengths(scores, labels)
    ranking = _Ranking.of(scores)
    return _score_curve(ranking, _cumulative_gains(ranking, labels), labels.weak_mean)


def quantile_curve(scores: Sequence[float], labels: Labels, bins: int = QUANTILE_BINS) -> tuple[CurvePoint, ...]:
    """RouteLLM's sweep: thresholds at the 0, 1/bins, ..., 100 % quantiles of the scores, cost ascending."""
    _check_lengths(scores, labels)
    ranking = _Ranking.of(scores)
    return _quantile_curve(ranking, _cumulative_gains(ranking, labels), labels.weak_mean, bins)


def apgr(curve: Sequence[CurvePoint]) -> float:
    """Trapezoid area under PGR over cost (the curve ascending in cost)."""
    return math.fsum((b.cost - a.cost) * (a.pgr + b.pgr) / 2 for a, b in pairwise(curve))


def cpt(curve: Sequence[CurvePoint], target: float) -> float:
    """Smallest share of strong calls at which the (piecewise linear) curve reaches PGR = target."""
    previous: CurvePoint | None = None
    for point in curve:
        if point.pgr >= target:
            if previous is None:
                return point.cost
            step = (target - previous.pgr) / (point.pgr - previous.pgr)
            return previous.cost + step * (point.cost - previous.cost)
        previous = point
    raise EvaluationError(f"the curve never reaches PGR {target:g}")


def evaluate_scores(scores: Sequence[float], labels: Labels) -> RouterMetrics:
    """Both APGRs, CPT(50%) and CPT(80%) of one router's scores."""
    _check_lengths(scores, labels)
    ranking = _Ranking.of(scores)
    cumulative = _cumulative_gains(ranking, labels)
    curve = _score_curve(ranking, cumulative, labels.weak_mean)
    return RouterMetrics(
        apgr_quantile=apgr(_quantile_curve(ranking, cumulative, labels.weak_mean, QUANTILE_BINS)),
        apgr_every=apgr(curve),
        cpt50=cpt(curve, 0.5),
        cpt80=cpt(curve, 0.8),
        distinct_scores=len(curve) - 1,
        curve=curve,
    )


def random_baseline(labels: Labels, draws: int, rng: Random) -> RandomBaseline:
    """Uniform random scores, evaluated like a router, `draws` times.

    Random scores put the items in a uniformly random order with no ties, so
    each draw is a random permutation: the every-distinct-score curve has a
    point per item and the quantile thresholds fall at fixed ranks.
    """
    if draws < 1:
        raise EvaluationError("the random baseline needs at least one draw")
    gains = labels.gains
    n = len(gains)
    # A distinct-score quantile threshold at rank position h keeps the n - ceil(h) items above it.
    quantile_ks = sorted({n - -(-(n - 1) * i // QUANTILE_BINS) for i in range(QUANTILE_BINS)} | {0})
    pick = itemgetter(*quantile_ks)
    every, quantiles, cpt50s, cpt80s = [], [], [], []
    for _ in range(draws):
        keys = random_scores(rng, n)
        order = sorted(range(n), key=keys.__getitem__, reverse=True)
        cumulative = [0.0, *accumulate(map(gains.__getitem__, order))]
        total = cumulative[-1]
        if total == 0:
            raise EvaluationError("the weak and strong models' total quality is equal: PGR is undefined")
        every.append((sum(cumulative) - total / 2) / (n * total))
        ks_gains = pick(cumulative)
        quantiles.append(
            math.fsum(
                (k1 - k0) * (g0 + g1)
                for k0, k1, g0, g1 in zip(quantile_ks, quantile_ks[1:], ks_gains, ks_gains[1:], strict=False)
            )
            / (2 * n * total)
        )
        cpt50s.append(_permutation_cpt(cumulative, 0.5))
        cpt80s.append(_permutation_cpt(cumulative, 0.8))
    return RandomBaseline(
        draws=draws,
        apgr_quantile=Spread.of(quantiles),
        apgr_every=Spread.of(every),
        cpt50=Spread.of(cpt50s),
        cpt80=Spread.of(cpt80s),
        apgrs=tuple(every),
    )


def _permutation_cpt(cumulative: Sequence[float], target: float) -> float:
    """CPT on a curve with one point per item (k / n, cumulative[k] / total)."""
    n, goal = len(cumulative) - 1, target * cumulative[-1]
    k = next(compress(count(), map(ge, cumulative, repeat(goal))))  # the first k reaching the goal, at C speed
    if k == 0:
        return 0.0
    before, after = cumulative[k - 1], cumulative[k]
    return (k - 1 + (goal - before) / (after - before)) / n


def p_value_against(router_apgr: float, random_apgrs: Sequence[float]) -> float:
    """Share of random draws at least as good as the router, with the +1 correction."""
    at_least = sum(1 for value in random_apgrs if value >= router_apgr)
    return (1 + at_least) / (len(random_apgrs) + 1)


def compare_paired(
    scores_a: Sequence[float], scores_b: Sequence[float], labels: Labels, resamples: int, rng: Random
) -> PairedComparison:
    """Paired bootstrap of APGR(A) - APGR(B): resample the items with replacement, score both on each."""
    _check_lengths(scores_a, labels)
    _check_lengths(scores_b, labels)
    if resamples < 1:
        raise EvaluationError("the bootstrap needs at least one resample")
    gains = labels.gains
    n = len(gains)
    area_a = _weighted_area_fn(_Ranking.of(scores_a), gains)
    area_b = _weighted_area_fn(_Ranking.of(scores_b), gains)
    everything = Counter(range(n))
    difference = _area_or_fail(area_a(everything)) - _area_or_fail(area_b(everything))
    differences: list[float] = []
    dropped = 0
    for _ in range(resamples):
        counts = resample_counts(rng, n)
        a = area_a(counts)
        if a is None:
            dropped += 1
            continue
        differences.append(a - _area_or_fail(area_b(counts)))
    if not differences:
        raise EvaluationError("every bootstrap resample had equal weak and strong quality: PGR is undefined")
    differences.sort()
    not_better = bisect_right(differences, 0.0)
    return PairedComparison(
        difference=difference,
        low=quantile(differences, 0.025),
        high=quantile(differences, 0.975),
        p_value=(1 + not_better) / (len(differences) + 1),
        resamples=len(differences),
        dropped=dropped,
    )


def _weighted_area_fn(ranking: _Ranking, gains: Sequence[float]) -> Callable[[Counter[int]], float | None]:
    """APGR over every distinct score for items counted `counts[i]` times (a bootstrap resample);
    None when the resample's strong and weak totals are equal."""
    order, at_group_ends = ranking.order, _getter([end - 1 for end in ranking.ends])
    ranked_gains = [gains[i] for i in order]

    def area(counts: Counter[int]) -> float | None:
        ranked_weights = list(map(counts.get, order, repeat(0)))
        ks = (0, *at_group_ends(list(accumulate(ranked_weights))))
        gs = (0.0, *at_group_ends(list(accumulate(map(mul, ranked_weights, ranked_gains)))))
        if gs[-1] == 0:
            return None
        twice = math.fsum(map(mul, map(sub, ks[1:], ks[:-1]), map(add, gs[1:], gs[:-1])))
        return float(twice / (2 * ks[-1] * gs[-1]))

    return area


def _area_or_fail(area: float | None) -> float:
    if area is None:
        raise EvaluationError("the weak and strong models' total quality is equal: PGR is undefined")
    return area


def random_scores(rng: Random, n: int) -> Sequence[int]:
    """n random 64-bit scores from one call to the generator (ties have probability ~n^2 / 2^65).

    The bytes are read in the machine's byte order, so a seed gives the same
    draws on every little-endian machine.
    """
    return memoryview(rng.randbytes(8 * n)).cast("Q")


def resample_counts(rng: Random, n: int) -> Counter[int]:
    """How often each of n items is drawn in n draws with replacement (one bootstrap resample)."""
    return Counter(map(mod, random_scores(rng, n), repeat(n)))


def _getter(indices: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """A C-speed `lambda seq: tuple(seq[i] for i in indices)`."""
    if len(indices) == 1:
        only = indices[0]
        return lambda seq: (seq[only],)
    return itemgetter(*indices)


def _cumulative_gains(ranking: _Ranking, labels: Labels) -> list[float]:
    """Gain of sending the k highest-scored items strong, for k = 0..n."""
    gains = labels.gains
    return [0.0, *accumulate(gains[i] for i in ranking.order)]


def _score_curve(ranking: _Ranking, cumulative: Sequence[float], weak_mean: float) -> tuple[CurvePoint, ...]:
    return (_point(0, cumulative, weak_mean), *(_point(k, cumulative, weak_mean) for k in ranking.ends))


def _quantile_curve(
    ranking: _Ranking, cumulative: Sequence[float], weak_mean: float, bins: int
) -> tuple[CurvePoint, ...]:
    n = len(ranking.order)
    points = []
    for i in range(bins + 1):
        # np.linspace(0, 1, bins + 1): i * step, with the last point exactly 1.
        threshold = quantile(ranking.ascending, i * (1.0 / bins) if i < bins else 1.0)
        strong = 0 if i == bins else n - bisect_left(ranking.ascending, threshold)
        points.append(_point(strong, cumulative, weak_mean))
    return tuple(sorted(points, key=lambda p: p.cost))


def _point(strong: int, cumulative: Sequence[float], weak_mean: float) -> CurvePoint:
    """The mix that sends the `strong` highest-scored items strong (a tie-group boundary)."""
    n, total = len(cumulative) - 1, cumulative[-1]
    if total == 0:
        raise EvaluationError("the weak and strong models' total quality is equal: PGR is undefined")
    return CurvePoint(cost=strong / n, quality=weak_mean + cumulative[strong] / n, pgr=cumulative[strong] / total)


def _check_lengths(scores: Sequence[float], labels: Labels) -> None:
    if len(scores) != len(labels.weak):
        raise EvaluationError(f"{len(scores)} scores for {len(labels.weak)} labelled items")
