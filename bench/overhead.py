"""How much does octoroute add on top of talking to the upstream directly?

One run starts a simulated OpenAI-compatible upstream (zero delays) and
octoroute (one worker) in front of it, then measures, for DIRECT (client ->
upstream) and OCTOROUTE (client -> gateway -> upstream), non-streaming and
streaming:

- latency p50/p99 one request at a time, and the latency octoroute adds;
- throughput at fixed concurrency levels (fixed request count, time-capped);
- CPU milliseconds per request of the gateway (and of the upstream, and of this
  load generator, for reference) from /proc/<pid>/stat;
- gateway memory (VmRSS) idle and after load;
- the cost of rule routing (model "auto" against model "fast");
- the cost of metrics on the hot path: a second gateway with `[observability] metrics = false`,
  measured interleaved with the first;
- the per-chunk cost of relaying a paced stream (one event per TCP write);
- the same numbers for the LiteLLM proxy when it is installed.

It prints the issue's targets next to the measurements; it never fails on
them. See bench/README.md for how to read the output.

    .venv/bin/python bench/overhead.py --quick            # ~40 s smoke run
    .venv/bin/python bench/overhead.py --json out.json    # full run, ~85 s
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import functools
import importlib.metadata
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import orjson
import uvloop

from litellm_proxy import find_litellm, litellm_version, start_litellm
from loadgen import LoadGenerator, RunResult, Target, chat_body, long_prompt
from procs import Cpu, Meter, Service, Services, StartupError, free_port, wait_ready
from results import (
    DIRECT,
    FLOOR,
    LITELLM,
    METRICS_OFF,
    NON_STREAM,
    OCTOROUTE,
    ROUTED,
    STREAM,
    Plan,
    Report,
    Row,
    evaluate_targets,
    metrics_overhead,
    print_report,
)

UPSTREAM_MODEL = "bench-model"
METRICS_OFF_SERVICE = "octoroute-metrics-off"  # the second gateway: `[observability] metrics = false`
PACED_TOKEN_DELAY = 0.002  # seconds between streamed events of the paced upstream

# Runs the fixture's own CLI on uvloop, as any production LLM server would be on
# something at least that fast; `--upstream-loop asyncio` runs it unchanged.
_UPSTREAM_ON_UVLOOP = (
    "import asyncio, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
    "from octoroute.demo.simulated import main; main(sys.argv[1:])"
)


FULL = Plan(2000, 500, 500, 4, 4000, (16, 64), 300, 2000, 200, 500, 30.0, 420.0)
QUICK = Plan(600, 200, 150, 2, 1500, (16, 64), 150, 600, 60, 150, 8.0, 120.0)


class Runner:
    """Runs measurements against a set of targets and appends rows to the report."""

    def __init__(self, report: Report, lg: LoadGenerator, deadline: float, log: Callable[[str], None]) -> None:
        self.report = report
        self.lg = lg
        self.deadline = deadline
        self.log = log

    def _seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    async def _run(self, target: Target, requests: int, concurrency: int, *, stream: bool) -> RunResult:
        limit = min(self.report.plan.run_seconds, max(0.5, self._seconds_left()))
        return await self.lg.run(target, requests=requests, concurrency=concurrency, stream=stream, time_limit=limit)

    def _skip(self, what: str) -> bool:
        if self._seconds_left() > 1:
            return False
        self.report.skipped.append(f"{what}: the run's time budget (--max-seconds) was used up")
        return True

    async def warm_up(self, target: Target, requests: int, concurrency: int) -> None:
        for stream in (False, True):
            result = await self._run(target, requests, concurrency, stream=stream)
            if result.ok == 0:
                raise StartupError(f"{target.label}: every warm-up request failed: {result.first_error}")

    async def alternate(
        self,
        phase: str,
        meters: Mapping[str, Meter],
        targets: Sequence[Target],
        requests: int,
        concurrency: int,
        *,
        stream: bool,
        mode: str | None = None,
    ) -> list[Row]:
        """`requests` requests per target, the targets taking turns in `plan.rounds` blocks so
        that drift and other load hit every target alike; one row per target."""
        mode = mode or (STREAM if stream else NON_STREAM)
        if self._skip(f"{phase} {mode} c={concurrency}"):
            return []
        plan = self.report.plan
        if concurrency > 1:  # open this level's connections before measuring
            for target in targets:
                await self._run(target, min(plan.warmup, max(1, requests // 4)), concurrency, stream=stream)
        # blocks of at least 20 requests per worker, so ramp-up and drain stay a small part of each
        rounds = max(1, min(plan.rounds, requests // (20 * concurrency)))
        totals = {t.label: (RunResult(), Cpu()) for t in targets}
        for i in range(rounds):
            block = requests // rounds + (1 if i < requests % rounds else 0)
            for target in targets:
                run = functools.partial(self._run, target, block, concurrency, stream=stream)
                result, cpu = await meters[target.label].measure(run)
                totals[target.label][0].merge(result)
                totals[target.label][1].add(cpu)
        return [self._add(phase, mode, t.label, concurrency, requests, *totals[t.label]) for t in targets]

    def _add(
        self, phase: str, mode: str, label: str, concurrency: int, planned: int, result: RunResult, cpu: Cpu
    ) -> Row:
        sent = max(1, result.ok + result.errors)
        lat = sorted(result.latencies_ms)
        row = Row(
            phase=phase,
            mode=mode,
            target=label,
            concurrency=concurrency,
            planned=planned,
            ok=result.ok,
            errors=result.errors,
            first_error=result.first_error,
            capped=result.capped,
            elapsed_s=result.elapsed_s,
            rps=result.rps,
            p50_ms=result.quantile(0.5) if lat else math.nan,
            p99_ms=result.quantile(0.99) if lat else math.nan,
            mean_ms=sum(lat) / len(lat) if lat else math.nan,
            proxy_cpu_ms=None if label == DIRECT else cpu.proxy * 1000 / sent,
            upstream_cpu_ms=cpu.upstream * 1000 / sent,
            client_cpu_ms=cpu.client * 1000 / sent,
            other_cores=cpu.others / cpu.wall if cpu.wall > 0 else 0.0,
        )
        self.report.rows.append(row)
        rate = f"{row.rps:,.0f} req/s" if concurrency > 1 else f"p50 {row.p50_ms:.3f} ms"
        cpu_text = f", proxy CPU {row.proxy_cpu_ms:.3f} ms/req" if row.proxy_cpu_ms is not None else ""
        errors = f", {row.errors} errors" if row.errors else ""
        self.log(f"  {phase:<10} {mode:<10} {label:<22} c={concurrency:<3} {rate}{cpu_text}{errors}")
        return row


# -- processes -------------------------------------------------------------------------------


def start_upstream(
    services: Services, name: str, args: argparse.Namespace, token_delay: float = 0.0
) -> tuple[Service, int]:
    port = free_port()
    if args.upstream_loop == "uvloop":
        argv = [sys.executable, "-c", _UPSTREAM_ON_UVLOOP]
    else:
        argv = [sys.executable, "-m", "octoroute.demo.simulated"]
    argv += ["--port", str(port), "--label", name, "--token-delay", str(token_delay)]
    service = services.start(name, argv)
    wait_ready(service, port, "/health", timeout=30)
    return service, port


def gateway_config(upstream_port: int, paced_port: int | None, port: int, *, metrics: bool = True) -> str:
    """Every tier on the one upstream (so "auto" can route anywhere); `paced` on the paced one.
    `metrics=False` adds `metrics = false` under `[observability]`: no metrics recorded per request."""
    groups = ""
    for group in ("fast", "balanced", "deep"):
        groups += f'[[models.{group}]]\nname = "{UPSTREAM_MODEL}"\nbase_url = "http://127.0.0.1:{upstream_port}/v1"\n\n'
    groups += f'[[models.embed]]\nname = "{UPSTREAM_MODEL}"\nbase_url = "http://127.0.0.1:{upstream_port}/v1"\n\n'
    groups += '[groups.embed]\nserves = ["embeddings"]\n\n'
    if paced_port is not None:
        groups += f'[[models.paced]]\nname = "{UPSTREAM_MODEL}"\nbase_url = "http://127.0.0.1:{paced_port}/v1"\n\n'
    return (
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n{groups}'
        '[routing]\nstrategy = "rule"\n\n[health]\nactive = false\n\n[observability]\nlog_level = "warning"\n'
        + ("" if metrics else "metrics = false\n")
    )


def start_gateway(
    services: Services,
    work: Path,
    upstream_port: int,
    paced_port: int | None,
    *,
    name: str = "octoroute",
    metrics: bool = True,
) -> tuple[Service, int]:
    port = free_port()
    config = work / f"{name}.toml"
    config.write_text(gateway_config(upstream_port, paced_port, port, metrics=metrics))
    argv = [sys.executable, "-m", "octoroute", "serve", "--config", str(config), "--port", str(port), "--workers", "1"]
    service = services.start(name, argv)
    wait_ready(service, port, "/health", timeout=30)
    return service, port


def start_floor(services: Services, name: str, upstream_port: int) -> tuple[Service, int]:
    port = free_port()
    script = Path(__file__).with_name("floor_relay.py")
    argv = [sys.executable, str(script), "--port", str(port), "--upstream", f"http://127.0.0.1:{upstream_port}/v1"]
    service = services.start(name, argv)
    wait_ready(service, port, "/health", timeout=30)
    return service, port


# -- phases ----------------------------------------------------------------------------------


def chat_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1/chat/completions"


async def octoroute_phases(
    report: Report, services: Services, ports: dict[str, int], args: argparse.Namespace, log: Callable[[str], None]
) -> None:
    plan = report.plan
    upstream = services.get("upstream")
    targets = [Target(DIRECT, chat_url(ports["upstream"]), UPSTREAM_MODEL)]
    meters = {DIRECT: Meter(services, upstream, None)}
    if "floor" in ports:
        targets.append(Target(FLOOR, chat_url(ports["floor"]), UPSTREAM_MODEL))
        meters[FLOOR] = Meter(services, upstream, services.get("floor"))
    targets.append(Target(OCTOROUTE, chat_url(ports["octoroute"]), "fast"))
    meters[OCTOROUTE] = Meter(services, upstream, services.get("octoroute"))
    if METRICS_OFF_SERVICE in ports:  # same config with `metrics = false`, measured interleaved with the row above
        targets.append(Target(METRICS_OFF, chat_url(ports[METRICS_OFF_SERVICE]), "fast"))
        meters[METRICS_OFF] = Meter(services, upstream, services.get(METRICS_OFF_SERVICE))
    if not args.no_routing:
        targets.append(Target(ROUTED, chat_url(ports["octoroute"]), "auto"))
        meters[ROUTED] = meters[OCTOROUTE]
    async with LoadGenerator() as lg:
        runner = Runner(report, lg, time.monotonic() + plan.total_seconds, log)
        for target in targets:
            await runner.warm_up(target, plan.warmup, 8)
        log("latency, one request at a time")
        await runner.alternate("latency", meters, targets, plan.latency_requests, 1, stream=False)
        await runner.alternate("latency", meters, targets, plan.stream_latency_requests, 1, stream=True)
        if args.long_prompt_kb > 0 and plan.long_prompt_requests > 0:
            messages = long_prompt(args.long_prompt_kb)
            long_targets = [dataclasses.replace(t, messages=messages) for t in targets]
            mode = f"{NON_STREAM} {args.long_prompt_kb}KB"
            requests = plan.long_prompt_requests
            await runner.alternate("latency", meters, long_targets, requests, 1, stream=False, mode=mode)
        log("throughput")
        for stream in (False, True):
            for concurrency in plan.concurrency:
                await runner.alternate("throughput", meters, targets, plan.requests, concurrency, stream=stream)
        await embeddings_phase(runner, services, ports, log)
        if "paced" in ports:
            await paced_phase(runner, services, ports, log)


EMBEDDINGS = "embeddings"  # the mode of /v1/embeddings rows
EMBED_INPUT = ["a passage of a document to index", "another passage", "and a third one"]


async def embeddings_phase(
    runner: Runner, services: Services, ports: dict[str, int], log: Callable[[str], None]
) -> None:
    """`POST /v1/embeddings` (a batch of three inputs) straight to the upstream and through
    octoroute's `embed` group, one at a time and at the highest concurrency level."""
    log("embeddings")
    upstream = services.get("upstream")

    def target(label: str, port: int, model: str) -> Target:
        body = orjson.dumps({"model": model, "input": EMBED_INPUT, "encoding_format": "float"})
        return Target(label, f"http://127.0.0.1:{port}/v1/embeddings", model, body=body, expect=b'"embedding"')

    targets = [target(DIRECT, ports["upstream"], UPSTREAM_MODEL), target(OCTOROUTE, ports["octoroute"], "embed")]
    meters = {DIRECT: Meter(services, upstream, None), OCTOROUTE: Meter(services, upstream, services.get("octoroute"))}
    plan = runner.report.plan
    for t in targets:
        await runner.lg.run(t, requests=plan.warmup, concurrency=8, stream=False, time_limit=plan.run_seconds)
    await runner.alternate("latency", meters, targets, plan.latency_requests, 1, stream=False, mode=EMBEDDINGS)
    level = max(plan.concurrency)
    await runner.alternate("throughput", meters, targets, plan.requests, level, stream=False, mode=EMBEDDINGS)


