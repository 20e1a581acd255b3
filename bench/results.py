"""What a benchmark run produced, the issue's targets checked against it, and
the tables printed at the end (rich)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

# The targets; reported next to the measurements, never asserted.
TARGET_ADDED_P50_MS = 0.3
TARGET_CPU_MS = 0.25
TARGET_LITELLM_MULTIPLE = 20.0
TARGET_CONCURRENCY = 16  # where CPU per request and the LiteLLM multiple are read

NON_STREAM, STREAM = "non-stream", "stream"
DIRECT, FLOOR, OCTOROUTE, ROUTED, LITELLM = "direct", "aiohttp floor", "octoroute", "octoroute auto", "litellm"
METRICS_OFF = "octoroute, metrics off"  # a second gateway, `[observability] metrics = false`
REPORT_WIDTH = 150
NOISY_CORES = 0.15  # other processes using more than this (in cores) during a run make it noisy


@dataclass(frozen=True, slots=True)
class Plan:
    """Request counts and limits of one run."""

    latency_requests: int  # non-streaming, one at a time, per target
    stream_latency_requests: int
    long_prompt_requests: int  # non-streaming, one at a time, with a long pasted document
    rounds: int  # latency runs alternate targets in this many blocks, so drift hits all alike
    requests: int  # per throughput run (target x mode x concurrency)
    concurrency: tuple[int, ...]
    warmup: int  # unmeasured requests before each throughput run
    paced_requests: int  # 0 skips the paced-stream runs
    litellm_latency_requests: int
    litellm_requests: int
    run_seconds: float  # time cap of one run
    total_seconds: float  # budget for each server's runs; later runs are skipped past it


@dataclass(slots=True)
class Row:
    """One measured line. CPU figures are milliseconds per request sent."""

    phase: str  # latency | throughput | paced
    mode: str
    target: str
    concurrency: int
    planned: int
    ok: int
    errors: int
    first_error: str | None
    capped: bool
    elapsed_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    proxy_cpu_ms: float | None  # None for direct
    upstream_cpu_ms: float
    client_cpu_ms: float
    other_cores: float  # cores busy with processes outside the benchmark during the run
    events_per_stream: int | None = None


@dataclass
class Report:
    meta: dict[str, Any]
    plan: Plan
    rows: list[Row] = field(default_factory=list)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    litellm: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def find(self, phase: str, mode: str, target: str, concurrency: int | None = None) -> Row | None:
        for row in self.rows:
            if (row.phase, row.mode, row.target) == (phase, mode, target) and (
                concurrency is None or row.concurrency == concurrency
            ):
                return row
        return None

    @property
    def cpu_concurrency(self) -> int:
        """The throughput level CPU per request is read at: 16 when measured."""
        levels = self.plan.concurrency
        return TARGET_CONCURRENCY if TARGET_CONCURRENCY in levels else min(levels)


@dataclass(frozen=True, slots=True)
class TargetCheck:
    name: str
    goal: str
    value: float | None  # None: not measured
    unit: str
    met: bool | None  # None: not measured
    note: str = ""

    @property
    def measured(self) -> str:
        if self.value is None:
            return "—"
        return f"{self.value:.1f}x" if self.unit == "x" else f"{self.value:.3f} {self.unit}"


@dataclass(frozen=True, slots=True)
class MetricsDelta:
    """octoroute with metrics on against the same gateway with `metrics = false`, one mode and level."""

    phase: str  # latency (c=1) | throughput
    mode: str
    concurrency: int
    p50_on_ms: float
    p50_off_ms: float
    cpu_on_ms: float | None
    cpu_off_ms: float | None
    rps_on: float
    rps_off: float

    @property
    def added_p50_ms(self) -> float:
        return self.p50_on_ms - self.p50_off_ms

    @property
    def added_cpu_ms(self) -> float | None:
        return None if self.cpu_on_ms is None or self.cpu_off_ms is None else self.cpu_on_ms - self.cpu_off_ms

    @property
    def rps_ratio(self) -> float | None:
        """req/s with metrics on / off: below 1 is what metrics cost."""
        return self.rps_on / self.rps_off if self.rps_off > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "added_p50_ms": self.added_p50_ms,
            "added_cpu_ms": self.added_cpu_ms,
            "rps_ratio": self.rps_ratio,
        }


def metrics_overhead(report: Report) -> list[MetricsDelta]:
    """What metrics add: every latency (c=1) and throughput level measured for both gateways."""
    out = []
    for mode in (NON_STREAM, STREAM):
        for phase, level in [("latency", 1)] + [("throughput", c) for c in report.plan.concurrency]:
            on = report.find(phase, mode, OCTOROUTE, level)
            off = report.find(phase, mode, METRICS_OFF, level)
            if on is None or off is None or not on.ok or not off.ok:
                continue
            out.append(
                MetricsDelta(
                    phase, mode, level, on.p50_ms, off.p50_ms, on.proxy_cpu_ms, off.proxy_cpu_ms, on.rps, off.rps
                )
            )
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def _added_p50(report: Report, mode: str, target: str) -> float | None:
    direct, row = report.find("latency", mode, DIRECT), report.find("latency", mode, target)
    if direct is None or row is None or not direct.ok or not row.ok:
        return None
    return row.p50_ms - direct.p50_ms


def evaluate_targets(report: Report) -> list[TargetCheck]:
    """The issue's three targets, each with the context needed to judge it in its note."""
    goal = TARGET_ADDED_P50_MS
    added = _added_p50(report, NON_STREAM, OCTOROUTE)
    notes = []
    if (streaming := _added_p50(report, STREAM, OCTOROUTE)) is not None:
        notes.append(f"streaming {streaming:+.3f} ms")
    if (floor := _added_p50(report, NON_STREAM, FLOOR)) is not None:
        notes.append(f"aiohttp floor {floor:+.3f} ms")
    if (no_metrics := _added_p50(report, NON_STREAM, METRICS_OFF)) is not None:
        notes.append(f"metrics off {no_metrics:+.3f} ms")
    checks = [
        TargetCheck("added latency p50, non-streaming, c=1", f"<= {goal} ms", added, "ms",
                    None if added is None else added <= goal, "; ".join(notes) or "not measured")
    ]  # fmt: skip

    level = report.cpu_concurrency
    row = report.find("throughput", NON_STREAM, OCTOROUTE, level)
    cpu = row.proxy_cpu_ms if row else None
    notes = [
        f"c={r.concurrency}: {_fmt(r.proxy_cpu_ms)} ms"
        for r in report.rows
        if r.mode == NON_STREAM and r.target == OCTOROUTE and r.phase in ("latency", "throughput") and r is not row
    ]
    if (floor_row := report.find("throughput", NON_STREAM, FLOOR, level)) is not None:
        notes.append(f"aiohttp floor {_fmt(floor_row.proxy_cpu_ms)} ms")
    if (off_row := report.find("throughput", NON_STREAM, METRICS_OFF, level)) is not None:
        notes.append(f"metrics off {_fmt(off_row.proxy_cpu_ms)} ms")
    checks.append(
        TargetCheck(f"gateway CPU per non-streaming request, c={level}", f"<= {TARGET_CPU_MS} ms", cpu, "ms",
                    None if cpu is None else cpu <= TARGET_CPU_MS, "; ".join(notes) or "not measured")
    )  # fmt: skip

    ours, theirs = (report.find("throughput", NON_STREAM, t, level) for t in (OCTOROUTE, LITELLM))
    multiple, note = None, f"LiteLLM {report.litellm.get('status', 'not run')}"
    if ours and theirs and theirs.rps > 0:
        multiple = ours.rps / theirs.rps
        note = f"{ours.rps:,.0f} vs {theirs.rps:,.1f} req/s"
        s_ours, s_theirs = (report.find("throughput", STREAM, t, level) for t in (OCTOROUTE, LITELLM))
        if s_ours and s_theirs and s_theirs.rps > 0:
            note += f"; streaming {s_ours.rps / s_theirs.rps:.1f}x"
    checks.append(
        TargetCheck(f"throughput vs LiteLLM, non-streaming, c={level}", f">= {TARGET_LITELLM_MULTIPLE:g}x", multiple,
                    "x", None if multiple is None else multiple >= TARGET_LITELLM_MULTIPLE, note)
    )  # fmt: skip
    return checks


