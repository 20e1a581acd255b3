"""`octoroute doctor [--config PATH]`: every endpoint probed live and the
environment checked, one table, and for each problem the fix as a snippet.

Judging is pure (`endpoint_findings`, `bind_findings`, `key_findings`); the
probes are `upstream.checkup`, the file and git checks `dotenv_findings`.
Exit status 0 when nothing failed (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import asyncio
import difflib
import enum
import ipaddress
import json
import shutil
import stat
import subprocess
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from octoroute.cli.commands import print_problems
from octoroute.config import Config
from octoroute.config.loader import validate_config
from octoroute.config.topology import EndpointSpec, Topology, build_topology, check_semantics
from octoroute.core.errors import ConfigError
from octoroute.core.types import Api
from octoroute.upstream.checkup import Checkup, Tried, examine_all


class Verdict(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    subject: str  # an endpoint id, or "environment"
    check: str
    verdict: Verdict
    detail: str
    fix: str | None = None  # a config (or shell) snippet, several lines


_MARK = {Verdict.OK: "[green]ok[/]", Verdict.WARN: "[yellow]warn[/]", Verdict.FAIL: "[bold red]FAIL[/]"}


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def endpoint_findings(c: Checkup, where: str) -> list[Finding]:
    """What a `Checkup` means, check by check; `where` is the endpoint's key path (`models.fast[0]`)."""
    ep = c.endpoint
    sid = ep.id
    if not c.reached:
        fix = f"# start the server, or in {where} say where it listens\nbase_url = {_q(ep.base_url)}"
        return [Finding(sid, "reachable", Verdict.FAIL, c.error or "no answer", fix)]
    out = [Finding(sid, "reachable", Verdict.OK, f"{c.server or 'server'} answered in {c.listing_ms or 0:.0f} ms")]
    out += _base_url_findings(c, where)
    if c.refused:
        out.append(_refused(c, where))
    out += _model_findings(c, where)
    out += _chat_findings(c, where)
    out.append(_context_finding(c, where))
    timings = [
        f"{label} {ms:.0f} ms"
        for label, ms in (
            ("chat", c.chat.latency_ms if c.chat and c.chat.ok else None),
            ("first event", c.stream.latency_ms if c.stream and c.stream.ok else None),
        )
        if ms is not None
    ]
    if timings:
        out.append(Finding(sid, "latency", Verdict.OK, ", ".join(timings)))
    return out


def _base_url_findings(c: Checkup, where: str) -> list[Finding]:
    ep = c.endpoint
    if c.working_base_url == ep.base_url:
        return [Finding(ep.id, "base_url", Verdict.OK, f"{ep.base_url}/models lists models")]
    if c.working_base_url is not None:
        detail = (
            f"{ep.base_url}/models answered HTTP {c.listing_status}, {c.working_base_url}/models lists models: "
            "base_url should end in /v1"
        )
        fix = f"# in {where}\nbase_url = {_q(c.working_base_url)}"
        return [Finding(ep.id, "base_url", Verdict.FAIL, detail, fix)]
    if c.refused or ep.kind is Api.ANTHROPIC:
        return []
    if c.chat is not None and c.chat.ok:  # a server without a listing, but the URL is right
        return [Finding(ep.id, "base_url", Verdict.WARN, f"{c.error or 'no model listing'}; chat works")]
    fix = f"# in {where}: the server's OpenAI base URL, often ending in /v1\nbase_url = {_q(ep.base_url)}"
    return [Finding(ep.id, "base_url", Verdict.FAIL, c.error or "no model listing at this base_url", fix)]


def _refused(c: Checkup, where: str) -> Finding:
    ep = c.endpoint
    name = ep.api_key_env or "UPSTREAM_API_KEY"
    if ep.api_key_env:
        detail = f"the server refused the key in ${name} (HTTP 401/403)"
        fix = f"# put the server's key in the environment octoroute runs in\nexport {name}=<the server's key>"
    else:
        detail = "the server wants an API key (HTTP 401/403) and none is configured"
        fix = f'# in {where}\napi_key_env = "{name}"\n# and where octoroute runs\nexport {name}=<the server\'s key>'
    return Finding(ep.id, "api key", Verdict.FAIL, detail, fix)


