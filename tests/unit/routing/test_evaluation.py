"""Routing-quality metrics against hand-computed cases (RouteLLM's definitions, arXiv 2406.18665 §3.2)."""

from __future__ import annotations

import math
import statistics
from random import Random

import pytest

from octoroute.core.errors import EvaluationError
from octoroute.routing.evaluation import (
    CurvePoint,
    Labels,
    Spread,
    apgr,
    compare_paired,
    cpt,
    evaluate_scores,
    length_score,
    p_value_against,
    quantile,
    quantile_curve,
    random_baseline,
    random_scores,
    resample_counts,
    score_curve,
)

# Two items gain from the strong model (the first two), two do not.
FOUR = Labels.of(weak=[0, 0, 0, 0], strong=[1, 1, 0, 0])


def points(curve: tuple[CurvePoint, ...]) -> list[tuple[float, float]]:
    return [(round(p.cost, 12), round(p.pgr, 12)) for p in curve]


@pytest.mark.parametrize(
    ("scores", "expected_points", "expected_apgr"),
    [
        # The gains ranked first: PGR 0.5 after one call, 1 after two.
        ([4, 3, 2, 1], [(0, 0), (0.25, 0.5), (0.5, 1), (0.75, 1), (1, 1)], 0.75),
        # Ranked last: nothing until the third call.
        ([1, 2, 3, 4], [(0, 0), (0.25, 0), (0.5, 0), (0.75, 0.5), (1, 1)], 0.25),
        # Ties move together: one gain in each tier, so the diagonal.
        ([1, 0, 1, 0], [(0, 0), (0.5, 0.5), (1, 1)], 0.5),
        # Both gains in the top tier.
        ([1, 1, 0, 0], [(0, 0), (0.5, 1), (1, 1)], 0.75),
        # A constant score is one threshold: all weak or all strong.
        ([7, 7, 7, 7], [(0, 0), (1, 1)], 0.5),
    ],
)
def test_every_distinct_score_curve_and_apgr(
    scores: list[float], expected_points: list[tuple[float, float]], expected_apgr: float
) -> None:
    curve = score_curve(scores, FOUR)
    assert points(curve) == expected_points
    assert apgr(curve) == pytest.approx(expected_apgr)


def test_curve_quality_is_the_routed_mix_mean() -> None:
    labels = Labels.of(weak=[0.5, 1, 0], strong=[1, 0, 1])  # gains +0.5, -1, +1; weak mean 0.5
    curve = score_curve([3, 2, 1], labels)
    assert [p.quality for p in curve] == pytest.approx([0.5, 0.5 + 0.5 / 3, 0.5 - 0.5 / 3, 0.5 + 0.5 / 3])
    assert [p.pgr for p in curve] == pytest.approx([0, 1, -1, 1])  # a loss is negative PGR


def test_quantile_sweep_has_eleven_thresholds_and_misses_points_between_them() -> None:
    # 15 distinct scores (n - 1 = 14, so 14 * q is never an integer except at q = 0.5, which is exact).
    # Quantile thresholds keep 15, 13, 12, 10, 9, 8, 6, 5, 3, 2 items, then none.
    scores = list(range(15, 0, -1))
    labels = Labels.of(weak=[0] * 15, strong=[1] + [0] * 14)  # only the top-scored item gains
    curve = quantile_curve(scores, labels)
    assert [round(p.cost * 15) for p in curve] == [0, 2, 3, 5, 6, 8, 9, 10, 12, 13, 15]
    # The first point after 0 is 2/15: the trapezoid from (0, 0) to (2/15, 1), then 1.
    assert apgr(curve) == pytest.approx(14 / 15)
    # Every distinct score sees the gain after one call.
    assert apgr(score_curve(scores, labels)) == pytest.approx(29 / 30)


def test_quantile_sweep_keeps_ties_at_a_threshold_strong() -> None:
    # ascending [0, 5, 5, 5, 5, 5, 8, 9]: the 10 %..70 % thresholds land in the tier of fives
    # (score >= 5 keeps 7 items); 80 % is 6.8 (2 items), 90 % is 8.3 (1 item); the last sends none.
    scores = [9, 8, 5, 5, 5, 5, 5, 0]
    labels = Labels.of(weak=[0] * 8, strong=[0, 1, 0, 0, 0, 0, 0, 1])
    curve = quantile_curve(scores, labels)
    assert [round(p.cost * 8) for p in curve] == [0, 1, 2, 7, 7, 7, 7, 7, 7, 7, 8]
    assert [round(p.pgr, 12) for p in curve] == [0, 0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1]
    # (1/8)*0 + (1/8)*0.25 + (5/8)*0.5 + (1/8)*0.75
    assert apgr(curve) == pytest.approx(0.25 / 8 + 2.5 / 8 + 0.75 / 8)