def _errors(row: Row) -> str:
    text = str(row.errors) if row.errors else ""
    if row.capped:
        text = (text + " capped").strip()
    return text


def _load(row: Row) -> str:
    text = f"{row.other_cores:.2f}"
    return f"[yellow]{text}[/]" if row.other_cores > NOISY_CORES else text


def _latency_table(report: Report) -> Table:
    table = Table(title="Latency, one request at a time (ms; CPU in ms per request)", box=box.SIMPLE_HEAD)
    for col in (
        "mode",
        "target",
        "requests",
        "p50",
        "p99",
        "mean",
        "added p50",
        "added p99",
        "proxy CPU",
        "upstream CPU",
        "other load",
        "errors",
    ):
        justify = "left" if col in ("mode", "target", "errors") else "right"
        table.add_column(col, justify=justify, overflow="fold", no_wrap=col in ("mode", "target"))
    modes = list(dict.fromkeys(r.mode for r in report.rows if r.phase == "latency"))
    for mode in modes:
        direct = report.find("latency", mode, DIRECT)
        for row in (r for r in report.rows if r.phase == "latency" and r.mode == mode):
            added = row.target != DIRECT and direct is not None
            base = direct if added else None
            table.add_row(
                mode,
                row.target,
                f"{row.ok:,}",
                _fmt(row.p50_ms),
                _fmt(row.p99_ms),
                _fmt(row.mean_ms),
                f"{row.p50_ms - base.p50_ms:+.3f}" if base else "",
                f"{row.p99_ms - base.p99_ms:+.3f}" if base else "",
                _fmt(row.proxy_cpu_ms),
                _fmt(row.upstream_cpu_ms),
                _load(row),
                _errors(row),
            )
        table.add_section()
    return table


