"""A stand-in offline scorer for `octoroute eval` tests: the score is the number of '!' in the prompt."""

import sys
import types
from dataclasses import dataclass


@dataclass(frozen=True)
class Scored:
    score: float


class Scorer:
    def score_prompt(self, prompt, importance=None, task_type=None):
        return Scored(float(prompt.count("!")))


def build_offline_scorer(routing, default_tier, **_):
    return Scorer()


module = types.ModuleType("octoroute.routing.scoring")
module.build_offline_scorer = build_offline_scorer
sys.modules.setdefault("octoroute.routing.scoring", module)