@pytest.mark.parametrize(
    ("scores", "target", "expected"),
    [
        ([4, 3, 2, 1], 0.5, 0.25),  # reached exactly at a point
        ([4, 3, 2, 1], 0.8, 0.4),  # 0.25 + (0.8 - 0.5) / (1 - 0.5) * 0.25
        ([1, 2, 3, 4], 0.5, 0.75),
        ([1, 2, 3, 4], 0.8, 0.9),  # 0.75 + 0.3 / 0.5 * 0.25
        ([7, 7, 7, 7], 0.5, 0.5),  # the diagonal
        ([7, 7, 7, 7], 0.0, 0.0),
    ],
)
def test_cpt(scores: list[float], target: float, expected: float) -> None:
    assert cpt(score_curve(scores, FOUR), target) == pytest.approx(expected)


def test_cpt_of_a_curve_that_never_gets_there() -> None:
    with pytest.raises(EvaluationError, match="never reaches"):
        cpt(score_curve([4, 3, 2, 1], FOUR), 1.5)


def test_evaluate_scores_collects_everything() -> None:
    metrics = evaluate_scores([4, 3, 2, 1], FOUR)
    assert (metrics.apgr_every, metrics.apgr_quantile) == (pytest.approx(0.75), pytest.approx(0.75))
    assert (metrics.cpt50, metrics.cpt80) == (pytest.approx(0.25), pytest.approx(0.4))
    assert metrics.distinct_scores == 4
    assert metrics.curve == score_curve([4, 3, 2, 1], FOUR)


def test_length_score_counts_characters() -> None:
    assert length_score("") == 0.0
    assert length_score("héllo") == 5.0


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 0.0, 1),
        ([1, 2, 3, 4], 0.5, 2.5),
        ([1, 2, 3, 4], 1.0, 4),
        ([1, 2, 3, 4], 0.025, 1.075),
        ([1, 2, 3, 4], 0.975, 3.925),
        ([5], 0.3, 5),
    ],
)
def test_quantile_is_linear_interpolation(values: list[float], q: float, expected: float) -> None:
    assert quantile(values, q) == pytest.approx(expected)


def test_spread() -> None:
    spread = Spread.of([4, 1, 3, 2])
    assert spread.mean == 2.5
    assert spread.std == pytest.approx(statistics.stdev([1, 2, 3, 4]))
    assert (spread.low, spread.high) == (pytest.approx(1.075), pytest.approx(3.925))


@pytest.mark.parametrize(
    ("weak", "strong", "message"),
    [
        ([], [], "no items"),
        ([0, 1], [1], "2 weak scores but 1 strong"),
        ([0, 1], [1, 0], "equal"),
        ([0.5, 0.5], [0.5, 0.5], "equal"),
        ([0, math.nan], [1, 1], "finite"),
    ],
)
def test_labels_that_leave_pgr_undefined(weak: list[float], strong: list[float], message: str) -> None:
    with pytest.raises(EvaluationError, match=message):
        Labels.of(weak, strong)


def test_scores_must_match_the_items_and_be_finite() -> None:
    with pytest.raises(EvaluationError, match="3 scores for 4"):
        score_curve([1, 2, 3], FOUR)
    with pytest.raises(EvaluationError, match="finite"):
        evaluate_scores([1, 2, math.inf, 3], FOUR)


def test_random_draw_is_a_router_with_random_scores() -> None:
    labels = Labels.of(weak=[0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0], strong=[1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 1, 1])
    baseline = random_baseline(labels, 1, Random(3))
    keys = random_scores(Random(3), len(labels.weak))
    ranks = sorted(range(len(keys)), key=keys.__getitem__)
    same = evaluate_scores([float(ranks.index(i)) for i in range(len(keys))], labels)  # the same order, exactly
    assert baseline.apgr_every.mean == pytest.approx(same.apgr_every, abs=1e-12)
    assert baseline.apgr_quantile.mean == pytest.approx(same.apgr_quantile, abs=1e-12)
    assert baseline.cpt50.mean == pytest.approx(same.cpt50, abs=1e-12)
    assert baseline.cpt80.mean == pytest.approx(same.cpt80, abs=1e-12)


