"""Model selection on held-out TRAINING data only (never on the evaluation sets).

Leave-one-benchmark-out over the overlap-checked LLMRouter sources: fit on
all other benchmarks, score the held-out one, APGR with its weak/strong model
means; benchmarks where the strong side gains less than `MIN_GAP` are skipped
(APGR is undefined or pure noise there). With `--routerdc`, also fit on all
LLMRouter data and report APGR on RouterDC's RouterBench slices (Mixtral vs
GPT-4, the evaluation sets' model pair; validation only, no license to ship).

    python -m training.select_model --llmrouter GITDIR [--routerdc GITDIR]
        [--mmlu-pro GITDIR] [--zeroeval GITDIR] [--faithful-cot GITDIR]

`--mmlu-pro`, `--zeroeval` and `--faithful-cot` add those sources
(`training/mmlu_pro.py`, `training/zeroeval.py`, `training/faithful_cot.py`)
to the training data and to the held-out benchmarks. Faithful-CoT's
validation-only sets (ASDiv, MultiArith: no license found) never enter a fit:
like RouterDC's slices they are scored by a model fitted on all training data,
without the items that near-copy a training item. When a Faithful-CoT set is
held out, each line also gives the LOSO mean without them, comparable with
selections run before they were added.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training import data, faithful_cot, mmlu_pro, overlap, zeroeval
from training.fit import Featurized, Fitted, Settings, featurize, fit
from training.metrics import apgr

MIN_GAP = 0.05


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
        fitted = fit(train_examples, feats.subset(np.flatnonzero(~test)), settings)
        scores = fitted.raw_scores(feats.subset(np.flatnonzero(test)))
        length = feats.dense[test, 0]
        result[source] = (
            apgr(scores.tolist(), weak[test].tolist(), strong[test].tolist()),
            apgr(length.tolist(), weak[test].tolist(), strong[test].tolist()),
        )
    return result


def loso_summary(per_source: dict[str, tuple[float, float]]) -> str:
    """'LOSO mean m (length l)', plus the same over the sources before Faithful-CoT's when any of those is held out.

    The second mean compares with selections run without Faithful-CoT (DATA.md's "old sources").
    """
    line = ""
    groups = [("", list(per_source.values()))]
    older = [v for source, v in per_source.items() if not source.startswith("fcot-")]
    if len(older) < len(per_source):
        groups.append((f" without fcot ({len(older)})", older))
    for label, values in groups:
        line += (
            f" LOSO mean{label} {np.mean([v[0] for v in values]):.3f} (length {np.mean([v[1] for v in values]):.3f})"
        )
    return line.lstrip()


def extra_sources(
    examples: Sequence[data.Example],
    mmlu_pro_dir: Path | None,
    zeroeval_dir: Path | None,
    faithful_cot_examples: Sequence[data.Example] = (),
) -> list[data.Example]:
    """`examples` plus MMLU-Pro's and ZeroEval's items when their git dirs are given, plus Faithful-CoT's.

    ZeroEval's numersense-v2 stays out: eight decimal pairs asked in 64
    wordings each teach one narrow pattern (see `training/zeroeval.py`).
    Faithful-CoT's validation-only sets are refused here, whoever passes them.
    """
    out = list(examples)
    if mmlu_pro_dir is not None:
        out += mmlu_pro.load_mmlu_pro(mmlu_pro_dir)
    if zeroeval_dir is not None:
        out += [e for e in zeroeval.load_zeroeval(zeroeval_dir) if e.source != "zeroeval-numersense-v2"]
    if any(e.source in faithful_cot.VALIDATION_ONLY for e in faithful_cot_examples):
        raise ValueError("Faithful-CoT's validation-only sets are never training data")
    return out + list(faithful_cot_examples)


def held_out_apgr(fitted: Fitted, held: Sequence[data.Example], feats: Featurized) -> dict[str, tuple[float, float]]:
    """Per source of `held` (never fitted on): (APGR of `fitted`'s scores, APGR of length)."""
    scores = fitted.raw_scores(feats)
    result: dict[str, tuple[float, float]] = {}
    for source in sorted({e.source for e in held}):
        mask = np.array([e.source == source for e in held])
        weak = [e.weak for e, m in zip(held, mask, strict=True) if m]
        strong = [e.strong for e, m in zip(held, mask, strict=True) if m]
        result[source] = (
            apgr(scores[mask].tolist(), weak, strong),
            apgr(feats.dense[mask, 0].tolist(), weak, strong),
        )
    return result


def unseen(held: Sequence[data.Example], training: Sequence[data.Example]) -> list[data.Example]:
    """The held-out items that are no near copy of a training item (the overlap check's thresholds).

    SVAMP varies ASDiv's problems: ~5% of ASDiv are near copies of a SVAMP item,
    and a held-out score on them would measure recall, not generalisation.
    """
    index = overlap.ReferenceIndex([overlap.Item(e.id, e.source, e.text) for e in training])
    return [e for e in held if index.match(overlap.Item(e.id, e.source, e.text)) is None]


def checked(examples: Sequence[data.Example], index: overlap.ReferenceIndex) -> list[data.Example]:
    """The examples the overlap check passes."""
    kept_ids = {i.id for i in overlap.split_clean([overlap.Item(e.id, e.source, e.text) for e in examples], index)[0]}
    return [e for e in examples if e.id in kept_ids]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llmrouter", type=Path, required=True)
    parser.add_argument("--routerdc", type=Path)
    parser.add_argument("--mmlu-pro", type=Path, help="git dir of TIGER-AI-Lab/MMLU-Pro")
    parser.add_argument("--zeroeval", type=Path, help="git dir of yuchenlin/ZeroEval")
    parser.add_argument("--faithful-cot", type=Path, help="git dir of veronica320/Faithful-COT")
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
    fcot_train, fcot_val = faithful_cot.split_shippable(
        faithful_cot.load_faithful_cot(args.faithful_cot) if args.faithful_cot else []
    )
    examples = extra_sources(data.load_llmrouter(args.llmrouter), args.mmlu_pro, args.zeroeval, fcot_train)
    excluded = set(filter(None, args.exclude.split(",")))
    examples = [e for e in checked(examples, index) if e.source not in excluded]
    feats = featurize([e.text for e in examples])
    rdc = data.load_routerdc(args.routerdc) if args.routerdc else []
    rdc_feats = featurize([e.text for e in rdc]) if rdc else None
    fcot_val = unseen(checked(fcot_val, index), examples)
    if fcot_val:
        print(f"Faithful-CoT validation: {len(fcot_val)} items, none a near copy of a training item", flush=True)
    fcot_val_feats = featurize([e.text for e in fcot_val]) if fcot_val else None
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
        line = (
            f"{target:5s} alpha={alpha:<5g} center={center!s:5s} prior={prior!s:5s} min_df={min_df}"
            f" terms={terms!s:5s} text_weight={text_weight:<4g} {loso_summary(per_source)}"
        )
        fitted = fit(examples, feats, settings) if rdc_feats is not None or fcot_val_feats is not None else None
        if fitted is not None and rdc_feats is not None:
            rdc_apgr = held_out_apgr(fitted, rdc, rdc_feats)
            line += "  routerdc model/length: " + " ".join(
                f"{source.split('-')[1][:5]} {model:.3f}/{length:.3f}" for source, (model, length) in rdc_apgr.items()
            )
            line += f"  ALL {np.mean([v[0] for v in per_source.values()] + [v[0] for v in rdc_apgr.values()]):.4f}"
        if fitted is not None and fcot_val_feats is not None:
            val_apgr = held_out_apgr(fitted, fcot_val, fcot_val_feats)
            line += "  fcot-val model/length: " + " ".join(
                f"{source.split('-')[1][:5]} {model:.3f}/{length:.3f}" for source, (model, length) in val_apgr.items()
            )
        print(line, flush=True)
        print("   " + " ".join(f"{k[:8]} {v[0]:.3f}/{v[1]:.3f}" for k, v in per_source.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
