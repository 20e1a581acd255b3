"""The validated config turned into what the gateway runs on: named groups of
endpoints with ids, resolved timeouts, fallbacks and secrets.

`check_semantics` finds every cross-field problem at once; `build_topology`
assumes a config that passed it.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

from octoroute.config.keysfile import ResolvedKey, auth_problems, keys_file_warning, resolve_keys
from octoroute.config.models import (
    JUDGE_STRATEGIES,
    Config,
    EndpointConfig,
    GroupOptions,
    RateLimitOverride,
    RoutingConfig,
    ShadowConfig,
    Timeouts,
)
from octoroute.config.problems import problems_from
from octoroute.config.weightsfile import read_weights_file
from octoroute.core.errors import ConfigError, ConfigProblem
from octoroute.core.types import Api, Fim, Operation, Strategy, Tier

DEFAULT_TIER_FALLBACK: dict[str, str] = {Tier.FAST: Tier.BALANCED, Tier.BALANCED: Tier.DEEP}
NO_FALLBACK = ("", "none")


# octoroute 1.0's model names (its /chat `model`, `model_used` and /models `name`) for the tiers.
ONE_O_NAMES: dict[str, str] = {Tier.FAST: "fast_8b", Tier.BALANCED: "balanced_30b", Tier.DEEP: "deep_120b"}
ONE_O_TIERS: dict[str, str] = {name: tier for tier, name in ONE_O_NAMES.items()}


def one_o_name(group: str) -> str:
    """The name octoroute 1.0 gives a tier (`fast` -> `fast_8b`); other groups keep theirs."""
    return ONE_O_NAMES.get(group, group)


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
OTEL_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")


@dataclass(frozen=True, slots=True)
class ResolvedTimeouts:
    connect: float
    first_byte: float
    total: float
    idle: float = 120.0  # after a stream's commit point; no overall limit then


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    id: str
    group: str
    name: str
    base_url: str
    weight: float
    priority: int
    max_tokens: int | None
    temperature: float | None
    api_key: str | None
    timeouts: ResolvedTimeouts
    kind: Api = Api.OPENAI
    max_concurrency: int | None = None  # slots; None: unbounded (or discovered at startup)
    context_window: int | None = None  # tokens, from config; else discovered or the capability table
    api_key_env: str | None = None  # where `api_key` came from, for messages about refused credentials
    # per million tokens in `[usage] currency`; None: no price (the endpoint's, else its group's)
    price_input_per_mtok: Decimal | None = None
    price_output_per_mtok: Decimal | None = None
    responses: bool = False  # also speaks the Responses API (`/responses`): Responses requests pass through
    fim: Fim = Fim.NONE  # how it does fill-in-the-middle (`endpoint_fim`)


def endpoint_fim(ep: EndpointConfig) -> Fim:
    """An endpoint's fill-in-the-middle: as configured, else `suffix` for Ollama (its
    /v1/completions takes `suffix`), else none (a server that ignores `suffix` would
    answer a FIM request as a plain completion, which an editor cannot tell)."""
    if ep.fim is not None:
        return ep.fim
    return Fim.SUFFIX if ep.kind is Api.OLLAMA else Fim.NONE


@dataclass(frozen=True, slots=True)
class GroupSpec:
    name: str
    endpoints: tuple[EndpointSpec, ...]
    fallback: str | None
    options: GroupOptions = field(default_factory=GroupOptions)


@dataclass(frozen=True, slots=True)
class Topology:
    groups: Mapping[str, GroupSpec]
    endpoints: Mapping[str, EndpointSpec]
    aliases: tuple[tuple[str, str], ...] = ()  # (pattern, target) in config order
    # (raw API key, its override) per `[[rate_limit.overrides]]`, read from `key_env`;
    # empty when rate limiting is off. Secrets: kept out of repr.
    rate_limit_keys: tuple[tuple[str, RateLimitOverride], ...] = field(default=(), repr=False)
    metrics_token: str | None = field(default=None, repr=False)  # bearer token for /metrics and /metrics.json
    state_url: str = field(default="", repr=False)  # [state] url, or the value of url_env (may hold a password)
    # Every key [auth] accepts (digests only, never a key), empty when auth is off.
    client_keys: tuple[ResolvedKey, ...] = field(default=(), repr=False)

    def resolve_alias(self, model: str) -> str | None:
        """The target of the first alias whose pattern (shell-style: `claude-*`) matches `model`."""
        for pattern, target in self.aliases:
            if pattern == model or fnmatch.fnmatchcase(model, pattern):
                return target
        tier = ONE_O_TIERS.get(model.lower())  # 1.0's names; its router brain answers FAST_8B etc.
        return tier if tier in self.groups else None

    def fallback_chain(self, group: str) -> tuple[str, ...]:
        """`group` followed by its fallbacks, in order (acyclic by validation)."""
        chain = [group]
        nxt = self.groups[group].fallback
        while nxt is not None and nxt not in chain:
            chain.append(nxt)
            nxt = self.groups[nxt].fallback
        return tuple(chain)


def _endpoint_ids(config: Config) -> list[tuple[str, str, int, bool]]:
    """(id, group, index, explicit) for every endpoint; default ids are `group/name`."""
    out: list[tuple[str, str, int, bool]] = []
    seen: set[str] = {ep.id for eps in config.models.values() for ep in eps if ep.id}
    for group, eps in config.models.items():
        for i, ep in enumerate(eps):
            if ep.id:
                out.append((ep.id, group, i, True))
                continue
            candidate = f"{group}/{ep.name}"
            n = 2
            while candidate in seen:
                candidate = f"{group}/{ep.name}#{n}"
                n += 1
            seen.add(candidate)
            out.append((candidate, group, i, False))
    return out


def _fallbacks(config: Config) -> dict[str, str | None]:
    result: dict[str, str | None] = {}
    for group in config.models:
        explicit = config.fallback.get(group)
        if explicit is not None:
            result[group] = None if explicit in NO_FALLBACK else explicit
        else:
            default = DEFAULT_TIER_FALLBACK.get(group)
            result[group] = default if default in config.models else None
    return result


def _shadow_problems(config: Config) -> list[ConfigProblem]:
    """`[routing.shadow]`: a candidate different from the live strategy, and a router
    tier to ask when it may call the judge."""
    routing, shadow = config.routing, config.routing.shadow
    if shadow is None:
        return []
    if shadow.learned_weights is not None:
        return _shadow_weights_problems(routing, shadow, shadow.learned_weights)
    if shadow.strategy is routing.strategy:
        hint = (
            ", or give it a trained model of its own (learned_weights)" if shadow.strategy is Strategy.LEARNED else ""
        )
        return [
            ConfigProblem(
                "routing.shadow.strategy",
                f"'{shadow.strategy.value}' is already the live strategy; shadow a different one{hint}",
            )
        ]
    asks = shadow.allow_judge and shadow.strategy in JUDGE_STRATEGIES
    if asks and routing.strategy not in JUDGE_STRATEGIES and routing.router_tier not in config.models:
        return [  # (a live judge strategy already reports a missing router tier)
            ConfigProblem(
                "routing.router_tier",
                f"'{routing.router_tier}' has no endpoints under [models], and the shadow "
                f"strategy '{shadow.strategy.value}' asks it (allow_judge = true)",
            )
        ]
    return []


def _shadow_weights_problems(routing: RoutingConfig, shadow: ShadowConfig, path: str) -> list[ConfigProblem]:
    """A candidate with its own weights file (`path`): one it can read, used by a
    candidate that scores with the learned model, and not the live model's file."""
    where = "routing.shadow.learned_weights"
    uses_model = shadow.strategy is Strategy.LEARNED or (shadow.strategy in JUDGE_STRATEGIES and not shadow.allow_judge)
    if not uses_model:
        return [
            ConfigProblem(
                where,
                f"the shadow strategy '{shadow.strategy.value}' does not score with the learned model"
                + (" (it asks the router model: allow_judge = true)" if shadow.allow_judge else ""),
            )
        ]
    if shadow.strategy is routing.strategy and path == routing.learned_weights:
        return [ConfigProblem(where, "is the live model's file too (routing.learned_weights); shadow a different one")]
    try:
        read_weights_file(path)
    except ValueError as exc:
        return [ConfigProblem(where, str(exc))]
    return []