def _throughput_table(report: Report) -> Table:
    table = Table(title="Throughput, closed loop (latency in ms; CPU in ms per request)", box=box.SIMPLE_HEAD)
    for col in (
        "mode",
        "target",
        "conc.",
        "requests",
        "req/s",
        "p50",
        "p99",
        "proxy CPU",
        "upstream CPU",
        "loadgen CPU",
        "other load",
        "errors",
    ):
        table.add_column(col, justify="left" if col in ("mode", "target", "errors") else "right", overflow="fold")
    for mode in dict.fromkeys([NON_STREAM, STREAM, *(r.mode for r in report.rows if r.phase == "throughput")]):
        for level in report.plan.concurrency:
            rows = [r for r in report.rows if r.phase == "throughput" and r.mode == mode and r.concurrency == level]
            for row in rows:
                table.add_row(
                    mode,
                    row.target,
                    str(level),
                    f"{row.ok:,}",
                    f"{row.rps:,.0f}",
                    _fmt(row.p50_ms, 2),
                    _fmt(row.p99_ms, 2),
                    _fmt(row.proxy_cpu_ms),
                    _fmt(row.upstream_cpu_ms),
                    _fmt(row.client_cpu_ms),
                    _load(row),
                    _errors(row),
                )
            if rows:
                table.add_section()
    return table


def _paced_table(report: Report) -> Table | None:
    rows = [r for r in report.rows if r.phase == "paced"]
    if not rows:
        return None
    table = Table(title="Paced streams: one event per upstream write (CPU in ms per request)", box=box.SIMPLE_HEAD)
    for col in (
        "target",
        "conc.",
        "events",
        "requests",
        "req/s",
        "p50 ms",
        "proxy CPU",
        "proxy CPU unpaced",
        "≈ per extra event",
        "errors",
    ):
        table.add_column(col, justify="left" if col in ("target", "errors") else "right", overflow="fold")
    for row in rows:
        unpaced = report.find("throughput", STREAM, row.target, row.concurrency)
        per_event = "—"
        if row.proxy_cpu_ms is not None and unpaced and unpaced.proxy_cpu_ms is not None and row.events_per_stream:
            extra = (row.proxy_cpu_ms - unpaced.proxy_cpu_ms) / max(1, row.events_per_stream - 1)
            per_event = f"{extra * 1000:.0f} µs"
        table.add_row(
            row.target,
            str(row.concurrency),
            str(row.events_per_stream or "—"),
            f"{row.ok:,}",
            f"{row.rps:,.0f}",
            _fmt(row.p50_ms, 2),
            _fmt(row.proxy_cpu_ms),
            _fmt(unpaced.proxy_cpu_ms if unpaced else None),
            per_event,
            _errors(row),
        )
    return table


