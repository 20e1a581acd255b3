"""What observability costs per request, measured in-process, without the network.

Runs the calls one routed, non-streaming request makes into `octoroute.observe`
(the request trace, every Prometheus metric it moves, the decisions window,
the access-log check) with metrics on (`PrometheusRecorder`) and off (the
do-nothing `Recorder`), and prints the CPU time per request of each and their
difference. This isolates the cost that `bench/overhead.py`'s "metrics off" row
measures end to end, where loopback and scheduling noise is larger than the
difference itself.

    .venv/bin/python bench/metrics_cost.py [--requests 50000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from octoroute.core.types import Strategy
from octoroute.observe.metrics import PrometheusRecorder, Recorder
from octoroute.observe.observer import Observer

ROUTE = "/v1/chat/completions"


def request_path(recorder: Recorder) -> Callable[[], None]:
    """One request's observability calls, in the order the gateway makes them."""
    observer = Observer.build(
        recorder, decisions_kept=500, events_file=None, log_content=False, tracing=None, multiprocess_dir=None
    )

    def one() -> None:
        trace = observer.start("4137b125220c000000000001", ROUTE, "POST", None)
        recorder.http_started()
        recorder.routed("fast", Strategy.RULE, 0.05)
        trace.model, trace.tier, trace.strategy, trace.reason = "auto", "fast", "rule", "rule_casual_short"
        recorder.attempt_started("fast")
        recorder.attempt_finished("fast/qwen", None, 0.0012)
        recorder.degradations(())
        trace.group, trace.endpoint, trace.attempts = "fast", "fast/qwen", 1
        recorder.tokens("fast/qwen", 12, 40)
        trace.set_usage(12, 40)
        trace.status, trace.latency_ms = 200, 1.4
        observer.finish(trace)
        recorder.http_finished(ROUTE, "POST", 200, 0.0014)

    return one


def cpu_per_call(fn: Callable[[], None], requests: int) -> float:
    """CPU microseconds per call over `requests` calls."""
    started = time.process_time()
    for _ in range(requests):
        fn()
    return (time.process_time() - started) / requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50_000, help="requests per measurement")
    parser.add_argument("--repeat", type=int, default=7, help="measurements per variant (the median is reported)")
    args = parser.parse_args()
    variants = {
        "metrics on": request_path(PrometheusRecorder(["fast/qwen"], ["fast"])),
        "metrics off": request_path(Recorder()),
    }
    for fn in variants.values():
        cpu_per_call(fn, args.requests // 10)  # warm up
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeat):  # interleaved, so drift hits both alike
        for name, fn in variants.items():
            samples[name].append(cpu_per_call(fn, args.requests))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, values in samples.items():
        print(f"{name:<12} {medians[name]:6.2f} µs CPU per request (median of {len(values)}; min {min(values):.2f})")
    print(f"{'difference':<12} {medians['metrics on'] - medians['metrics off']:6.2f} µs CPU per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
