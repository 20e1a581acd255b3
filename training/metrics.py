"""RouteLLM's APGR over every distinct score, and a paired bootstrap between two routers.

Sort by score descending; at each distinct score (ties move together) route
everything at or above it to the strong model. cost = share sent strong,
quality = mean of strong_score for routed-strong and weak_score for the rest,
PGR = (quality - weak mean) / (strong mean - weak mean); APGR is the trapezoid
area of PGR over cost in [0, 1] (arXiv 2406.18665, section 3.2).
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def apgr(scores: Sequence[float], weak: Sequence[float], strong: Sequence[float]) -> float:
    """APGR with every distinct score as a threshold."""
    count = len(scores)
    weak_total = sum(weak)
    gap = sum(strong) - weak_total
    if count == 0 or gap == 0:
        raise ValueError("APGR needs prompts where the strong model scores differently from the weak one")
    order = sorted(range(count), key=lambda i: -scores[i])
    area = 0.0
    prev_cost, prev_pgr = 0.0, 0.0
    gained = 0.0
    index = 0
    while index < count:
        value = scores[order[index]]
        while index < count and scores[order[index]] == value:
            gained += strong[order[index]] - weak[order[index]]
            index += 1
        cost, pgr = index / count, gained / gap
        area += (cost - prev_cost) * (pgr + prev_pgr) / 2
        prev_cost, prev_pgr = cost, pgr
    return area


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    weak: Sequence[float],
    strong: Sequence[float],
    rounds: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """(APGR(a) - APGR(b), one-sided p that a is not better), resampling prompts."""
    rng = random.Random(seed)
    count = len(a)
    observed = apgr(a, weak, strong) - apgr(b, weak, strong)
    not_better = 0
    for _ in range(rounds):
        pick = [rng.randrange(count) for _ in range(count)]
        w = [weak[i] for i in pick]
        s = [strong[i] for i in pick]
        if sum(s) == sum(w):
            continue
        if apgr([a[i] for i in pick], w, s) - apgr([b[i] for i in pick], w, s) <= 0:
            not_better += 1
    return observed, (not_better + 1) / (rounds + 1)
