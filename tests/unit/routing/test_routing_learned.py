from __future__ import annotations

import math
from itertools import pairwise

import orjson
import pytest

from octoroute.config.weightsfile import DENSE_FEATURES, FORMAT
from octoroute.routing.learned import (
    DENSE_NAMES,
    HEAD_CHARS,
    MAX_FACTORS,
    MAX_TOKENS,
    TAIL_CHARS,
    LearnedModel,
    dense_features,
    extract_terms,
    percentile,
    window_of,
)


def weights_doc(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "format": FORMAT,
        "version": "test.1",
        "bias": 0.0,
        "dense": [1.0 if name == "log_length" else 0.0 for name in DENSE_NAMES],
        "dense_means": [0.0] * len(DENSE_NAMES),
        "terms": {"integral": 2.0, "prove that": 1.0, "hello": -1.0},
        "reference": [float(i) for i in range(11)],
    }
    doc.update(overrides)
    return doc


def model_of(**overrides: object) -> LearnedModel:
    return LearnedModel.from_bytes(orjson.dumps(weights_doc(**overrides)))


def test_bundled_model_loads_once_and_scores() -> None:
    model = LearnedModel.bundled()
    assert model is LearnedModel.bundled()
    assert model.version
    for text in ["", "hi", "Prove that the integral of 1/x diverges.", "x" * 200_000]:
        prediction = model.predict(text)
        assert 0.0 <= prediction.score <= 1.0
        assert len(prediction.factors) <= MAX_FACTORS
        magnitudes = [abs(value) for _, value in prediction.factors]
        assert magnitudes == sorted(magnitudes, reverse=True)


def test_bundled_model_is_deterministic() -> None:
    model = LearnedModel.bundled()
    text = "A train leaves at 3 pm at 60 km/h; a second leaves at 4 pm at 80 km/h. When does it catch up?"
    assert model.predict(text) == model.predict(text)
    assert LearnedModel.from_bytes(orjson.dumps(weights_doc())).predict(text) == model_of().predict(text)


def test_only_head_tail_and_length_are_read() -> None:
    model = LearnedModel.bundled()
    head = "Summarize the following report in three bullet points.\n" + "a" * HEAD_CHARS
    tail = "b" * TAIL_CHARS + "\nWhat were the main risks?"
    busy = "The numbers 1 2 3 4 5 look fine. " * 3000
    calm = ("Nothing but calm prose here, really. " * 3000)[: len(busy)]
    one, other = head + busy + tail, head + calm + tail
    assert len(one) == len(other)
    assert window_of(one) == window_of(other)
    assert model.predict(one) == model.predict(other)


def test_length_is_an_explicit_prior() -> None:
    model = model_of(terms={})
    short, long = model.predict("a" * 10), model.predict("a" * 10_000)
    assert short.score < long.score
    assert long.factors[0] == ("length 10,000 chars", pytest.approx(math.log1p(10_000)))


def test_word_factors_name_the_term_and_rank_by_size() -> None:
    model = model_of(dense=[0.0] * len(DENSE_NAMES))
    prediction = model.predict("Prove that the integral converges")
    names = [name for name, _ in prediction.factors]
    assert names == ["word 'integral'", "word 'prove that'"]
    scale = 1 / math.sqrt(len(extract_terms("Prove that the integral converges")))
    assert prediction.factors[0][1] == pytest.approx(2.0 * scale)
    assert model.predict("hello there").score < model.predict("integral there").score


def test_terms_fold_digits_and_keep_punctuation() -> None:
    terms = extract_terms("What is 12 + 345?")
    assert {"0", "+", "?", "is 0", "0 +", "+ 0", "0 ?"} <= terms
    assert "12" not in terms


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (5.0, 5.5 / 11),  # the sixth of eleven reference points: half its step below
        (5.5, 6.0 / 11),
        (0.0, 0.5 / 11),
        (10.0, 10.5 / 11),
    ],
)
def test_score_is_a_percentile_of_the_reference(raw: float, expected: float) -> None:
    reference = tuple(float(i) for i in range(11))
    assert percentile(reference, raw) == pytest.approx(expected)


def test_percentile_is_strictly_increasing_and_bounded() -> None:
    reference = (0.0, 1.0, 1.0, 2.0, 5.0)
    raws = [-1e9, -50.0, -1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 6.0, 50.0]
    scores = [percentile(reference, raw) for raw in raws]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert all(a < b for a, b in pairwise(scores[1:]))
    assert scores[0] <= scores[1]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"format": "something-else/1"}, "not a weights file of format octoroute-learned-scorer/1: format"),
        ({"dense": [1.0]}, "dense: Tuple should have at least 9 items"),
        ({"dense_means": [0.0] * 10}, "dense_means: Tuple should have at most 9 items"),
        ({"reference": [1.0]}, "reference: Tuple should have at least 2 items"),
        ({"reference": [1.0, 1.0]}, "at least two different raw scores"),
        ({"bias": "1"}, "bias: Input should be a valid number"),
        ({"terms": {"x": True}}, "terms.x: Input should be a valid number"),
        ({"version": ""}, "version"),
    ],
)
def test_from_bytes_rejects_bad_files(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model_of(**overrides)


def test_from_bytes_rejects_non_object_and_non_json() -> None:
    with pytest.raises(ValueError, match="weights file"):
        LearnedModel.from_bytes(b"[1, 2]")
    with pytest.raises(ValueError, match="not JSON"):
        LearnedModel.from_bytes(b'{"bias": 0.0,')
    nan = orjson.dumps(weights_doc()).replace(b'"bias":0.0', b'"bias":NaN')
    with pytest.raises(ValueError, match="bias: Input should be a finite number"):
        LearnedModel.from_bytes(nan)


def test_format_one_has_a_weight_per_dense_feature() -> None:
    assert len(DENSE_NAMES) == DENSE_FEATURES


def test_token_cap_bounds_what_a_window_contributes() -> None:
    # Past MAX_TOKENS tokens the window adds no terms, whatever the script.
    base = "! " * MAX_TOKENS
    assert extract_terms(base + "integral") == extract_terms(base + "proof")
    assert "integral" in extract_terms("! " * (MAX_TOKENS - 1) + "integral")


def test_a_run_of_cjk_letters_is_one_token() -> None:
    assert extract_terms("\u6f22\u5b57\u304b\u306a\u3002ok") == {
        "\u6f22\u5b57\u304b\u306a",
        "\u3002",
        "ok",
        "\u6f22\u5b57\u304b\u306a \u3002",
        "\u3002 ok",
    }


@pytest.mark.parametrize(
    ("text", "options"),
    [
        ("Which one?\nA. red\nB. blue\n(C) green\nd) grey\nE: none", 5),
        ("A.B. Smith wrote:\nA dog.\nAnswer: B", 0),
        ("Pick:\n" + "A. x\n" * 500, 10),  # capped
    ],
)
def test_answer_options_are_counted_per_line(text: str, options: int) -> None:
    assert dense_features(text, window_of(text))[DENSE_NAMES.index("options")] == options
