"""What the source loaders' own reports (`python -m training.zeroeval`, `.faithful_cot`)
share: a set's side means, the overlap check over everything loaded, the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from training import overlap
from training.data import Example

PrintReport = Callable[[Path, Path | None], list[Example]]


def report_means(examples: Sequence[Example], out: Callable[[str], None]) -> None:
    """'N examples; mean weak w, mean strong s' (nothing for no examples)."""
    if examples:
        mean_weak = sum(e.weak for e in examples) / len(examples)
        mean_strong = sum(e.strong for e in examples) / len(examples)
        out(f"   {len(examples)} examples; mean weak {mean_weak:.3f}, mean strong {mean_strong:.3f}")


def report_overlap(examples: Sequence[Example], reference: Path | None, out: Callable[[str], None]) -> None:
    """The overlap check against `reference` (skipped when None) and what it would remove."""
    if reference is None:
        return
    items = [overlap.Item(e.id, e.source, e.text) for e in examples]
    _, flags = overlap.split_clean(items, overlap.ReferenceIndex(overlap.load_reference(reference)))
    out("")
    overlap.report(flags, len(items))


def source_main(argv: Sequence[str] | None, description: str | None, repository: str, report: PrintReport) -> int:
    """`python -m training.<source> --git-dir DIR [--reference DIR] [--no-overlap]`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--git-dir", type=Path, required=True, help=f"bare git dir of {repository}")
    parser.add_argument("--reference", type=Path, default=overlap.DEFAULT_REFERENCE, help="evaluation prompts")
    parser.add_argument("--no-overlap", action="store_true", help="skip the overlap check")
    args = parser.parse_args(argv)
    report(args.git_dir, None if args.no_overlap else args.reference)
    sys.stdout.flush()
    return 0
