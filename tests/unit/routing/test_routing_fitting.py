"""`routing.fitting`: what it fits is what serving computes, out-of-fold scores never
see their own fold, and the fit is deterministic."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import orjson
import pytest

from octoroute.routing.fitting import (
    WIDEN_MIN_GAIN,
    Labelled,
    Settings,
    export,
    featurize,
    fit,
    fold_splits,
    nested_out_of_fold_scores,
    out_of_fold_scores,
    select_settings,
)
from octoroute.routing.learned import LearnedModel

SETTINGS = Settings(target="mix", alpha=3.0, center_sources=False, length_prior=True, use_terms=True, min_df=2)


def labelled(count: int = 120, seed: int = 3) -> list[Labelled]:
    rng = random.Random(seed)
    items = []
    for i in range(count):
        hard = i % 3 == 0
        words = " ".join(rng.choice(["river", "song", "garden", "paper"]) for _ in range(rng.randint(3, 30)))
        text = f"{words} integral of x^{i} dx" if hard else f"{words} hello"
        items.append(Labelled(text, 0.0 if hard else 1.0, 1.0))
    return items


def test_the_exported_file_scores_as_the_fitted_model() -> None:
    items = labelled()
    feats = featurize([e.text for e in items])
    fitted = fit(items, feats, SETTINGS)
    model = LearnedModel.from_bytes(orjson.dumps(export(fitted, fitted.raw_scores(feats), "t", 101)))
    served = [model.raw_score(e.text) for e in items]
    assert served == pytest.approx(fitted.raw_scores(feats).tolist(), abs=1e-3)
    assert fitted.terms, "word terms were on"


def test_a_fitted_model_ranks_the_labelled_hard_prompts_first() -> None:
    items = labelled()
    feats = featurize([e.text for e in items])
    scores = out_of_fold_scores(items, feats, SETTINGS, folds=4, seed=0)
    hard = [s for s, e in zip(scores, items, strict=True) if e.weak == 0.0]
    easy = [s for s, e in zip(scores, items, strict=True) if e.weak == 1.0]
    ordered = sum(h > e for h in hard for e in easy) / (len(hard) * len(easy))
    assert ordered > 0.9  # the length prior adds spread; the words decide
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_out_of_fold_scores_never_see_their_own_fold() -> None:
    # Labels that are pure noise: a model that saw its fold would fit it; out of
    # fold, the scores carry nothing about the labels.
    rng = random.Random(5)
    tokens = ["".join(rng.choice("abcdefghijklmnop") for _ in range(8)) for _ in range(300)]
    items = [Labelled(f"{token} " + "word " * rng.randint(1, 40), float(rng.random() < 0.5), 1.0) for token in tokens]
    feats = featurize([e.text for e in items])
    noise = Settings(target="fail", alpha=0.01, center_sources=False, use_terms=True, min_df=1)
    oof = np.array(out_of_fold_scores(items, feats, noise, folds=5, seed=0))
    fitted_all = fit(items, feats, noise).raw_scores(feats)
    fails = np.array([1.0 - e.weak for e in items])
    assert np.corrcoef(fitted_all, fails)[0, 1] > 0.9  # in sample: memorised
    assert abs(np.corrcoef(oof, fails)[0, 1]) < 0.2  # out of fold: nothing


def test_folds_and_fits_are_deterministic() -> None:
    items = labelled(60)
    feats = featurize([e.text for e in items])
    assert out_of_fold_scores(items, feats, SETTINGS, 3, 7) == out_of_fold_scores(items, feats, SETTINGS, 3, 7)
    first = export(fit(items, feats, SETTINGS), np.arange(5.0), "t", 11)
    assert export(fit(items, feats, SETTINGS), np.arange(5.0), "t", 11) == first


def test_serving_never_imports_the_scientific_stack() -> None:
    # The `train` extra is for `octoroute train` and training/ only: a gateway,
    # `score`, `route` and `eval` start without it.
    code = (
        "import sys\n"
        "import octoroute.cli.main, octoroute.cli.serve, octoroute.server.app, octoroute.cli.score\n"
        "import octoroute.cli.evaluate, octoroute.routing.router, octoroute.routing.shadow\n"
        "print(sorted(m for m in ('numpy', 'scipy', 'sklearn') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_nested_selection_chooses_per_fold_on_the_training_part_only() -> None:
    items = labelled(90)
    feats = featurize([e.text for e in items])
    grid = [
        Settings(target="mix", alpha=3.0, center_sources=False, length_prior=True, use_terms=t) for t in (False, True)
    ]
    best, tried = select_settings(items, feats, grid, folds=3, seed=0)
    assert [s for s, _ in tried] == grid
    apgrs = [a for _, a in tried]
    assert best is grid[apgrs.index(max(apgrs))]
    assert apgrs[1] > apgrs[0]  # the words decide these labels: terms win
    _, chosen = nested_out_of_fold_scores(items, feats, grid, folds=3, seed=0)
    expected = [
        select_settings([items[i] for i in train], feats.subset(train), grid, folds=3, seed=0)[0]
        for train, _ in fold_splits(len(items), 3, 0)
    ]
    assert chosen == expected
    # with one setting in the grid, nested scores are the plain out-of-fold ones
    only, _ = nested_out_of_fold_scores(items, feats, grid[:1], folds=3, seed=0)
    assert only == out_of_fold_scores(items, feats, grid[0], folds=3, seed=0)


def short_is_hard(count: int = 150, seed: int = 5) -> list[Labelled]:
    """Hard prompts are the short ones: length misleads, so the more the text part
    weighs against it, the better the ranking."""
    rng = random.Random(seed)
    items = []
    for i in range(count):
        hard = i % 3 == 0
        words = " ".join(rng.choice(["river", "song", "garden", "paper"]) for _ in range(rng.randint(1, 6)))
        padding = "" if hard else " ".join("hello" for _ in range(rng.randint(20, 60)))
        text = f"{words} integral of x^{i} dx" if hard else f"{words} {padding}"
        items.append(Labelled(text, 0.0 if hard else 1.0, 1.0))
    return items


def test_widening_doubles_the_best_text_weight_while_it_sits_at_the_edge_and_improves() -> None:
    items = short_is_hard()
    feats = featurize([e.text for e in items])
    grid = [
        Settings(target="mix", alpha=3.0, center_sources=False, length_prior=True, use_terms=False, text_weight=w)
        for w in (0.25, 0.5)
    ]
    plain_best, plain = select_settings(items, feats, grid, folds=3, seed=0)
    assert len(plain) == len(grid)
    best, tried = select_settings(items, feats, grid, folds=3, seed=0, widen=3)
    assert tried[: len(grid)] == plain  # the grid itself is scored as without widening
    assert len(tried) > len(grid), "length misleads here: the edge weight wins and is widened"
    for k in range(len(grid), len(tried)):
        before = tried[:k]
        leader, score = max(before, key=lambda pair: pair[1])
        assert leader.text_weight == max(s.text_weight for s, _ in before)
        assert tried[k][0] == Settings(**{**_fields(leader), "text_weight": 2 * leader.text_weight})
        if k < len(tried) - 1:
            assert tried[k][1] >= score + WIDEN_MIN_GAIN  # only a real improvement is widened again
    assert best == max(tried, key=lambda pair: pair[1])[0]
    assert best.text_weight > plain_best.text_weight


def test_widening_leaves_a_best_setting_inside_the_grid_alone() -> None:
    rng = random.Random(11)
    items = []  # hard prompts are the long ones and the words are noise: length alone is best
    for i in range(120):
        hard = i % 3 == 0
        words = " ".join(rng.choice(["river", "song", "garden", "paper", "stone"]) for _ in range(rng.randint(3, 8)))
        text = words + (" and more" * rng.randint(30, 60) if hard else "")
        items.append(Labelled(text, 0.0 if hard else 1.0, 1.0))
    feats = featurize([e.text for e in items])
    grid = [
        Settings(target="mix", alpha=3.0, center_sources=False, length_prior=True, use_terms=True, text_weight=w)
        for w in (0.0, 8.0)
    ]
    _, plain = select_settings(items, feats, grid, folds=3, seed=0)
    best, tried = select_settings(items, feats, grid, folds=3, seed=0, widen=3)
    assert best.text_weight == 0.0
    assert tried == plain


def _fields(settings: Settings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in Settings.__dataclass_fields__}
