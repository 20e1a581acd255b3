"""Model selection on held-out TRAINING data only (never on the evaluation sets).

Leave-one-benchmark-out over the overlap-checked LLMRouter sources: fit on
all other benchmarks, score the held-out one, APGR with its weak/strong model
means; benchmarks where the strong side gains less than `MIN_GAP` are skipped
(APGR is undefined or pure noise there). With `--routerdc`, also fit on all
LLMRouter data and report APGR on RouterDC's RouterBench slices (Mixtral vs
GPT-4, the evaluation sets' model pair; validation only, no license to ship).

    python -m training.select_model --llmrouter GITDIR [--routerdc GITDIR]
        [--mmlu-pro GITDIR] [--zeroeval GITDIR]

`--mmlu-pro` and `--zeroeval` add those sources (`training/mmlu_pro.py`,
`training/zeroeval.py`) to the training data and to the held-out benchmarks.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training import data, mmlu_pro, overlap, zeroeval
from training.fit import Featurized, Settings, featurize, fit
from training.metrics import apgr

MIN_GAP = 0.05


def _subset(feats: Featurized, mask: np.ndarray) -> Featurized:
    idx = np.flatnonzero(mask)
    return Featurized([feats.terms[i] for i in idx], feats.dense[idx])


def loso(
    examples: Sequence[data.Example], feats: Featurized, settings: Settings, oracle: bool = True
) -> dict[str, tuple[float, float]]:
    """Per held-out benchmark: (APGR of the model fitted on the others, APGR of length).

    With `oracle`, the strong side of LLMRouter items is a model that answers
    everything (score 1): APGR then measures how well the weak models' failures
    are ranked first. The ~50B models that are LLMRouter's strong side fail most
    hard items themselves, so their gain rewards middling items; a deployment's
    deep tier (and GPT-4 next to Mixtral) is much stronger than that. Other
    sources (MMLU-Pro, ZeroEval) have GPT-4-class strong runs and keep them.
    """
    sources = np.array([e.source for e in examples])
    weak = np.array([e.weak for e in examples])
    strong = np.array([1.0 if oracle and e.id.startswith("llmrouter:") else e.strong for e in examples])
    result: dict[str, tuple[float, float]] = {}
    for source in sorted(set(sources.tolist())):
        test = sources == source
        if strong[test].mean() - weak[test].mean() < MIN_GAP:
            continue
        train_examples = [e for e, keep in zip(examples, ~test, strict=True) if keep]
        fitted = fit(train_examples, _subset(feats, ~test), settings)
        scores = fitted.raw_scores(_subset(feats, test))
        length = feats.dense[test, 0]
        result[source] = (
            apgr(scores.tolist(), weak[test].tolist(), strong[test].tolist()),
            apgr(length.tolist(), weak[test].tolist(), strong[test].tolist()),
        )
    return result


def extra_sources(
    examples: Sequence[data.Example], mmlu_pro_dir: Path | None, zeroeval_dir: Path | None
) -> list[data.Example]:
    """`examples` plus MMLU-Pro's and ZeroEval's items when their git dirs are given.

    ZeroEval's numersense-v2 stays out: eight decimal pairs asked in 64
    wordings each teach one narrow pattern (see `training/zeroeval.py`).
    """
    out = list(examples)
    if mmlu_pro_dir is not None:
        out += mmlu_pro.load_mmlu_pro(mmlu_pro_dir)
    if zeroeval_dir is not None:
        out += [e for e in zeroeval.load_zeroeval(zeroeval_dir) if e.source != "zeroeval-numersense-v2"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llmrouter", type=Path, required=True)
    parser.add_argument("--routerdc", type=Path)
    parser.add_argument("--mmlu-pro", type=Path, help="git dir of TIGER-AI-Lab/MMLU-Pro")
    parser.add_argument("--zeroeval", type=Path, help="git dir of yuchenlin/ZeroEval")
    parser.add_argument("--reference", type=Path, default=overlap.DEFAULT_REFERENCE)
    parser.add_argument("--targets", default="gain,fail,mix")
    parser.add_argument("--alphas", default="0.3,1,3")
    parser.add_argument("--center", default="1,0")
    parser.add_argument("--length-prior", default="0", help="0, 1 or 0,1")
    parser.add_argument("--min-df", default="3")
    parser.add_argument("--terms", default="1", help="1, 0 or 1,0")
    parser.add_argument("--text-weights", default="1", help="text part relative to the length prior, e.g. 0.5,1,2")
    parser.add_argument("--pair", action="store_true", help="validate on the ~50B models' gain, not weak failures")
    parser.add_argument("--exclude", default="", help="comma-separated sources left out of training")
    args = parser.parse_args(argv)
    index = overlap.ReferenceIndex(overlap.load_reference(args.reference))
    examples = extra_sources(data.load_llmrouter(args.llmrouter), args.mmlu_pro, args.zeroeval)
    kept_ids = {i.id for i in overlap.split_clean([overlap.Item(e.id, e.source, e.text) for e in examples], index)[0]}
    excluded = set(filter(None, args.exclude.split(",")))
    examples = [e for e in examples if e.id in kept_ids and e.source not in excluded]
    feats = featurize([e.text for e in examples])
    rdc = data.load_routerdc(args.routerdc) if args.routerdc else []
    rdc_feats = featurize([e.text for e in rdc]) if rdc else None
    grid = itertools.product(
        args.targets.split(","),
        [float(a) for a in args.alphas.split(",")],
        [c == "1" for c in args.center.split(",")],
        [c == "1" for c in args.length_prior.split(",")],
        [int(m) for m in args.min_df.split(",")],
        [c == "1" for c in args.terms.split(",")],
        [float(t) for t in args.text_weights.split(",")],
    )
    for target, alpha, center, prior, min_df, terms, text_weight in grid:
        settings = Settings(
            target=target,
            alpha=alpha,
            center_sources=center,
            length_prior=prior,
            min_df=min_df,
            use_terms=terms,
            text_weight=text_weight,
        )
        per_source = loso(examples, feats, settings, oracle=not args.pair)
        model_mean = np.mean([v[0] for v in per_source.values()])
        length_mean = np.mean([v[1] for v in per_source.values()])
        line = (
            f"{target:5s} alpha={alpha:<5g} center={center!s:5s} prior={prior!s:5s} min_df={min_df}"
            f" terms={terms!s:5s} text_weight={text_weight:<4g} LOSO mean {model_mean:.3f} (length {length_mean:.3f})"
        )
        if rdc_feats is not None:
            fitted = fit(examples, feats, settings)
            scores = fitted.raw_scores(rdc_feats)
            parts = []
            means = []
            for source in sorted({e.source for e in rdc}):
                mask = np.array([e.source == source for e in rdc])
                w = [e.weak for e, m in zip(rdc, mask, strict=True) if m]
                s = [e.strong for e, m in zip(rdc, mask, strict=True) if m]
                means.append(apgr(scores[mask].tolist(), w, s))
                parts.append(
                    f"{source.split('-')[1][:5]} {apgr(scores[mask].tolist(), w, s):.3f}"
                    f"/{apgr(rdc_feats.dense[mask, 0].tolist(), w, s):.3f}"
                )
            line += "  routerdc model/length: " + " ".join(parts)
            line += f"  ALL {np.mean([v[0] for v in per_source.values()] + means):.4f}"
        print(line, flush=True)
        print("   " + " ".join(f"{k[:8]} {v[0]:.3f}/{v[1]:.3f}" for k, v in per_source.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
