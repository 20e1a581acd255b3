"""Decision time of the learned scorer: `LearnedModel.predict` per call, p50 and p99.

Times single calls on prompts from a short question to a 100 KB paste (English,
and CJK, which has no spaces between words), after a warm-up, and prints a table in µs: CPU time of the calling thread
(`time.thread_time_ns`, what one core spends) and wall time
(`time.perf_counter_ns`, which on a loaded machine also counts the time the
scheduler gave other processes, so its p99 shows the machine more than the
scorer). The scorer reads a bounded head and tail window plus the length, so
the 100 KB row should sit near the medium row. It reports and never fails on a
number.

    .venv/bin/python bench/decision_time.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from octoroute.routing.learned import LearnedModel

SHORT = "What is the capital of Australia?"
MEDIUM = (
    "A store sells pencils at 3 for $0.75 and pens at 2 for $1.50. Maria buys 12 pencils and 5 pens, "
    "pays with a $10 bill and gets a 10% discount on the pens. How much change does she get? "
) * 14
PARAGRAPH = (
    "The quarterly report shows revenue grew 12% year over year while operating costs fell 3%, "
    "driven by lower logistics spend and a smaller contractor budget in the second half. "
)


def prompts() -> list[tuple[str, str]]:
    long = (PARAGRAPH * (100_000 // len(PARAGRAPH) + 1))[:100_000] + "\n\nSummarize the report above in three bullets."
    cjk = ("财务报告显示收入增长。" * 10_000)[:100_000] + "请总结。"
    return [
        ("short (33 chars)", SHORT),
        (f"medium ({len(MEDIUM):,} chars)", MEDIUM),
        ("100 KB paste", long),
        ("100 KB CJK (no spaces)", cjk),
    ]


def time_calls(model: LearnedModel, text: str, calls: int) -> tuple[list[int], list[int]]:
    """Sorted wall-clock and CPU (this thread) nanoseconds of each call."""
    for _ in range(50):
        model.predict(text)
    wall, cpu = [], []
    for _ in range(calls):
        wall_start, cpu_start = time.perf_counter_ns(), time.thread_time_ns()
        model.predict(text)
        cpu.append(time.thread_time_ns() - cpu_start)
        wall.append(time.perf_counter_ns() - wall_start)
    return sorted(wall), sorted(cpu)


def nearest_rank(sorted_ns: list[int], share: float) -> float:
    index = max(0, min(len(sorted_ns) - 1, round(share * len(sorted_ns)) - 1))
    return sorted_ns[index] / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    started = time.perf_counter()
    model = LearnedModel.bundled()
    load_ms = (time.perf_counter() - started) * 1000
    table = Table(title=f"LearnedModel.predict, model {model.version} (weights loaded in {load_ms:.1f} ms)")
    for column in ("prompt", "calls", "CPU p50 µs", "CPU p99 µs", "wall p50 µs", "wall p99 µs"):
        table.add_column(column, justify="left" if column == "prompt" else "right")
    for name, text in prompts():
        wall, cpu = time_calls(model, text, args.calls)
        table.add_row(
            name,
            f"{len(wall):,}",
            f"{nearest_rank(cpu, 0.50):.1f}",
            f"{nearest_rank(cpu, 0.99):.1f}",
            f"{nearest_rank(wall, 0.50):.1f}",
            f"{nearest_rank(wall, 0.99):.1f}",
        )
    Console(width=120).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
