"""Train the learned default scorer and write the weights octoroute ships.

    pip install -e '.[train]'
    python -m training.train_scorer --llmrouter /path/to/LLMRouter.git [--routerdc /path/to/RouterDC.git]
        [--mmlu-pro /path/to/MMLU-Pro.git --zeroeval /path/to/ZeroEval.git --settings candidate]
        [--faithful-cot /path/to/Faithful-COT.git]

Reads the training data at the commits pinned in `training/data.py` (see
`DATA.md`), runs the overlap check against `../shared/data/routellm/` and drops
everything it flags (printing what and why), prints the validation numbers
(leave-one-benchmark-out APGR on the training data; with `--routerdc`, APGR on
RouterDC's Mixtral-vs-GPT-4 slices, which never enter the fit), fits on all
kept items and writes `src/octoroute/routing/learned_weights.json`. The fit is
deterministic: the same inputs give the same bytes.

The shipped weights come from `--llmrouter` alone with the `shipped` settings.
`--mmlu-pro`/`--zeroeval` add those licensed sources, and `--settings
candidate` picks the settings the 2026-12-07 selection over all of them
preferred; that candidate ranks the evaluation sets worse than the shipped
model, so it is not shipped (docs/routing-quality.md). Write it elsewhere
with `--out`. `--faithful-cot` adds Faithful-CoT's licensed sets (SVAMP,
AQuA, StrategyQA) to the fit and reports APGR on its validation-only sets (ASDiv,
MultiArith), which never enter it.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson

from training import data, faithful_cot, overlap
from training.fit import Settings, export, featurize, fit
from training.metrics import apgr
from training.select_model import extra_sources, held_out_apgr, loso, unseen

VERSION = "2026-12-07.6"
# Chosen by `training.select_model` on held-out training data only (DATA.md).
SETTINGS = Settings(target="mix", alpha=3.0, min_df=3, center_sources=False, length_prior=True, use_terms=False)
# The best held-out mean with MMLU-Pro and ZeroEval in the data (DATA.md); not shipped.
CANDIDATE = Settings(
    target="mix", alpha=3.0, min_df=3, center_sources=False, length_prior=True, use_terms=True, text_weight=4.0
)
NAMED_SETTINGS = {"shipped": SETTINGS, "candidate": CANDIDATE}
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src" / "octoroute" / "routing" / "learned_weights.json"


def checked_examples(examples: Sequence[data.Example], reference: Path) -> list[data.Example]:
    """The examples the overlap check passes; prints what it removed and why."""
    index = overlap.ReferenceIndex(overlap.load_reference(reference))
    items = [overlap.Item(e.id, e.source, e.text) for e in examples]
    kept, flags = overlap.split_clean(items, index)
    overlap.report(flags, len(items))
    kept_ids = {item.id for item in kept}
    clean = [e for e in examples if e.id in kept_ids]
    # Refuse to train on anything flagged, whatever happened above.
    leaked = [e.id for e in clean if index.match(overlap.Item(e.id, e.source, e.text)) is not None]
    if leaked:
        raise SystemExit(f"refusing to train: {len(leaked)} flagged items still in the training set")
    return clean


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--llmrouter", type=Path, required=True, help="git dir of ulab-uiuc/LLMRouter")
    parser.add_argument("--routerdc", type=Path, help="git dir of shuhao02/RouterDC (validation only)")
    parser.add_argument("--mmlu-pro", type=Path, help="git dir of TIGER-AI-Lab/MMLU-Pro")
    parser.add_argument("--zeroeval", type=Path, help="git dir of yuchenlin/ZeroEval")
    parser.add_argument("--faithful-cot", type=Path, help="git dir of veronica320/Faithful-COT")
    parser.add_argument("--settings", choices=sorted(NAMED_SETTINGS), default="shipped")
    parser.add_argument("--reference", type=Path, default=overlap.DEFAULT_REFERENCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    settings = NAMED_SETTINGS[args.settings]

    fcot_train, fcot_val = faithful_cot.split_shippable(
        faithful_cot.load_faithful_cot(args.faithful_cot) if args.faithful_cot else []
    )
    loaded = extra_sources(data.load_llmrouter(args.llmrouter), args.mmlu_pro, args.zeroeval, fcot_train)
    examples = checked_examples(loaded, args.reference)
    counts = Counter(e.source for e in examples)
    print(f"training on {len(examples)} items: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
    feats = featurize([e.text for e in examples])

    print(f"settings: {settings}")
    print("leave-one-benchmark-out APGR (model / length):")
    per_source = loso(examples, feats, settings)
    for source, (model, length) in per_source.items():
        print(f"  {source:22s} {model:.3f} / {length:.3f}")
    print(
        f"  {'mean':22s} {np.mean([v[0] for v in per_source.values()]):.3f}"
        f" / {np.mean([v[1] for v in per_source.values()]):.3f}"
    )

    fitted = fit(examples, feats, settings)
    if args.routerdc:
        held = data.load_routerdc(args.routerdc)
        held_feats = featurize([e.text for e in held])
        scores = fitted.raw_scores(held_feats)
        print("RouterDC RouterBench slices, Mixtral vs GPT-4 (never trained on), APGR model / length:")
        for source in sorted({e.source for e in held}):
            idx = [i for i, e in enumerate(held) if e.source == source]
            weak = [held[i].weak for i in idx]
            strong = [held[i].strong for i in idx]
            print(
                f"  {source:26s} {apgr(scores[idx].tolist(), weak, strong):.3f}"
                f" / {apgr(held_feats.dense[idx, 0].tolist(), weak, strong):.3f}"
            )

    if fcot_val:
        held = unseen(checked_examples(fcot_val, args.reference), examples)
        print(f"{len(held)} Faithful-CoT validation items are no near copy of a training item")
        print("Faithful-CoT validation-only sets (never trained on), APGR model / length:")
        for source, (model, length) in held_out_apgr(fitted, held, featurize([e.text for e in held])).items():
            print(f"  {source:26s} {model:.3f} / {length:.3f}")

    document = export(fitted, fitted.raw_scores(feats), VERSION, settings.reference_points)
    payload = orjson.dumps(document, option=orjson.OPT_SORT_KEYS) + b"\n"
    args.out.write_bytes(payload)
    print(f"wrote {args.out} ({len(payload):,} bytes, {len(fitted.terms):,} terms, version {VERSION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