def _metrics_table(report: Report) -> Table | None:
    deltas = metrics_overhead(report)
    if not deltas:
        return None
    table = Table(
        title=f"Metrics overhead: octoroute minus '{METRICS_OFF}' (same run, interleaved; ms, CPU in ms per request)",
        box=box.SIMPLE_HEAD,
    )
    for col in (
        "mode",
        "conc.",
        "p50 on",
        "p50 off",
        "added p50",
        "CPU on",
        "CPU off",
        "added CPU",
        "req/s on",
        "req/s off",
        "req/s on/off",
    ):
        table.add_column(col, justify="left" if col == "mode" else "right", overflow="fold")
    for mode in (NON_STREAM, STREAM):
        rows = [d for d in deltas if d.mode == mode]
        for d in rows:
            added_cpu = d.added_cpu_ms
            table.add_row(
                mode,
                str(d.concurrency),
                _fmt(d.p50_on_ms),
                _fmt(d.p50_off_ms),
                f"{d.added_p50_ms:+.3f}",
                _fmt(d.cpu_on_ms),
                _fmt(d.cpu_off_ms),
                "—" if added_cpu is None else f"{added_cpu:+.3f}",
                f"{d.rps_on:,.0f}" if d.concurrency > 1 else "",
                f"{d.rps_off:,.0f}" if d.concurrency > 1 else "",
                f"{d.rps_ratio:.3f}" if d.concurrency > 1 and d.rps_ratio is not None else "",
            )
        if rows:
            table.add_section()
    return table


def _metrics_summary(report: Report) -> list[str]:
    """One line per mode: what metrics add at c=1 (latency) and at the CPU level (16)."""
    level = report.cpu_concurrency
    lines = []
    for mode in (NON_STREAM, STREAM):
        by_level = {d.concurrency: d for d in metrics_overhead(report) if d.mode == mode}
        text = []
        if (d := by_level.get(1)) is not None:
            text.append(f"c=1 p50 {d.added_p50_ms:+.3f} ms")
        if (d := by_level.get(level)) is not None:
            cpu = "—" if d.added_cpu_ms is None else f"{d.added_cpu_ms:+.3f}"
            ratio = "—" if d.rps_ratio is None else f"{d.rps_ratio:.3f}"
            text.append(f"c={level} p50 {d.added_p50_ms:+.3f} ms, CPU {cpu} ms/req, req/s on/off {ratio}")
        if text:
            lines.append(f"[bold]metrics overhead[/], {mode} (on minus off): " + "; ".join(text))
    return lines


def _memory_table(report: Report) -> Table:
    table = Table(title="Memory (VmRSS, MB)", box=box.SIMPLE_HEAD)
    for col in ("process", "idle", "after load", "peak"):
        table.add_column(col, justify="left" if col == "process" else "right", overflow="fold")
    for name, mem in report.memory.items():
        table.add_row(
            name, _fmt(mem.get("idle_rss_mb"), 1), _fmt(mem.get("after_load_rss_mb"), 1), _fmt(mem.get("peak_mb"), 1)
        )
    return table


def _litellm_table(report: Report) -> Table | None:
    if report.find("latency", NON_STREAM, LITELLM) is None:
        return None
    table = Table(title=f"octoroute vs LiteLLM {report.litellm.get('version', '')}", box=box.SIMPLE_HEAD)
    for col in ("measure", "octoroute", "LiteLLM", "octoroute better by"):
        table.add_column(col, justify="left" if col == "measure" else "right", overflow="fold")
    for mode in (NON_STREAM, STREAM):
        ours, theirs = report.find("latency", mode, OCTOROUTE), report.find("latency", mode, LITELLM)
        if ours and theirs:
            table.add_row(
                f"{mode} p50 latency, c=1 (ms)",
                _fmt(ours.p50_ms),
                _fmt(theirs.p50_ms),
                f"{theirs.p50_ms / ours.p50_ms:.1f}x",
            )
        for level in report.plan.concurrency:
            ours = report.find("throughput", mode, OCTOROUTE, level)
            theirs = report.find("throughput", mode, LITELLM, level)
            if ours and theirs and theirs.rps > 0:
                table.add_row(
                    f"{mode} req/s, c={level}",
                    f"{ours.rps:,.0f}",
                    f"{theirs.rps:,.1f}",
                    f"{ours.rps / theirs.rps:.1f}x",
                )
            if ours and theirs and ours.proxy_cpu_ms and theirs.proxy_cpu_ms:
                table.add_row(
                    f"{mode} CPU ms/request, c={level}",
                    _fmt(ours.proxy_cpu_ms),
                    _fmt(theirs.proxy_cpu_ms, 2),
                    f"{theirs.proxy_cpu_ms / ours.proxy_cpu_ms:.1f}x",
                )
        table.add_section()
    ours_mem, theirs_mem = report.memory.get("octoroute", {}), report.memory.get("litellm", {})
    if ours_mem.get("after_load_rss_mb") and theirs_mem.get("after_load_rss_mb"):
        table.add_row(
            "RSS after load (MB)",
            _fmt(ours_mem["after_load_rss_mb"], 1),
            _fmt(theirs_mem["after_load_rss_mb"], 1),
            f"{theirs_mem['after_load_rss_mb'] / ours_mem['after_load_rss_mb']:.1f}x",
        )
    return table