def _model_findings(c: Checkup, where: str) -> list[Finding]:
    ep = c.endpoint
    if not c.models:
        if ep.kind is Api.ANTHROPIC:
            return []
        return [Finding(ep.id, "model", Verdict.WARN, "the server lists no models; not checked")]
    if ep.name in c.models:
        return [Finding(ep.id, "model", Verdict.OK, f"{ep.name!r} is listed")]
    best = (difflib.get_close_matches(ep.name, c.models, n=1, cutoff=0) or [c.models[0]])[0]
    shown = ", ".join(c.models[:6]) + (", ..." if len(c.models) > 6 else "")
    fix = f"# in {where}: one of the models the server has\nname = {_q(best)}"
    if c.server == "llama.cpp" and len(c.models) == 1:
        detail = f"{ep.name!r} is not listed; llama.cpp answers any name with its one model {best!r}"
        return [Finding(ep.id, "model", Verdict.WARN, detail, fix)]
    return [Finding(ep.id, "model", Verdict.FAIL, f"{ep.name!r} is not among the server's models: {shown}", fix)]


def _tried_finding(ep: EndpointSpec, check: str, tried: Tried | None, fix: str | None) -> Finding:
    if tried is None:
        return Finding(ep.id, check, Verdict.WARN, "not tried")
    if tried.ok:
        return Finding(ep.id, check, Verdict.OK, tried.detail)
    return Finding(ep.id, check, Verdict.FAIL, tried.detail, fix)


def _chat_findings(c: Checkup, where: str) -> list[Finding]:
    ep = c.endpoint
    slow = "timeout" in (c.chat.detail if c.chat else "")
    chat_fix = (
        f"# in {where}: give a slow server more time (seconds)\ntimeouts = {{ first_byte = 120, total = 600 }}"
        if slow
        else "# the server's log says why (still loading? too large for memory?)"
    )
    tools_fix = (
        "# this model cannot call tools: send requests with tools elsewhere\n"
        f"[capabilities.{_q(ep.name)}]\ntools = false"
    )
    if c.server == "llama.cpp":
        tools_fix += "\n# or start llama-server with --jinja (its tool-call templates)"
    chat_failed = c.chat is not None and not c.chat.ok
    return [
        _tried_finding(ep, "chat", c.chat, chat_fix),
        # when the plain chat fails too, the cause is the chat's (its fix), not tool calling
        _tried_finding(ep, "stream", c.stream, None if chat_failed else "# the server must stream server-sent events"),
        _tried_finding(ep, "tools", c.tools, None if chat_failed else tools_fix),
    ]


def _context_finding(c: Checkup, where: str) -> Finding:
    ep = c.endpoint
    facts = c.facts
    if facts is None or facts.context_window is None:
        if ep.context_window is not None:
            return Finding(ep.id, "context", Verdict.OK, f"{ep.context_window:,} tokens (from the config)")
        fix = f"# in {where}: tokens per request, as the server runs\ncontext_window = 8192"
        return Finding(ep.id, "context", Verdict.WARN, "the server does not say its context window", fix)
    slots = f", {facts.total_slots} slot(s)" if facts.total_slots else ""
    detail = f"{facts.context_window:,} tokens{slots} ({facts.source.value})"
    if ep.context_window is not None and ep.context_window > facts.context_window:
        fix = f"# in {where}: what the server really holds\ncontext_window = {facts.context_window}"
        return Finding(ep.id, "context", Verdict.FAIL, f"config says {ep.context_window:,} but server {detail}", fix)
    return Finding(ep.id, "context", Verdict.OK, detail)


# -- environment ----------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_findings(config: Config) -> list[Finding]:
    host = config.server.host
    if is_loopback(host):
        return [Finding("environment", "bind", Verdict.OK, f"{host} is loopback only")]
    if config.auth.enabled:
        return [Finding("environment", "bind", Verdict.OK, f"{host} reaches beyond loopback; [auth] is on")]
    fix = (
        '# either stay on loopback\n[server]\nhost = "127.0.0.1"\n'
        "# or require client keys (then: octoroute keys create NAME)\n"
        '[auth]\nenabled = true\nkeys_file = "keys.jsonl"'
    )
    return [Finding("environment", "bind", Verdict.FAIL, f"{host} reaches beyond loopback without [auth]", fix)]


def key_findings(config: Config, env: Mapping[str, str]) -> list[Finding]:
    out = []
    for group, eps in config.models.items():
        for i, ep in enumerate(eps):
            name = ep.api_key_env
            if not name:
                continue
            where = f"models.{group}[{i}].api_key_env"
            if env.get(name):
                out.append(Finding("environment", "api key", Verdict.OK, f"{name} is set ({where})"))
            else:
                said = "is empty" if name in env else "is not set"
                fix = f"# where octoroute runs (a shell, a service's EnvironmentFile)\nexport {name}=<the key>"
                out.append(Finding("environment", "api key", Verdict.FAIL, f"{name} {said} ({where})", fix))
    return out