def check_semantics(config: Config, env: Mapping[str, str]) -> list[ConfigProblem]:
    """Every cross-field problem, each with its key path."""
    problems: list[ConfigProblem] = []
    tiers_present = [t for t in Tier if t in config.models]
    if not tiers_present:
        problems.append(ConfigProblem("models", "define at least one of the tiers fast, balanced, deep"))
    if config.routing.strategy in JUDGE_STRATEGIES and config.routing.router_tier not in config.models:
        problems.append(
            ConfigProblem("routing.router_tier", f"'{config.routing.router_tier}' has no endpoints under [models]")
        )
    problems.extend(_shadow_problems(config))
    if config.routing.learned_weights is not None:
        try:
            read_weights_file(config.routing.learned_weights)
        except ValueError as exc:
            problems.append(ConfigProblem("routing.learned_weights", str(exc)))
    explicit_default = "default_tier" in config.routing.model_fields_set
    if tiers_present and explicit_default and config.routing.default_tier not in config.models:
        problems.append(
            ConfigProblem("routing.default_tier", f"'{config.routing.default_tier}' has no endpoints under [models]")
        )
    ids: dict[str, str] = {}
    for ep_id, group, i, explicit in _endpoint_ids(config):
        where = f"models.{group}[{i}].id"
        if ep_id in ids and explicit:
            problems.append(ConfigProblem(where, f"'{ep_id}' is already used by {ids[ep_id]}"))
        elif explicit and (ep_id in config.models or ep_id == "auto"):
            problems.append(ConfigProblem(where, f"'{ep_id}' is also a group name; ids and groups share one namespace"))
        ids.setdefault(ep_id, where)
    for group, eps in config.models.items():
        for i, ep in enumerate(eps):
            if ep.api_key_env and ep.api_key_env not in env:
                problems.append(
                    ConfigProblem(
                        f"models.{group}[{i}].api_key_env", f"environment variable {ep.api_key_env} is not set"
                    )
                )
    for group, target in config.fallback.items():
        if group not in config.models:
            problems.append(ConfigProblem(f"fallback.{group}", f"'{group}' is not a group under [models]"))
        elif target not in NO_FALLBACK and target not in config.models:
            problems.append(ConfigProblem(f"fallback.{group}", f"target '{target}' is not a group under [models]"))
        elif target == group:
            problems.append(ConfigProblem(f"fallback.{group}", "a group cannot fall back to itself"))
    if config.observability.tracing.enabled and not _otel_installed():
        problems.append(
            ConfigProblem(
                "observability.tracing.enabled",
                "tracing needs OpenTelemetry; install the extra: pip install 'octoroute[otel]'",
            )
        )
    events_file = config.observability.events_file
    if events_file is not None and not Path(events_file).parent.is_dir():
        problems.append(ConfigProblem("observability.events_file", f"the directory of {events_file} does not exist"))
    token_env = config.observability.metrics_token_env
    if token_env is not None and len(env.get(token_env, "")) < 8:
        problems.append(
            ConfigProblem(
                "observability.metrics_token_env",
                f"environment variable {token_env} is not set or holds fewer than 8 characters",
            )
        )
    state_env = config.state.url_env
    if state_env is not None and not re.match(r"^(redis|rediss|unix)://", env.get(state_env, "")):
        problems.append(
            ConfigProblem(
                "state.url_env",
                f"environment variable {state_env} is not set or does not hold a redis://, rediss:// or unix:// URL",
            )
        )
    problems.extend(_cycle_problems(config))
    problems.extend(_rate_limit_problems(config, env))
    problems.extend(auth_problems(config, env))
    targets = {"auto", *config.models, *(ep_id for ep_id, *_ in _endpoint_ids(config))}
    for group in config.groups:
        if group not in config.models:
            problems.append(ConfigProblem(f"groups.{group}", f"'{group}' is not a group under [models]"))
    problems.extend(_serves_problems(config))
    for pattern, target in config.aliases.items():
        if target not in targets:
            problems.append(
                ConfigProblem(f"aliases.{pattern}", f"target '{target}' is not 'auto', a group or an endpoint id")
            )
        elif pattern == "auto":
            problems.append(ConfigProblem(f"aliases.{pattern}", "'auto' is reserved for routing"))
        elif pattern in targets:
            problems.append(ConfigProblem(f"aliases.{pattern}", f"'{pattern}' is already a group or endpoint id"))
    for key in config.timeouts.model_extra or {}:
        if key not in config.models:
            problems.append(ConfigProblem(f"timeouts.{key}", f"'{key}' is not a group under [models]"))
            continue
        try:
            config.timeouts.for_group(key)
        except ValidationError as exc:
            problems.extend(problems_from(exc, ("timeouts", key), model=Timeouts))
    return problems