async def paced_phase(runner: Runner, services: Services, ports: dict[str, int], log: Callable[[str], None]) -> None:
    """Streams whose events arrive one write at a time, as from a real model: the per-event relay cost."""
    log(f"paced streams ({PACED_TOKEN_DELAY * 1000:g} ms between events)")
    paced = services.get("paced")
    targets = [Target(DIRECT, chat_url(ports["paced"]), UPSTREAM_MODEL)]
    meters = {DIRECT: Meter(services, paced, None)}
    if "floor-paced" in ports:
        targets.append(Target(FLOOR, chat_url(ports["floor-paced"]), UPSTREAM_MODEL))
        meters[FLOOR] = Meter(services, paced, services.get("floor-paced"))
    targets.append(Target(OCTOROUTE, chat_url(ports["octoroute"]), "paced"))
    meters[OCTOROUTE] = Meter(services, paced, services.get("octoroute"))
    problem, body = await runner.lg.send(targets[0], chat_body(UPSTREAM_MODEL, stream=True), stream=True)
    plan = runner.report.plan
    rows = await runner.alternate("paced", meters, targets, plan.paced_requests, max(plan.concurrency), stream=True)
    for row in rows:
        row.events_per_stream = body.count(b"data: ") if problem is None else None


async def litellm_phases(report: Report, services: Services, port: int, log: Callable[[str], None]) -> None:
    plan = report.plan
    target = Target(LITELLM, chat_url(port), "fast")
    meters = {LITELLM: Meter(services, services.get("upstream"), services.get("litellm"))}
    async with LoadGenerator() as lg:
        runner = Runner(report, lg, time.monotonic() + plan.total_seconds, log)
        await runner.warm_up(target, max(20, plan.warmup // 5), 4)
        requests = plan.litellm_latency_requests
        await runner.alternate("latency", meters, [target], requests, 1, stream=False)
        await runner.alternate("latency", meters, [target], max(1, requests // 2), 1, stream=True)
        for stream in (False, True):
            for concurrency in plan.concurrency:
                await runner.alternate(
                    "throughput", meters, [target], plan.litellm_requests, concurrency, stream=stream
                )


def memory_of(service: Service) -> dict[str, float]:
    mem = service.memory()
    return {"rss_mb": round(mem.rss_mb, 1), "peak_mb": round(mem.peak_mb, 1)}


def run(args: argparse.Namespace, plan: Plan, report: Report, work: Path, log: Callable[[str], None]) -> None:
    command, source = find_litellm(args.litellm_bin) if args.litellm != "off" else (None, "skipped (--litellm off)")
    if command is None:
        report.litellm = {"status": source}
        if args.litellm == "require":
            raise StartupError(f"litellm: {source}")
    with Services(work) as services:
        log("starting the simulated upstream and octoroute" + ("" if args.no_metrics_off else " (metrics on and off)"))
        _, upstream_port = start_upstream(services, "upstream", args)
        ports = {"upstream": upstream_port}
        if plan.paced_requests > 0:
            _, ports["paced"] = start_upstream(services, "paced", args, PACED_TOKEN_DELAY)
        if not args.no_floor:
            _, ports["floor"] = start_floor(services, "floor", upstream_port)
            if "paced" in ports:
                _, ports["floor-paced"] = start_floor(services, "floor-paced", ports["paced"])
        gateways: dict[str, Service] = {}
        gateways["octoroute"], ports["octoroute"] = start_gateway(services, work, upstream_port, ports.get("paced"))
        if not args.no_metrics_off:
            gateways[METRICS_OFF], ports[METRICS_OFF_SERVICE] = start_gateway(
                services, work, upstream_port, ports.get("paced"), name=METRICS_OFF_SERVICE, metrics=False
            )
        for name, gateway in gateways.items():
            report.memory[name] = {"idle_rss_mb": memory_of(gateway)["rss_mb"]}
        run_async(octoroute_phases(report, services, ports, args, log))
        for name, gateway in gateways.items():
            report.memory[name].update(
                after_load_rss_mb=memory_of(gateway)["rss_mb"], peak_mb=memory_of(gateway)["peak_mb"]
            )
        upstream_mem = memory_of(services.get("upstream"))
        report.memory["upstream (reference)"] = {
            "after_load_rss_mb": upstream_mem["rss_mb"],
            "peak_mb": upstream_mem["peak_mb"],
        }
        for gateway in gateways.values():
            services.stop(gateway)

        if command is None:
            return
        report.litellm = {"status": "measured", "command": source, "version": litellm_version(command)}
        log(f"starting LiteLLM {report.litellm['version']} ({source}); its start-up takes a while")
        started = time.monotonic()
        litellm, port = start_litellm(services, command, work, upstream_port, UPSTREAM_MODEL)
        report.litellm["startup_s"] = round(time.monotonic() - started, 1)
        report.memory["litellm"] = {"idle_rss_mb": memory_of(litellm)["rss_mb"]}
        run_async(litellm_phases(report, services, port, log))
        report.memory["litellm"].update(
            after_load_rss_mb=memory_of(litellm)["rss_mb"], peak_mb=memory_of(litellm)["peak_mb"]
        )


# -- entry point -----------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev.stdout.strip() + (" (src has uncommitted changes)" if dirty.stdout.strip() else "")


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "octoroute": _version("octoroute"),
        "git": _git_revision(),
        "aiohttp": _version("aiohttp"),
        "uvloop": _version("uvloop"),
        "upstream_loop": args.upstream_loop,
        "long_prompt_kb": args.long_prompt_kb,
        "metrics_off": not args.no_metrics_off,
        "quick": args.quick,
    }


def _parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a ~30 s smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every number to PATH")
    parser.add_argument(
        "--latency-requests", type=int, metavar="N", help="non-streaming requests per target at concurrency 1"
    )
    parser.add_argument("--stream-latency-requests", type=int, metavar="N")
    parser.add_argument("--requests", type=int, metavar="N", help="requests per throughput run")
    parser.add_argument("--concurrency", metavar="C,C", help="throughput concurrency levels (default 16,64)")
    parser.add_argument("--paced-requests", type=int, metavar="N", help="paced streams per target (0 skips them)")
    parser.add_argument("--run-seconds", type=float, metavar="S", help="time cap of one run")
    parser.add_argument("--max-seconds", type=float, metavar="S", help="budget for all runs; later runs are skipped")
    parser.add_argument("--no-routing", action="store_true", help='skip the model "auto" (rule routing) rows')
    parser.add_argument(
        "--long-prompt-kb",
        type=int,
        default=16,
        metavar="KB",
        help="size of the long-prompt latency rows (default 16; 0 skips them)",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the bare aiohttp relay (bench/floor_relay.py)")
    parser.add_argument(
        "--no-metrics-off",
        action="store_true",
        help="skip the second gateway with `[observability] metrics = false` (the metrics overhead rows)",
    )
    parser.add_argument(
        "--litellm",
        choices=["auto", "off", "require"],
        default="auto",
        help="auto: compare when LiteLLM is found (default)",
    )
    parser.add_argument(
        "--litellm-bin",
        metavar="PATH",
        default=os.environ.get("LITELLM_BIN"),
        help="a litellm executable, e.g. from another venv (or $LITELLM_BIN)",
    )
    parser.add_argument("--litellm-requests", type=int, metavar="N", help="requests per LiteLLM throughput run")
    parser.add_argument(
        "--upstream-loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of the simulated upstream (default uvloop)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    overrides = {
        "latency_requests": args.latency_requests,
        "stream_latency_requests": args.stream_latency_requests,
        "requests": args.requests,
        "paced_requests": args.paced_requests,
        "run_seconds": args.run_seconds,
        "total_seconds": args.max_seconds,
        "litellm_requests": args.litellm_requests,
    }
    if args.concurrency:
        try:
            overrides["concurrency"] = tuple(int(c) for c in args.concurrency.split(","))
        except ValueError:
            parser.error("--concurrency takes numbers separated by commas, e.g. 16,64")
    plan = dataclasses.replace(plan, **{k: v for k, v in overrides.items() if v is not None})
    if min(plan.concurrency) < 1 or plan.requests < 1 or plan.latency_requests < 1 or plan.stream_latency_requests < 1:
        parser.error("request counts and concurrency levels must be at least 1")
    return args, plan


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _exit_on_signal(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds through every `finally`, which stops the children


def _install_signal_handlers() -> None:
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _exit_on_signal)


def run_async(phases: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop; SIGTERM/SIGHUP cancel the phases cleanly (raising from a signal handler
    inside the loop's C callbacks would not unwind), then exit as `_exit_on_signal` would."""
    received: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, lambda s=sig: (received.append(s), task.cancel()))
        try:
            await phases
        finally:
            for sig in _STOP_SIGNALS:
                loop.remove_signal_handler(sig)

    try:
        uvloop.run(main())
    except asyncio.CancelledError:
        if received:
            raise SystemExit(128 + received[0]) from None
        raise
    finally:
        _install_signal_handlers()


def main(argv: Sequence[str] | None = None) -> int:
    args, plan = _parse(argv)
    _install_signal_handlers()
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True)
    report = Report(meta=_meta(args), plan=plan)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="octoroute-bench-") as tmp:
        try:
            run(
                args,
                plan,
                report,
                Path(tmp),
                lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True),
            )
        except StartupError as exc:
            console.print(f"[bold red]benchmark aborted:[/] {escape(str(exc))}", highlight=False)
            return 1
        except (KeyboardInterrupt, SystemExit) as exc:
            console.print("[yellow]interrupted; every child process was stopped[/]")
            return exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 130
    report.meta["duration_s"] = round(time.monotonic() - started, 1)
    print_report(report)
    if args.json:
        args.json.write_bytes(orjson.dumps(to_json(report), option=orjson.OPT_INDENT_2))
        console.print(f"wrote {args.json}")
    return 0


def to_json(report: Report) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if isinstance(value, float):
            return None if math.isnan(value) else round(value, 4)
        return value

    return {
        "meta": report.meta,
        "plan": dataclasses.asdict(report.plan),
        "rows": [{k: clean(v) for k, v in dataclasses.asdict(row).items()} for row in report.rows],
        "memory": report.memory,
        "litellm": report.litellm,
        "targets": [{**dataclasses.asdict(t), "measured": t.measured} for t in evaluate_targets(report)],
        "metrics_overhead": [{k: clean(v) for k, v in d.as_dict().items()} for d in metrics_overhead(report)],
        "skipped": report.skipped,
    }


if __name__ == "__main__":
    sys.exit(main())