def _targets_table(report: Report) -> Table:
    table = Table(title="Targets from the issue (reported, never asserted)", box=box.SIMPLE_HEAD)
    for col in ("target", "goal", "measured", "", "note"):
        table.add_column(col, overflow="fold")
    for check in evaluate_targets(report):
        status = {True: "[green]met[/]", False: "[red]missed[/]", None: "[dim]n/a[/]"}[check.met]
        table.add_row(check.name, check.goal, check.measured, status, escape(check.note))
    return table


def _header(report: Report) -> str:
    m, p = report.meta, report.plan
    lines = [
        f"[bold]octoroute overhead benchmark[/]  {m['started']}  "
        f"({m.get('duration_s', '?')} s{', quick' if m['quick'] else ''})",
        f"octoroute {m['octoroute']} @ {m['git']}; Python {m['python']}, aiohttp {m['aiohttp']}, uvloop {m['uvloop']}; "
        f"{m['cpus']} CPUs, load average at start {m['loadavg_at_start'][0]}; upstream on {m['upstream_loop']}",
        f"plan: {p.latency_requests:,}/{p.stream_latency_requests:,} sequential (non-stream/stream), "
        f"{p.requests:,} per throughput run at c={','.join(map(str, p.concurrency))}, "
        + (f"{p.long_prompt_requests:,} with a {m['long_prompt_kb']} KB prompt, " if m.get("long_prompt_kb") else "")
        + f"{p.paced_requests:,} paced streams; "
        f"LiteLLM: {escape(str(report.litellm.get('status', 'not run')))}",
    ]
    return "\n".join(lines)


def _warnings(report: Report) -> list[str]:
    out = []
    measured = [r for r in report.rows if r.elapsed_s > 0]
    if measured:
        busy = sum(r.other_cores * r.elapsed_s for r in measured) / sum(r.elapsed_s for r in measured)
        if busy > NOISY_CORES:
            out.append(
                f"other processes kept {busy:.2f} cores busy on average during the runs ('other load'): "
                "req/s and latencies are pessimistic; CPU per request is much less affected"
            )
    for row in report.rows:
        if row.errors:
            out.append(
                f"{row.phase} {row.mode} {row.target} c={row.concurrency}: "
                f"{row.errors} errors, first: {row.first_error}"
            )
        elif row.capped:
            out.append(
                f"{row.phase} {row.mode} {row.target} c={row.concurrency}: stopped at its time cap "
                f"after {row.ok:,} of {row.planned:,} requests"
            )
    out.extend(f"skipped {s}" for s in report.skipped)
    return out


def print_report(report: Report, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal and console.width < REPORT_WIDTH:
            console = Console(width=REPORT_WIDTH)  # a pipe or file: do not squeeze the tables into 80 columns
    console.print()
    console.print(_header(report), highlight=False)
    for table in (
        _latency_table(report),
        _throughput_table(report),
        _paced_table(report),
        _metrics_table(report),
        _memory_table(report),
        _litellm_table(report),
        _targets_table(report),
    ):
        if table is not None:
            console.print(table)
    for line in _metrics_summary(report):
        console.print(line, highlight=False)
    for warning in _warnings(report):
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