def test_random_baseline_matches_the_permutation_distribution() -> None:
    rng = Random(11)
    weak = [float(rng.random() < 0.6) for _ in range(60)]
    strong = [float(rng.random() < 0.8) for _ in range(60)]
    labels = Labels.of(weak, strong)
    baseline = random_baseline(labels, 2000, Random(5))
    # APGR of a random order is a linear permutation statistic: mean 1/2, and its variance is
    # S_gain * S_rank / (n - 1) over (n * total gain)^2, with S_rank = n (n^2 - 1) / 12.
    n, gains = len(weak), labels.gains
    mean_gain = statistics.fmean(gains)
    s_gain = sum((g - mean_gain) ** 2 for g in gains)
    std = math.sqrt(s_gain * (n * (n * n - 1) / 12) / (n - 1)) / (n * labels.total_gain)
    assert baseline.apgr_every.mean == pytest.approx(0.5, abs=4 * std / math.sqrt(2000))
    assert baseline.apgr_every.std == pytest.approx(std, rel=0.1)
    assert baseline.apgr_every.low < 0.5 < baseline.apgr_every.high
    # CPT is a first crossing, so on few items it comes a little early; its spread holds the diagonal.
    assert baseline.cpt50.low < 0.5 < baseline.cpt50.high
    assert baseline.cpt80.low < 0.8 < baseline.cpt80.high
    assert len(baseline.apgrs) == baseline.draws == 2000


def test_random_baseline_is_reproducible_from_its_seed() -> None:
    assert random_baseline(FOUR, 20, Random(1)) == random_baseline(FOUR, 20, Random(1))
    assert random_baseline(FOUR, 20, Random(1)) != random_baseline(FOUR, 20, Random(2))


@pytest.mark.parametrize(
    ("router", "expected"),
    [
        (0.7, 1 / 5),  # no draw as good: the +1 keeps p above zero
        (0.6, 2 / 5),  # ties count against the router
        (0.45, 4 / 5),
        (0.1, 5 / 5),
    ],
)
def test_p_value_against_random(router: float, expected: float) -> None:
    assert p_value_against(router, [0.4, 0.5, 0.6, 0.5]) == pytest.approx(expected)


def test_paired_bootstrap_of_a_router_against_itself() -> None:
    result = compare_paired([4, 3, 2, 1], [4, 3, 2, 1], FOUR, 50, Random(0))
    assert (result.difference, result.low, result.high) == (0, 0, 0)
    assert result.p_value == 1.0  # every resample's difference is <= 0


def test_paired_bootstrap_difference_is_the_apgr_difference() -> None:
    rng = Random(4)
    weak = [float(rng.random() < 0.5) for _ in range(40)]
    strong = [float(rng.random() < 0.8) for _ in range(40)]
    labels = Labels.of(weak, strong)
    a = [float(rng.randint(0, 3)) for _ in weak]  # tiers: ties
    b = [rng.random() for _ in weak]
    result = compare_paired(a, b, labels, 10, Random(0))
    assert result.difference == pytest.approx(apgr(score_curve(a, labels)) - apgr(score_curve(b, labels)))


def test_paired_bootstrap_resample_is_the_apgr_of_the_resampled_items() -> None:
    rng = Random(8)
    weak = [float(rng.random() < 0.5) for _ in range(30)]
    strong = [float(rng.random() < 0.8) for _ in range(30)]
    labels = Labels.of(weak, strong)
    a = [float(rng.randint(0, 4)) for _ in weak]
    b = [float(len(weak) - i) for i in range(len(weak))]
    result = compare_paired(a, b, labels, 1, Random(10))
    counts = resample_counts(Random(10), len(weak))
    assert sum(counts.values()) == len(weak)
    picked = sorted(counts.elements())
    resampled = Labels.of([weak[i] for i in picked], [strong[i] for i in picked])
    expected = apgr(score_curve([a[i] for i in picked], resampled)) - apgr(
        score_curve([b[i] for i in picked], resampled)
    )
    assert result.resamples == 1
    assert result.low == result.high == pytest.approx(expected)


def test_paired_bootstrap_finds_the_better_router() -> None:
    rng = Random(2)
    weak = [float(rng.random() < 0.5) for _ in range(300)]
    strong = [float(rng.random() < 0.8) for _ in range(300)]
    labels = Labels.of(weak, strong)
    informed = [s - w + rng.random() for w, s in zip(weak, strong, strict=True)]  # knows the gain, roughly
    noise = [rng.random() for _ in weak]
    better = compare_paired(informed, noise, labels, 200, Random(0))
    assert better.difference > 0
    assert 0 < better.low < better.difference < better.high
    assert better.p_value == pytest.approx(1 / 201)
    worse = compare_paired(noise, informed, labels, 200, Random(0))
    assert worse.p_value == pytest.approx(1.0)


def test_paired_bootstrap_drops_resamples_where_pgr_is_undefined() -> None:
    labels = Labels.of(weak=[0, 0], strong=[1, 0])  # a resample of the second item twice has no gain
    result = compare_paired([2, 1], [1, 2], labels, 40, Random(0))
    assert result.dropped > 0
    assert result.resamples + result.dropped == 40


@pytest.mark.parametrize("count", [0, -1])
def test_draw_counts_must_be_positive(count: int) -> None:
    with pytest.raises(EvaluationError):
        random_baseline(FOUR, count, Random(0))
    with pytest.raises(EvaluationError):
        compare_paired([1, 2, 3, 4], [4, 3, 2, 1], FOUR, count, Random(0))
