"""Fitting the learned scorer: featurize exactly as serving does, ridge regression,
out-of-fold scores, export a weights document.

Used by `octoroute train` (a user's own labelled prompts) and by `training/`
(the bundled weights). Needs the `train` extra (numpy, scipy, scikit-learn),
imported only by those two; serving never imports this module.

Usage::

    feats = featurize(texts)
    fitted = fit(items, feats, Settings(length_prior=True, use_terms=False))
    document = export(fitted, fitted.raw_scores(feats), "my-model", 1001)
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from scipy import sparse
from sklearn.linear_model import Ridge

from octoroute.config.weightsfile import FORMAT
from octoroute.routing.evaluation import Labels, evaluate_scores
from octoroute.routing.learned import DENSE_NAMES, dense_features, extract_terms, percentile, window_of


class LabelledPrompt(Protocol):
    """A prompt with how well the weak and the strong side answered it (0-1)."""

    @property
    def source(self) -> str: ...
    @property
    def weak(self) -> float: ...
    @property
    def strong(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Labelled:
    """A `LabelledPrompt` from one source (a user's own data)."""

    text: str
    weak: float
    strong: float
    source: str = "data"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything that decides the fitted weights."""

    target: str = "gain"  # "gain": strong - weak; "fail": 1 - weak; "mix": their mean
    alpha: float = 1.0  # ridge penalty
    min_df: int = 3  # a term must occur in this many training prompts to get a weight
    center_sources: bool = True  # regress within-source differences only
    reference_points: int = 1001  # quantiles of training raw scores kept for calibration
    # Length as an explicit prior: when on, the text model is fitted without the
    # length features and both parts are scaled to the same within-source
    # spread, then added (`text_weight` times the text part).
    length_prior: bool = False
    use_terms: bool = True  # False: the dense features only
    text_weight: float = 1.0


LENGTH_FEATURES = ("log_length", "log_words")
WIDEN_MIN_GAIN = 0.001  # APGR a widened setting must add for `select_settings` to widen again


@dataclass(frozen=True, slots=True)
class Featurized:
    terms: list[frozenset[str]]
    dense: np.ndarray

    def subset(self, index: Sequence[int] | np.ndarray) -> Featurized:
        rows = np.asarray(index, dtype=int)
        return Featurized([self.terms[i] for i in rows], self.dense[rows])


def featurize(texts: Sequence[str]) -> Featurized:
    terms: list[frozenset[str]] = []
    dense = np.zeros((len(texts), len(DENSE_NAMES)))
    for row, text in enumerate(texts):
        window = window_of(text)
        terms.append(extract_terms(window))
        dense[row] = dense_features(text, window)
    return Featurized(terms, dense)


def target_of(items: Sequence[LabelledPrompt], kind: str) -> np.ndarray:
    weak = np.array([e.weak for e in items])
    strong = np.array([e.strong for e in items])
    if kind == "gain":
        return np.asarray(strong - weak)
    if kind == "fail":
        return np.asarray(1.0 - weak)
    if kind == "mix":
        return np.asarray(((strong - weak) + (1.0 - weak)) / 2)
    raise ValueError(f"unknown target {kind!r}")


def _term_matrix(terms: Sequence[frozenset[str]], vocab: dict[str, int]) -> sparse.csr_matrix:
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for row, doc in enumerate(terms):
        if not doc:
            continue
        scale = 1.0 / np.sqrt(len(doc))
        for term in sorted(doc):
            col = vocab.get(term)
            if col is not None:
                rows.append(row)
                cols.append(col)
                vals.append(scale)
    return sparse.csr_matrix((vals, (rows, cols)), shape=(len(terms), len(vocab)))


@dataclass(frozen=True, slots=True)
class Fitted:
    """A fitted model in serving units: raw = bias + dense . x + sum(term weight / sqrt(n))."""

    bias: float
    dense: np.ndarray
    dense_means: np.ndarray
    terms: dict[str, float]

    def raw_scores(self, feats: Featurized) -> np.ndarray:
        vocab = {t: i for i, t in enumerate(self.terms)}
        weights = np.array(list(self.terms.values()))
        term_part = _term_matrix(feats.terms, vocab) @ weights if vocab else np.zeros(len(feats.terms))
        return np.asarray(self.bias + feats.dense @ self.dense + term_part)


def fit(items: Sequence[LabelledPrompt], feats: Featurized, settings: Settings) -> Fitted:
    y = target_of(items, settings.target)
    if settings.center_sources:
        labels = np.array([e.source for e in items])
        for source in set(labels.tolist()):
            mask = labels == source
            y[mask] -= y[mask].mean()
    df = Counter(term for doc in feats.terms for term in doc)
    vocab_terms = sorted(term for term, count in df.items() if count >= settings.min_df and settings.use_terms)
    vocab = {term: i for i, term in enumerate(vocab_terms)}
    means = feats.dense.mean(axis=0)
    stds = feats.dense.std(axis=0)
    stds[stds == 0] = 1.0
    dense_std = (feats.dense - means) / stds
    length_cols = [DENSE_NAMES.index(name) for name in LENGTH_FEATURES]
    if settings.length_prior:
        dense_std[:, length_cols] = 0.0
    x = sparse.hstack([sparse.csr_matrix(dense_std), _term_matrix(feats.terms, vocab)]).tocsr()
    model = Ridge(alpha=settings.alpha, solver="sparse_cg", tol=1e-8, max_iter=10000, random_state=0)
    model.fit(x, y)
    coef = np.asarray(model.coef_)
    dense_w = coef[: len(DENSE_NAMES)] / stds
    term_w = coef[len(DENSE_NAMES) :]
    bias = float(model.intercept_) - float(dense_w @ means)
    terms = {t: float(term_w[i]) for t, i in vocab.items() if abs(term_w[i]) >= 1e-4}
    fitted = Fitted(bias, dense_w, means, terms)
    if not settings.length_prior:
        return fitted
    sources = [e.source for e in items]
    text_spread = _within_spread(fitted.raw_scores(feats), sources)
    length_spread = _within_spread(feats.dense[:, length_cols[0]], sources)
    scale = settings.text_weight / text_spread
    dense_w = dense_w * scale
    dense_w[length_cols] = 0.0
    dense_w[length_cols[0]] = 1.0 / length_spread
    return Fitted(
        bias * scale - float(means[length_cols[0]]) / length_spread,
        dense_w,
        means,
        {t: w * scale for t, w in terms.items()},
    )


def _within_spread(values: np.ndarray, sources: Sequence[str]) -> float:
    """Pooled within-source standard deviation."""
    labels = np.array(sources)
    residual = values.astype(float).copy()
    for source in set(sources):
        mask = labels == source
        residual[mask] -= residual[mask].mean()
    return float(np.sqrt(np.mean(residual**2))) or 1.0


def reference_of(raw: np.ndarray, points: int) -> tuple[float, ...]:
    """The calibration points a weights document keeps: quantiles of training raw scores."""
    return tuple(round(float(q), 6) for q in np.quantile(raw, np.linspace(0, 1, points)))


def fold_splits(count: int, folds: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """(training part, held-out part) per fold: a seeded shuffle of the items dealt round-robin."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    splits = []
    for fold in range(folds):
        held = sorted(order[fold::folds])
        held_set = set(held)
        splits.append(([i for i in range(count) if i not in held_set], held))
    return splits


def _fit_and_score(
    items: Sequence[LabelledPrompt], feats: Featurized, settings: Settings, train: list[int], held: list[int]
) -> list[float]:
    """The held items' scores (percentiles, as served) from a model fitted on `train`."""
    train_feats = feats.subset(train)
    fitted = fit([items[i] for i in train], train_feats, settings)
    reference = reference_of(fitted.raw_scores(train_feats), settings.reference_points)
    return [percentile(reference, float(raw)) for raw in fitted.raw_scores(feats.subset(held))]


def out_of_fold_scores(
    items: Sequence[LabelledPrompt], feats: Featurized, settings: Settings, folds: int, seed: int
) -> list[float]:
    """Each item's score (a percentile, as served) from a model fitted without its fold;
    each fold's scores are calibrated on its own training part, as a shipped file is."""
    scores = [0.0] * len(items)
    for train, held in fold_splits(len(items), folds, seed):
        for index, score in zip(held, _fit_and_score(items, feats, settings, train, held), strict=True):
            scores[index] = score
    return scores


def select_settings(
    items: Sequence[LabelledPrompt],
    feats: Featurized,
    grid: Sequence[Settings],
    folds: int,
    seed: int,
    widen: int = 0,
) -> tuple[Settings, list[tuple[Settings, float]]]:
    """The setting with the best cross-validated APGR (every score; the first of
    equals, so order the grid simplest first), and every setting tried with its APGR.

    `widen`: while the best so far has the largest text weight tried, try it again at
    twice that weight, up to `widen` more settings, and stop at the first that does
    not improve by `WIDEN_MIN_GAIN`: a best setting at the grid's edge says the edge
    was too near, and a gain below that is noise not worth another fit."""
    labels = Labels.of([e.weak for e in items], [e.strong for e in items])

    def apgr(settings: Settings) -> float:
        return evaluate_scores(out_of_fold_scores(items, feats, settings, folds, seed), labels).apgr_every

    tried = [(settings, apgr(settings)) for settings in grid]
    for _ in range(widen):
        best, score = _best(tried)
        if best.text_weight < max(s.text_weight for s, _ in tried):
            break
        wider = replace(best, text_weight=best.text_weight * 2)
        tried.append((wider, apgr(wider)))
        if tried[-1][1] < score + WIDEN_MIN_GAIN:
            break
    return _best(tried)[0], tried


def _best(tried: Sequence[tuple[Settings, float]]) -> tuple[Settings, float]:
    return max(tried, key=lambda pair: pair[1])  # max keeps the first of equals


def nested_out_of_fold_scores(
    items: Sequence[LabelledPrompt],
    feats: Featurized,
    grid: Sequence[Settings],
    folds: int,
    seed: int,
    widen: int = 0,
) -> tuple[list[float], list[Settings]]:
    """Out-of-fold scores where each fold's model has its setting chosen by an inner
    cross-validation on that fold's training part only, so the scores measure the
    selection too; and the setting each fold chose."""
    scores = [0.0] * len(items)
    chosen: list[Settings] = []
    for train, held in fold_splits(len(items), folds, seed):
        best, _ = select_settings([items[i] for i in train], feats.subset(train), grid, folds, seed, widen)
        chosen.append(best)
        for index, score in zip(held, _fit_and_score(items, feats, best, train, held), strict=True):
            scores[index] = score
    return scores, chosen


def export(fitted: Fitted, reference_raw: np.ndarray, version: str, points: int) -> dict[str, object]:
    """The weights document `LearnedModel.from_bytes` reads (rounded: compact, stable)."""
    return {
        "format": FORMAT,
        "version": version,
        "bias": round(fitted.bias, 6),
        "dense": [round(float(w), 6) for w in fitted.dense],
        "dense_means": [round(float(m), 6) for m in fitted.dense_means],
        "terms": {t: round(w, 5) for t, w in sorted(fitted.terms.items())},
        "reference": list(reference_of(reference_raw, points)),
    }
