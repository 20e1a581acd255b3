"""The call-performance curve of `octoroute eval --plot` as a PNG (matplotlib, the `eval` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from octoroute.cli.evaluate import PLOT_EXTRA_HINT, EvalProblem, Report, RowReport


def check_plotting() -> None:
    """Fail before any work when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise EvalProblem(f"--plot needs matplotlib: {PLOT_EXTRA_HINT}") from exc


def write_plot(report: Report, path: Path) -> None:
    """Quality against the share of strong calls: each router, length, random, the weak and strong models."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    from matplotlib import pyplot

    labels = report.labels
    weak, strong = labels.weak_mean, labels.strong_mean
    rows: Sequence[RowReport] = (*report.rows, *((report.length,) if report.length else ()))
    figure, axes = pyplot.subplots(figsize=(7.5, 5.5), dpi=120)
    try:
        for row in rows:
            curve = row.metrics.curve
            few = len(curve) <= 40
            axes.plot(
                [p.cost * 100 for p in curve],
                [p.quality for p in curve],
                marker="o" if few else None,
                markersize=4,
                linewidth=1.6,
                label=f"{row.name} (APGR {row.metrics.apgr_every:.3f})",
            )
        axes.plot([0, 100], [weak, strong], linestyle=":", color="grey", label="random (APGR 0.500)")
        axes.axhline(weak, linestyle="--", color="tab:grey", linewidth=1, label=f"weak model only ({weak:.3f})")
        axes.axhline(strong, linestyle="--", color="tab:red", linewidth=1, label=f"strong model only ({strong:.3f})")
        axes.set_xlim(0, 100)
        axes.set_xlabel("strong model calls (%)")
        axes.set_ylabel("quality (mean score of the routed answers)")
        axes.set_title(report.title, fontsize=10)
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right", fontsize=8)
        figure.tight_layout()
        try:
            figure.savefig(path, format="png")
        except OSError as exc:
            raise EvalProblem(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        pyplot.close(figure)