def _serves_problems(config: Config) -> list[ConfigProblem]:
    """`[groups.X] serves` and `fim`: the tiers `auto` chooses among serve chat, and a
    group that serves embeddings or completions has an endpoint that can (not anthropic)."""
    problems: list[ConfigProblem] = []
    for group, eps in config.models.items():
        serves = config.groups.get(group, GroupOptions()).serves
        if group in {t.value for t in Tier} and Operation.CHAT not in serves:
            problems.append(
                ConfigProblem(
                    f"groups.{group}.serves",
                    f"'{group}' is a tier that chat 'auto' routing picks, so it must serve chat; "
                    "put embeddings models in a group of their own name",
                )
            )
        options = config.groups.get(group)
        explicit = options is not None and "serves" in options.model_fields_set
        for op in (Operation.EMBEDDINGS, Operation.COMPLETIONS):
            if explicit and op in serves and all(ep.kind is Api.ANTHROPIC for ep in eps):
                problems.append(
                    ConfigProblem(
                        f"groups.{group}.serves",
                        f"'{group}' has only kind = \"anthropic\" endpoints, which cannot serve {op.value}",
                    )
                )
        for i, ep in enumerate(eps):
            if ep.kind is Api.ANTHROPIC and ep.fim not in (None, Fim.NONE):
                problems.append(
                    ConfigProblem(f"models.{group}[{i}].fim", 'a kind = "anthropic" endpoint has no completions API')
                )
    return problems


