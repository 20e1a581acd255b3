from __future__ import annotations

import pytest
from training.data import format_prompt


@pytest.mark.parametrize(
    ("choices", "metric", "expected"),
    [
        (None, "f1_score", "Q?"),
        (
            {"label": ["A", "B"], "text": ["red", "blue"]},
            "em_mc",
            "Q?\nA. red\nB. blue",
        ),
        # labels under "labels", and a mismatch in count falls back to letters
        ({"labels": ["1"], "text": ["x", "y"]}, "em_mc", "Q?\nA. x\nB. y"),
        # options stored as the text of a Python list
        ("['$100', '$150']", "em_mc", "Q?\nA. $100\nB. $150"),
        (
            "['assert f(1) == 2', 'assert f(0) == 1']",
            "code_eval",
            "Q?\nYour code should pass these tests:\nassert f(1) == 2\nassert f(0) == 1",
        ),
    ],
)
def test_prompts_carry_their_options_as_a_user_would_send_them(choices: object, metric: str, expected: str) -> None:
    assert format_prompt("Q?", choices, metric) == expected
