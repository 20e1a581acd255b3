"""Report the shipped scorer's quality on the RouteLLM evaluation sets (report only, never tune).

    python -m training.evaluate [--data ../shared/data/routellm] [--rounds 1000]

For each `*.jsonl` (lines with "prompt", "weak_score", "strong_score"): APGR
over every distinct score of the bundled `LearnedModel`, of prompt length in
characters, and of random scores (mean and spread over 200 seeds), then a
paired bootstrap of model minus length with its one-sided p-value.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Sequence
from pathlib import Path

import orjson

from octoroute.routing.learned import LearnedModel
from training.metrics import apgr, paired_bootstrap
from training.overlap import DEFAULT_REFERENCE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args(argv)
    model = LearnedModel.bundled()
    print(f"model {model.version}")
    print(f"{'benchmark':10s} {'n':>6s} {'model':>7s} {'length':>7s} {'random':>15s} {'model-length':>13s} {'p':>7s}")
    for path in sorted(args.data.glob("*.jsonl")):
        rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
        weak = [float(r["weak_score"]) for r in rows]
        strong = [float(r["strong_score"]) for r in rows]
        scores = [model.predict(r["prompt"]).score for r in rows]
        length = [float(len(r["prompt"])) for r in rows]
        randoms = []
        for seed in range(200):
            rng = random.Random(seed)
            randoms.append(apgr([rng.random() for _ in rows], weak, strong))
        diff, p = paired_bootstrap(scores, length, weak, strong, rounds=args.rounds)
        print(
            f"{path.stem:10s} {len(rows):6d} {apgr(scores, weak, strong):7.3f} {apgr(length, weak, strong):7.3f}"
            f" {statistics.mean(randoms):7.3f} ± {statistics.stdev(randoms):.3f} {diff:+13.3f} {p:7.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