def _cycle_problems(config: Config) -> list[ConfigProblem]:
    fallbacks = _fallbacks(config)
    problems = []
    reported: set[frozenset[str]] = set()
    for start in config.models:
        path = [start]
        nxt = fallbacks.get(start)
        while nxt is not None and nxt in fallbacks:
            if nxt in path:
                cycle = frozenset(path[path.index(nxt) :])
                if cycle not in reported:
                    reported.add(cycle)
                    shown = " -> ".join([*path[path.index(nxt) :], nxt])
                    problems.append(ConfigProblem(f"fallback.{nxt}", f"fallback chain is a cycle: {shown}"))
                break
            path.append(nxt)
            nxt = fallbacks.get(nxt)
    return problems


def _rate_limit_problems(config: Config, env: Mapping[str, str]) -> list[ConfigProblem]:
    """Each override's `key_env` is set, non-empty and holds a key no other override holds.

    Checked only when rate limiting is on, so turning it off needs none of the keys."""
    if not config.rate_limit.enabled:
        return []
    problems: list[ConfigProblem] = []
    first_with_key: dict[str, int] = {}
    for i, override in enumerate(config.rate_limit.overrides):
        where = f"rate_limit.overrides[{i}].key_env"
        name = override.key_env
        key = env.get(name)
        if key is None:
            problems.append(ConfigProblem(where, f"environment variable {name} is not set"))
        elif not key:
            problems.append(ConfigProblem(where, f"environment variable {name} is empty"))
        elif key in first_with_key:
            j = first_with_key[key]
            other = config.rate_limit.overrides[j].key_env
            problems.append(
                ConfigProblem(where, f"{name} holds the same API key as rate_limit.overrides[{j}] ({other})")
            )
        else:
            first_with_key[key] = i
    return problems


def default_tier(config: Config) -> Tier:
    """`routing.default_tier`, or when it is left unset and has no endpoints, the
    nearest configured tier (balanced, then fast, then deep)."""
    wanted = config.routing.default_tier
    if wanted in config.models:
        return wanted
    return next((t for t in (Tier.BALANCED, Tier.FAST, Tier.DEEP) if t in config.models), wanted)


def _resolve_timeouts(config: Config, group: str, ep: EndpointConfig) -> ResolvedTimeouts:
    tier = config.timeouts.for_group(group)
    levels: list[Timeouts] = [ep.timeouts, tier]
    total = next((t.total for t in levels if t.total), config.server.request_timeout_seconds)
    connect = next((t.connect for t in levels if t.connect), config.timeouts.connect)
    first_byte = next((t.first_byte for t in levels if t.first_byte), config.timeouts.first_byte or total)
    idle = next((t.idle for t in levels if t.idle), config.timeouts.idle)
    return ResolvedTimeouts(connect=min(connect, total), first_byte=min(first_byte, total), total=total, idle=idle)