def dotenv_findings(places: Iterable[Path]) -> list[Finding]:
    """Each `.env` in `places` (directories): readable only by its owner, not tracked by git."""
    out: list[Finding] = []
    for path in dict.fromkeys(p.resolve() / ".env" for p in places):
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            detail = f"{path} is open to group or others (mode {stat.S_IMODE(mode):04o})"
            out.append(Finding("environment", ".env", Verdict.FAIL, detail, f"chmod 600 {path}"))
        else:
            out.append(Finding("environment", ".env", Verdict.OK, f"{path} is readable by its owner only"))
        if _git_tracks(path):
            fix = (
                f"cd {path.parent} && git rm --cached .env && echo .env >> .gitignore\n# then change every key it held"
            )
            out.append(Finding("environment", ".env", Verdict.FAIL, f"{path} is tracked by git", fix))
    return out


def _git_tracks(path: Path) -> bool:
    git = shutil.which("git")
    if git is None:
        return False
    try:
        done = subprocess.run(
            [git, "-C", str(path.parent), "ls-files", "--error-unmatch", path.name],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# -- the command ----------------------------------------------------------------------------


def _endpoint_paths(topology: Topology) -> dict[str, str]:
    """Each endpoint id's key path (a group's endpoints keep their config order)."""
    return {ep.id: f"models.{g}[{i}]" for g, spec in topology.groups.items() for i, ep in enumerate(spec.endpoints)}


def render(console: Console, findings: list[Finding]) -> None:
    table = Table(show_lines=False, expand=False, pad_edge=False)
    table.add_column("endpoint", overflow="fold", max_width=22)
    table.add_column("check", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("detail", overflow="fold")
    last = None
    for f in findings:
        table.add_row(escape(f.subject) if f.subject != last else "", f.check, _MARK[f.verdict], escape(f.detail))
        last = f.subject
    console.print(table, highlight=False)
    problems = [f for f in findings if f.fix and f.verdict is not Verdict.OK]
    for f in problems:
        console.print(f"\n{_MARK[f.verdict]} {escape(f.subject)} {f.check}: {escape(f.detail)}", highlight=False)
        for line in f.fix.splitlines() if f.fix else []:
            console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)


def run_doctor(path: Path | None, env: Mapping[str, str], timeout: float, console: Console | None = None) -> int:
    out = console or Console()
    err = Console(stderr=True) if console is None else console
    if path is None:
        err.print("octoroute doctor: no config (give --config PATH, or put octoroute.toml here)", highlight=False)
        return 1
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        config = validate_config(data)
    except OSError as exc:
        err.print(f"octoroute doctor: cannot read {path}: {exc.strerror or exc}", markup=False, highlight=False)
        return 1
    except tomllib.TOMLDecodeError as exc:
        err.print(f"octoroute doctor: {path} is not valid TOML: {exc}", markup=False, highlight=False)
        return 1
    except ConfigError as exc:
        print_problems(err, path, exc, "; fix these first")
        return 1
    # A missing api_key_env is a finding here, not a reason to stop: probe without the key.
    missing = {ep.api_key_env: "" for eps in config.models.values() for ep in eps if ep.api_key_env}
    probe_env = {**missing, **env}
    problems = check_semantics(config, probe_env)
    if problems:
        print_problems(err, path, ConfigError(problems), "; fix these first")
        return 1
    topology = build_topology(config, probe_env)
    endpoints = list(topology.endpoints.values())
    checkups = asyncio.run(examine_all(endpoints, timeout))
    where = _endpoint_paths(topology)
    findings = [f for c in checkups for f in endpoint_findings(c, where[c.endpoint.id])]
    findings += key_findings(config, env) + bind_findings(config)
    findings += dotenv_findings([Path.cwd(), path.parent])  # resolved and deduplicated there
    render(out, findings)
    failed = sum(1 for f in findings if f.verdict is Verdict.FAIL)
    warned = sum(1 for f in findings if f.verdict is Verdict.WARN)
    summary = f"{len(endpoints)} endpoint(s): {failed} problem(s), {warned} warning(s)"
    out.print(f"\n{'[bold red]' if failed else '[green]'}{summary}[/]", highlight=False)
    return 1 if failed else 0
