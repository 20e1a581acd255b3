"""`octoroute eval`'s report as a terminal table (rich) or as one JSON object."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from octoroute.cli.evaluate import Report, RowReport
from octoroute.routing.evaluation import PairedComparison, Spread

DASH = "—"


def render_table(report: Report, console: Console) -> None:
    labels, options = report.labels, report.options
    console.print(f"[bold]{report.title}[/]", highlight=False)
    console.print(
        f"weak mean {labels.weak_mean:.4f}, strong mean {labels.strong_mean:.4f}, "
        f"{len(labels.weak)} items; random: {options.draws} draws, seed {options.seed}",
        highlight=False,
    )
    for name, count in report.counts:
        console.print(f"  {name}: {count}", highlight=False)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for header in _HEADERS:
        table.add_column(header, justify="left" if header == "router" else "right", no_wrap=True)
    for row in (*report.rows, *((report.length,) if report.length else ())):
        table.add_row(*_row_cells(row, len(labels.weak)))
    random = report.random
    table.add_row(
        "random",
        _spread(random.apgr_quantile, percent=False),
        _spread(random.apgr_every, percent=False),
        _spread(random.cpt50, percent=True),
        _spread(random.cpt80, percent=True),
        DASH,
        DASH,
        DASH,
    )
    console.print(table)
    every = random.apgr_every
    console.print(
        f"random APGR (every score): 95% of draws between {every.low:.4f} and {every.high:.4f}",
        highlight=False,
    )
    if options.resamples and report.length is not None:
        console.print(
            f"Δ vs length: paired bootstrap, {options.resamples} resamples of the items, seed {options.seed + 1}",
            highlight=False,
        )
    for note in report.notes:
        console.print(note, highlight=False)


_HEADERS = (
    "router",
    "APGR\n10-bin",
    "APGR\nevery score",
    "CPT\n50%",
    "CPT\n80%",
    "p vs\nrandom",
    "Δ APGR vs length\n[95% CI]",
    "p\nΔ ≤ 0",
)


def _row_cells(row: RowReport, items: int) -> tuple[str, ...]:
    m = row.metrics
    scores = "1 score" if m.distinct_scores == 1 else f"{m.distinct_scores} scores"
    covered = "" if row.items == items else f", {row.items} items"
    return (
        f"{row.name}\n[dim]{scores}{covered}[/]",
        f"{m.apgr_quantile:.3f}",
        f"{m.apgr_every:.3f}",
        f"{m.cpt50:.1%}",
        f"{m.cpt80:.1%}",
        _p(row.p_vs_random),
        _difference(row.vs_length),
        _p(row.vs_length.p_value) if row.vs_length else DASH,
    )


def _spread(spread: Spread, *, percent: bool) -> str:
    if percent:
        return f"{spread.mean:.1%}\n±{spread.std:.1%}"
    return f"{spread.mean:.3f}\n±{spread.std:.3f}"


def _difference(comparison: PairedComparison | None) -> str:
    if comparison is None:
        return DASH
    return f"{comparison.difference:+.3f} [{comparison.low:+.3f}, {comparison.high:+.3f}]"


def _p(value: float) -> str:
    return f"{value:.3f}" if value >= 0.001 else f"{value:.4f}"


# -- JSON ----------------------------------------------------------------------


def report_json(report: Report, plot: str | None) -> dict[str, object]:
    labels, options = report.labels, report.options
    random = report.random
    rows: list[dict[str, object]] = [_row_json(row, "router") for row in report.rows]
    if report.length is not None:
        rows.append(_row_json(report.length, "length"))
    rows.append(
        {
            "name": "random",
            "kind": "random",
            "items": len(labels.weak),
            "draws": random.draws,
            "apgr_quantile": _spread_json(random.apgr_quantile),
            "apgr_every": _spread_json(random.apgr_every),
            "cpt50": _spread_json(random.cpt50),
            "cpt80": _spread_json(random.cpt80),
        }
    )
    document: dict[str, object] = {
        "title": report.title,
        "items": len(labels.weak),
        "weak_mean": _round(labels.weak_mean),
        "strong_mean": _round(labels.strong_mean),
        "seed": options.seed,
        "random_draws": options.draws,
        "bootstrap_resamples": options.resamples,
        "rows": rows,
        "notes": list(report.notes),
        "plot": plot,
    }
    if report.counts:
        document["counts"] = dict(report.counts)
    return document


def _row_json(row: RowReport, kind: str) -> dict[str, object]:
    m = row.metrics
    comparison = row.vs_length
    return {
        "name": row.name,
        "kind": kind,
        "items": row.items,
        "distinct_scores": m.distinct_scores,
        "apgr_quantile": _round(m.apgr_quantile),
        "apgr_every": _round(m.apgr_every),
        "cpt50": _round(m.cpt50),
        "cpt80": _round(m.cpt80),
        "p_vs_random": _round(row.p_vs_random),
        "vs_length": None if comparison is None else comparison_json(comparison),
    }


def comparison_json(comparison: PairedComparison) -> dict[str, object]:
    """A paired bootstrap of two routers, as `vs_length` (and `train`'s `vs_bundled`) give it."""
    return {
        "apgr_difference": _round(comparison.difference),
        "ci95": [_round(comparison.low), _round(comparison.high)],
        "p_value": _round(comparison.p_value),
        "resamples": comparison.resamples,
        "dropped": comparison.dropped,
    }


def _spread_json(spread: Spread) -> dict[str, float]:
    return {
        "mean": _round(spread.mean),
        "std": _round(spread.std),
        "low": _round(spread.low),
        "high": _round(spread.high),
    }


def _round(value: float) -> float:
    return round(value, 6)