def _first(own: Decimal | None, inherited: Decimal | None) -> Decimal | None:
    return own if own is not None else inherited


def build_topology(config: Config, env: Mapping[str, str]) -> Topology:
    problems = check_semantics(config, env)
    if problems:
        raise ConfigError(problems)
    fallbacks = _fallbacks(config)
    endpoints: dict[str, EndpointSpec] = {}
    by_group: dict[str, list[EndpointSpec]] = {g: [] for g in config.models}
    for ep_id, group, i, _ in _endpoint_ids(config):
        ep = config.models[group][i]
        options = config.groups.get(group, GroupOptions())
        spec = EndpointSpec(
            id=ep_id,
            group=group,
            name=ep.name,
            base_url=ep.base_url,
            weight=ep.weight,
            priority=ep.priority,
            max_tokens=ep.max_tokens,
            temperature=ep.temperature,
            api_key=env.get(ep.api_key_env) if ep.api_key_env else None,
            timeouts=_resolve_timeouts(config, group, ep),
            kind=ep.kind,
            max_concurrency=ep.max_concurrency,
            context_window=ep.context_window,
            api_key_env=ep.api_key_env,
            price_input_per_mtok=_first(ep.price_input_per_mtok, options.price_input_per_mtok),
            price_output_per_mtok=_first(ep.price_output_per_mtok, options.price_output_per_mtok),
            responses=ep.responses,
            fim=endpoint_fim(ep),
        )
        endpoints[ep_id] = spec
        by_group[group].append(spec)
    groups = {
        g: GroupSpec(name=g, endpoints=tuple(eps), fallback=fallbacks[g], options=config.groups.get(g, GroupOptions()))
        for g, eps in by_group.items()
    }
    rate_limit_keys = (
        tuple((env[o.key_env], o) for o in config.rate_limit.overrides) if config.rate_limit.enabled else ()
    )
    token_env = config.observability.metrics_token_env
    return Topology(
        groups=groups,
        endpoints=endpoints,
        aliases=tuple(config.aliases.items()),
        rate_limit_keys=rate_limit_keys,
        metrics_token=env[token_env] if token_env else config.observability.metrics_token,
        state_url=env[config.state.url_env] if config.state.url_env else config.state.url,
        client_keys=tuple(resolve_keys(config, env)) if config.auth.enabled else (),
    )


def _otel_installed() -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in OTEL_MODULES)
    except ModuleNotFoundError:  # a parent package is missing
        return False


def config_warnings(config: Config, topology: Topology) -> list[str]:
    """Settings that are valid but probably not what the operator wants; logged at
    startup, written to the event file and shown by `octoroute check`."""
    warnings: list[str] = []
    for ep in topology.endpoints.values():
        url = urlsplit(ep.base_url)
        if ep.api_key and url.scheme == "http" and url.hostname not in LOOPBACK_HOSTS:
            warnings.append(f"endpoint {ep.id} sends its API key over plain http to {url.hostname}; use https")
    warnings.extend(auth_warnings(config))
    obs = config.observability
    if obs.log_content:
        warnings.append("observability.log_content is on: prompt and completion text go to the log and event file")
    if obs.tracing.enabled and obs.tracing.sample_ratio == 0:
        warnings.append("observability.tracing is enabled with sample_ratio 0: no trace will be recorded")
    return warnings


def auth_warnings(config: Config) -> list[str]:
    """A bind beyond loopback with `[auth]` off; a keys file others can read."""
    warnings: list[str] = []
    if not config.auth.enabled and config.server.host not in LOOPBACK_HOSTS:
        warnings.append(
            f"server.host {config.server.host} accepts connections beyond this machine and [auth] is off: "
            "anyone who can reach the port can use every model; enable [auth] (see octoroute keys create)"
        )
    unused = [k.name for k in config.auth.keys if k.requests_per_second or k.burst or k.tokens_per_minute]
    if config.auth.enabled and unused and not config.rate_limit.enabled:
        warnings.append(
            f"auth.keys {', '.join(unused)} set rate limits but [rate_limit] is off; enable it for them to apply"
        )
    if config.auth.enabled and config.auth.keys_file:
        warning = keys_file_warning(config.auth.keys_file)
        if warning:
            warnings.append(warning)
    return warnings
