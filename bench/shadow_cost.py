"""What shadow mode adds to one auto-routed request, measured in-process.

Calls `Gateway.shadow_decide` (what `serve_call` runs after the live decision:
sampling, the request's features again, the candidate's inline decision, its
metrics and the request trace) for a short prompt and a 100 KB one, with shadow
mode off and with each offline candidate, and prints p50 and p99 in
microseconds, of this thread's CPU time and of wall time. A judge candidate
with `allow_judge` costs the same inline part plus one asyncio task; its
router-model call runs after the live request has moved on. Candidates that
need the bundled learned model are skipped (and say so) when it is missing.

    .venv/bin/python bench/shadow_cost.py [--requests 5000]
"""

from __future__ import annotations

import argparse
import random
import time

from octoroute.config import build_topology, parse_config
from octoroute.core.types import Importance, RouteReason, RoutingDecision, Strategy
from octoroute.observe.metrics import PrometheusRecorder
from octoroute.observe.observer import Observer, RequestTrace
from octoroute.service import ChatCall, Gateway
from octoroute.upstream.client import UpstreamPool

PROMPTS = {
    "short": "What is the capital of France?",
    "100 KB": ("lorem ipsum dolor sit amet " * 4000)[:100_000] + "\nSummarise the text above?",
}
CANDIDATES = (None, "rule", "learned", "llm", "hybrid")  # live strategy: rule, except for the rule candidate


def gateway(candidate: str | None) -> Gateway:
    live = "llm" if candidate == "rule" else "rule"
    data = {
        "models": {t: [{"name": "m", "base_url": "http://127.0.0.1:9/v1"}] for t in ("fast", "balanced", "deep")},
        "routing": {"strategy": live, **({"shadow": {"strategy": candidate}} if candidate else {})},
    }
    config = parse_config(data, {})
    topology = build_topology(config, {})
    observer = Observer.build(
        PrometheusRecorder(topology.endpoints, topology.groups),
        decisions_kept=500,
        events_file=None,
        log_content=False,
        tracing=None,
        multiprocess_dir=None,
    )
    return Gateway(config, topology, UpstreamPool(topology.endpoints.values()), rng=random.Random(0), observer=observer)


def measure(gw: Gateway, text: str, requests: int) -> tuple[float, float, float, float]:
    """CPU p50, CPU p99, wall p50, wall p99 in µs (wall includes whatever else the
    machine ran meanwhile; CPU is this thread's own time)."""
    call = ChatCall({"messages": [{"role": "user", "content": text}]}, "auto", False, Importance.NORMAL, None, "r")
    live = RoutingDecision("fast", Strategy.RULE, RouteReason.RULE_CASUAL_SHORT, score=0.0)
    cpu, wall = [], []
    for _ in range(requests):
        trace = RequestTrace("r", "/v1/chat/completions", "POST", 0.0, 0.0)
        began, began_cpu = time.perf_counter_ns(), time.thread_time_ns()
        gw.shadow_decide(call, live, trace)
        cpu.append(time.thread_time_ns() - began_cpu)
        wall.append(time.perf_counter_ns() - began)
    return (*_p50_p99(cpu), *_p50_p99(wall))


def _p50_p99(samples: list[int]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] / 1000, ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    print(f"{'candidate':10} {'prompt':7} {'CPU p50':>8} {'CPU p99':>8} {'wall p50':>8} {'wall p99':>8}  (µs)")
    for candidate in CANDIDATES:
        try:
            gw = gateway(candidate)
        except ModuleNotFoundError as exc:  # the bundled learned model is not installed
            print(f"{candidate:10} skipped: {exc}")
            continue
        for label, text in PROMPTS.items():
            cpu50, cpu99, wall50, wall99 = measure(gw, text, args.requests)
            print(f"{candidate or 'off':10} {label:7} {cpu50:8.1f} {cpu99:8.1f} {wall50:8.1f} {wall99:8.1f}")


if __name__ == "__main__":
    main()
