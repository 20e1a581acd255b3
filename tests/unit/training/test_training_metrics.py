from __future__ import annotations

import random

import pytest
from training.metrics import apgr, paired_bootstrap


def test_apgr_of_a_perfect_ranking() -> None:
    # The one prompt the strong model gains on comes first: PGR is 1 from cost 1/3 on.
    assert apgr([3.0, 2.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0]) == pytest.approx(5 / 6)


def test_apgr_of_the_worst_ranking() -> None:
    assert apgr([1.0, 2.0, 3.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0]) == pytest.approx(1 / 6)


def test_ties_move_together() -> None:
    # One distinct score: a single step from (0, 0) to (1, 1).
    assert apgr([0.5] * 4, [0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]) == pytest.approx(0.5)


def test_random_scores_average_one_half() -> None:
    rng = random.Random(7)
    weak = [float(rng.random() < 0.6) for _ in range(2000)]
    strong = [max(w, float(rng.random() < 0.8)) for w in weak]
    values = [apgr([rng.random() for _ in weak], weak, strong) for _ in range(20)]
    assert sum(values) / len(values) == pytest.approx(0.5, abs=0.02)


def test_apgr_needs_a_gap() -> None:
    with pytest.raises(ValueError, match="strong model"):
        apgr([1.0, 2.0], [1.0, 0.0], [1.0, 0.0])


def test_paired_bootstrap_prefers_the_better_router() -> None:
    rng = random.Random(3)
    weak = [float(rng.random() < 0.5) for _ in range(400)]
    strong = [1.0] * 400
    good = [1.0 - w + rng.random() * 0.5 for w in weak]
    noise = [rng.random() for _ in weak]
    diff, p = paired_bootstrap(good, noise, weak, strong, rounds=200)
    assert diff > 0.1
    assert p < 0.05
    diff, p = paired_bootstrap(noise, good, weak, strong, rounds=200)
    assert diff < 0
    assert p > 0.95
