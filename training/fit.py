"""Fitting the linear scorer: featurize exactly as serving does, ridge regression, export.

Imports `octoroute.routing.learned` for the feature functions, so training and
serving featurize identically; needs the `train` extra (numpy, scipy,
scikit-learn).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.linear_model import Ridge

from octoroute.routing.learned import DENSE_NAMES, FORMAT, dense_features, extract_terms, window_of
from training.data import Example


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything that decides the fitted weights (chosen on held-out training data)."""

    target: str = "gain"  # "gain": strong - weak; "fail": 1 - weak; "mix": their mean
    alpha: float = 1.0  # ridge penalty
    min_df: int = 3  # a term must occur in this many training prompts to get a weight
    center_sources: bool = True  # regress within-benchmark differences only
    reference_points: int = 1001  # quantiles of training raw scores kept for calibration
    # Length as an explicit prior: when on, the text model is fitted without the
    # length features and both parts are scaled to the same within-benchmark
    # spread, then added (an equal-weight combination, nothing tuned).
    length_prior: bool = False
    use_terms: bool = True  # False: the dense features only
    # With `length_prior`, the text part's weight relative to the length prior
    # (1.0: equal within-benchmark spread; below 1 shrinks toward length alone).
    text_weight: float = 1.0


LENGTH_FEATURES = ("log_length", "log_words")


@dataclass(frozen=True, slots=True)
class Featurized:
    terms: list[frozenset[str]]
    dense: np.ndarray


def featurize(texts: Sequence[str]) -> Featurized:
    terms: list[frozenset[str]] = []
    dense = np.zeros((len(texts), len(DENSE_NAMES)))
    for row, text in enumerate(texts):
        window = window_of(text)
        terms.append(extract_terms(window))
        dense[row] = dense_features(text, window)
    return Featurized(terms, dense)


def target_of(examples: Sequence[Example], kind: str) -> np.ndarray:
    weak = np.array([e.weak for e in examples])
    strong = np.array([e.strong for e in examples])
    if kind == "gain":
        return strong - weak
    if kind == "fail":
        return 1.0 - weak
    if kind == "mix":
        return ((strong - weak) + (1.0 - weak)) / 2
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


def fit(examples: Sequence[Example], feats: Featurized, settings: Settings) -> Fitted:
    y = target_of(examples, settings.target)
    if settings.center_sources:
        sources = np.array([e.source for e in examples])
        for source in set(sources.tolist()):
            mask = sources == source
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
    sources = [e.source for e in examples]
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
    """Pooled within-benchmark standard deviation."""
    labels = np.array(sources)
    residual = values.astype(float).copy()
    for source in set(sources):
        mask = labels == source
        residual[mask] -= residual[mask].mean()
    return float(np.sqrt(np.mean(residual**2))) or 1.0


def export(fitted: Fitted, reference_raw: np.ndarray, version: str, points: int) -> dict[str, object]:
    """The weights document `LearnedModel.from_bytes` reads (rounded: compact, stable)."""
    quantiles = np.quantile(reference_raw, np.linspace(0, 1, points))
    return {
        "format": FORMAT,
        "version": version,
        "bias": round(fitted.bias, 6),
        "dense": [round(float(w), 6) for w in fitted.dense],
        "dense_means": [round(float(m), 6) for m in fitted.dense_means],
        "terms": {t: round(w, 5) for t, w in sorted(fitted.terms.items())},
        "reference": [round(float(q), 6) for q in quantiles],
    }
