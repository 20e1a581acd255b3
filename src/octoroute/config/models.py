"""The configuration schema: frozen pydantic models, unknown keys rejected.

The octoroute 1.0 format (`[server]`, `[[models.fast|balanced|deep]]`,
`[routing]`, `[timeouts]`, `[observability]`) validates as is; everything else
here is an optional extension with a default. Cross-field rules (fallback
chains, unique ids, router tier present) live in `topology.py`.
"""

from __future__ import annotations

import enum
import math
import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from octoroute.config.problems import show_value
from octoroute.core.types import Api, Fim, Importance, Operation, Strategy, Tier

GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Seconds = Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]
# A price per million tokens, read as the decimal the TOML file wrote (0.15 stays 0.15, never
# the nearest binary float), so costs add up to the cent; a string ("0.15") is read the same way.


def _decimal(value: object) -> object:
    """A number or numeric string as the `Decimal` it was written as (a float through its
    shortest repr, which is the text TOML had: 0.15 -> Decimal('0.15'))."""
    if isinstance(value, bool):
        return value  # refused below, like any other non-number
    if isinstance(value, int | float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except ArithmeticError:
            raise ValueError(f"must be a number, e.g. 0.15; got {show_value(value)}") from None
    return value


Price = Annotated[Decimal, BeforeValidator(_decimal), Field(ge=0, le=1_000_000, allow_inf_nan=False)]
CURRENCY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,15}$")
ROUTING_STRATEGIES = (Strategy.LEARNED, Strategy.RULE, Strategy.LLM, Strategy.HYBRID, Strategy.TOOL)
JUDGE_STRATEGIES = frozenset({Strategy.LLM, Strategy.HYBRID, Strategy.TOOL})  # these ask the router tier's model


def _routing_strategy(value: object) -> object:
    if value not in ROUTING_STRATEGIES:
        raise ValueError(f"must be one of {', '.join(ROUTING_STRATEGIES)}; got {show_value(value)}")
    return value


RoutingStrategy = Annotated[Strategy, BeforeValidator(_routing_strategy)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Frozen):
    """Per-phase timeouts in seconds; unset phases inherit from the next level up."""

    connect: Seconds | None = None
    first_byte: Seconds | None = None
    total: Seconds | None = None
    idle: Seconds | None = None  # a committed stream's longest silence


class ServerConfig(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=0, le=65535)
    # The total of an attempt unless [timeouts] say otherwise. Long enough for a local server
    # to prefill a coding agent's 40k-token prompt on a CPU (minutes) and as long as Claude
    # Code's own 10-minute request timeout, so the gateway never gives up before its client.
    request_timeout_seconds: Seconds = 600.0
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)


class EndpointConfig(_Frozen):
    """One upstream server speaking the OpenAI API at `base_url` (ending in /v1)."""

    name: str = Field(min_length=1, max_length=256)
    base_url: str
    max_tokens: int | None = Field(default=None, gt=0, le=10_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    weight: float = Field(default=1.0, gt=0, le=1_000_000, allow_inf_nan=False)
    priority: int = Field(default=1, ge=-1000, le=1000)
    id: str | None = Field(default=None, pattern=GROUP_NAME.pattern)
    # The API the server speaks at base_url: openai (/chat/completions), anthropic (/messages),
    # or ollama (OpenAI-compatible at .../v1, native /api/embed for embeddings).
    kind: Api = Api.OPENAI
    # Fill-in-the-middle (/v1/completions with `suffix`): none, suffix (passed on), infill
    # (llama.cpp's /infill). Unset: suffix for kind ollama, none otherwise.
    fim: Fim | None = None
    # An openai-kind server that also serves the Responses API at base_url/responses: /v1/responses
    # requests are passed to it as they are (but for `model`) instead of translated to chat.
    responses: bool = False
    api_key_env: str | None = Field(default=None, pattern=ENV_NAME.pattern)
    timeouts: Timeouts = Timeouts()
    # Requests it serves at once (llama.cpp: its -np slots); None: discovered (total_slots), else unbounded.
    max_concurrency: int | None = Field(default=None, ge=1, le=100_000)
    # Tokens one request may use (prompt + output); unset: discovered from the server, else the capability table.
    context_window: int | None = Field(default=None, gt=0, le=100_000_000)
    # Prices per million tokens in `[usage] currency`; unset: the group's (`[groups.<name>]`).
    price_input_per_mtok: Price | None = None
    price_output_per_mtok: Price | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. http://localhost:11434/v1")
        if "@" in value.split("://", 1)[1].split("/", 1)[0]:
            # Refused rather than stripped: a URL is shown in /models, logs and errors, so a
            # credential in it is one redaction miss away from leaking (issue 11, item 4).
            raise ValueError(
                "must not carry credentials (user:password@); put the key in an environment "
                "variable and name it in api_key_env"
            )
        return value.rstrip("/")

    @field_validator("weight")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be finite")
        return value

    @model_validator(mode="after")
    def _responses_needs_openai(self) -> EndpointConfig:
        if self.responses and self.kind is not Api.OPENAI:
            raise ValueError('responses = true is for kind = "openai" servers (they serve /responses beside /chat)')
        return self


Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
ScoreCut = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class TierShares(_Frozen):
    """Target shares of traffic per tier for the `learned` scorer, on its reference
    prompts (its score is a percentile there, so shares are cut points)."""

    fast: Share = 0.4
    balanced: Share = 0.4
    deep: Share = 0.2

    @model_validator(mode="after")
    def _sum_to_one(self) -> TierShares:
        total = self.fast + self.balanced + self.deep
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"fast + balanced + deep must add up to 1, got {total:g}")
        return self


class ShadowConfig(_Frozen):
    """`[routing.shadow]`: a candidate strategy decided beside the live one on real
    traffic and recorded, never acted on."""

    strategy: RoutingStrategy
    # A candidate that asks the router model (llm, hybrid, tool) really asks it only when
    # this is true; otherwise it is scored offline, as `octoroute score` does.
    allow_judge: bool = False
    sample: float = Field(default=1.0, gt=0, le=1, allow_inf_nan=False)  # share of auto-routed requests shadowed
    max_pending: int = Field(default=32, ge=1, le=10_000)  # judge candidates in flight; more are dropped and counted
    # The candidate's own learned model (e.g. one `octoroute train` wrote), so a trained
    # model can be shadowed beside the live `learned` one; unset: `routing.learned_weights`.
    learned_weights: str | None = Field(default=None, min_length=1)


class RoutingConfig(_Frozen):
    strategy: RoutingStrategy = Strategy.LEARNED
    # Cut points for continuous scores (the `learned` strategy): explicit thresholds
    # [fast|balanced, balanced|deep], or target shares of traffic; not both.
    score_thresholds: tuple[ScoreCut, ScoreCut] | None = None
    tier_shares: TierShares = TierShares()
    default_importance: Importance = Importance.NORMAL
    router_tier: Tier = Tier.FAST
    default_tier: Tier = Tier.BALANCED
    llm_timeout_seconds: Seconds = 5.0
    llm_retries: int = Field(default=2, ge=0, le=5)
    llm_max_prompt_chars: int = Field(default=2000, ge=100, le=100_000)
    # The learned scorer's weights (`octoroute train` writes them); unset: the bundled model.
    learned_weights: str | None = Field(default=None, min_length=1)
    shadow: ShadowConfig | None = None  # `[routing.shadow]`; absent: shadow mode is off

    @model_validator(mode="after")
    def _one_kind_of_cut(self) -> RoutingConfig:
        if self.score_thresholds is not None:
            low, high = self.score_thresholds
            if low > high:
                raise ValueError(
                    f"score_thresholds must be ascending: [fast|balanced, balanced|deep], got {low}, {high}"
                )
            if "tier_shares" in self.model_fields_set:
                raise ValueError("set score_thresholds or tier_shares, not both")
        return self


class TierTimeouts(_Frozen):
    """`[timeouts]`: global connect/first-byte defaults and per-tier totals (1.0 style)
    or per-tier tables. Any group name may appear, not only the three tiers."""

    model_config = ConfigDict(extra="allow", frozen=True)

    connect: Seconds = 5.0
    first_byte: Seconds | None = None
    # A committed stream fails when the upstream sends nothing for this long: a decoding
    # server sends tokens every second or so, so two minutes of silence means it is stuck.
    idle: Seconds = 120.0

    def for_group(self, group: str) -> Timeouts:
        raw = (self.model_extra or {}).get(group)
        if raw is None:
            return Timeouts()
        if isinstance(raw, Timeouts):
            return raw
        if isinstance(raw, int | float):
            return Timeouts(total=float(raw))
        return Timeouts.model_validate(raw, strict=True)


class HealthConfig(_Frozen):
    """Passive and active health checking."""

    failure_threshold: int = Field(default=3, ge=1, le=100)
    check_interval_seconds: Seconds = 10.0
    check_timeout_seconds: Seconds = 2.0
    active: bool = True
    # Ask servers their context window and slots (llama.cpp /props, Ollama /api/show, vLLM /v1/models)
    # at startup and, with active probes, after each successful probe.
    discover: bool = True
    # An upstream 429 without a usable Retry-After keeps its endpoint out of rotation this long.
    rate_limit_cooldown_seconds: Seconds = 5.0
    # A server answering 503 "Loading model" is asked again after this, doubling (at most 8x),
    # within the attempt's `total` timeout.
    loading_retry_seconds: Seconds = 1.0
    # When every endpoint of a request's groups is unhealthy, try the likeliest to have recovered.
    fail_open: bool = True


class RetryConfig(_Frozen):
    """Attempts across endpoints and fallback groups for one request."""

    max_attempts: int = Field(default=4, ge=1, le=20)
    backoff_base_ms: float = Field(default=25.0, ge=0, le=10_000)
    backoff_max_ms: float = Field(default=500.0, ge=0, le=60_000)


class TracingConfig(_Frozen):
    """OpenTelemetry spans over OTLP/HTTP; needs the `otel` extra (`pip install 'octoroute[otel]'`)."""

    enabled: bool = False
    endpoint: str = Field(default="http://127.0.0.1:4318/v1/traces", min_length=1, max_length=2048)
    service_name: str = Field(default="octoroute", min_length=1, max_length=128)
    sample_ratio: float = Field(default=1.0, ge=0, le=1, allow_inf_nan=False)


class ObservabilityConfig(_Frozen):
    log_level: Literal["trace", "debug", "info", "warn", "warning", "error"] = "info"
    log_format: Literal["human", "json"] = "human"
    log_content: bool = False  # put prompt and completion text in the request log and event file
    events_file: str | None = Field(default=None, min_length=1, max_length=4096)
    metrics: bool = True  # False: no Prometheus series and no decision window are recorded
    routing_duration_unit: Literal["ms", "seconds"] = "ms"  # "ms": octoroute 1.0's metric name
    metrics_token: str | None = Field(default=None, min_length=8, max_length=512)
    metrics_token_env: str | None = Field(default=None, max_length=256, pattern=ENV_NAME.pattern)
    decisions_kept: int = Field(default=500, ge=10, le=100_000)
    tracing: TracingConfig = TracingConfig()

    @model_validator(mode="after")
    def _one_token_source(self) -> ObservabilityConfig:
        if self.metrics_token is not None and self.metrics_token_env is not None:
            raise ValueError("set metrics_token or metrics_token_env, not both")
        return self


class ThinkingParam(enum.StrEnum):
    """How an OpenAI-compatible endpoint is told an Anthropic client's thinking request."""

    REASONING_EFFORT = "reasoning_effort"  # low / medium / high (vLLM, Ollama, gpt-oss templates)
    CHAT_TEMPLATE_KWARGS = "chat_template_kwargs"  # {"enable_thinking": true|false} (Qwen3-style templates)


class GroupOptions(_Frozen):
    """`[groups.<name>]`: what the gateway does to a group's requests and answers."""

    tool_repair: bool = True
    strip_think: bool = False
    drop_reasoning: bool = False
    stop_markers: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = ()
    # Ask OpenAI-compatible upstreams for usage on streams (stream_options.include_usage), so
    # token metrics and budgets count streamed requests; off for servers that reject the field.
    stream_usage: bool = True
    # A system message after the first turn of a translated request: kept as a system message
    # in place ("system"), or a marked user note in place ("user") for chat templates that
    # reject a system message anywhere but first. Either way the prompt prefix stays stable.
    late_system: Literal["system", "user"] = "user"
    # Which request fields carry an Anthropic client's thinking request to this group.
    thinking_params: tuple[ThinkingParam, ...] = (ThinkingParam.REASONING_EFFORT,)
    # Take requests too large for every group of their own fallback chain (context escalation).
    context_escalation: bool = True
    # What the group's endpoints are for: requests of another kind never go to it (an
    # embeddings-only group is never picked by chat `auto`, nor chat groups for embeddings).
    serves: tuple[Operation, ...] = Field(default=(Operation.CHAT, Operation.COMPLETIONS), min_length=1)
    # Prices per million tokens in `[usage] currency` for the group's endpoints (an endpoint's own win).
    price_input_per_mtok: Price | None = None
    price_output_per_mtok: Price | None = None


class CapabilityOverride(_Frozen):
    """`[capabilities."<pattern>"]`: corrections to the bundled model-family table."""

    tools: bool | None = None
    vision: bool | None = None
    thinking: bool | None = None
    context_window: int | None = Field(default=None, gt=0, le=100_000_000)


RequestsPerSecond = Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)]
Burst = Annotated[int, Field(ge=1, le=1_000_000)]
TokensPerMinute = Annotated[int, Field(gt=0, le=1_000_000_000)]


class RateLimitOverride(_Frozen):
    """`[[rate_limit.overrides]]`: other limits for the client sending the API key
    held by environment variable `key_env` (so the key never sits in the file).
    A limit left out is the section's."""

    key_env: str = Field(pattern=ENV_NAME.pattern)
    requests_per_second: RequestsPerSecond | None = None
    burst: Burst | None = None
    tokens_per_minute: TokensPerMinute | None = None


class RateLimitConfig(_Frozen):
    """`[rate_limit]`: per-client request rate and token budget at the ingress."""

    enabled: bool = False
    requests_per_second: RequestsPerSecond = 10.0
    burst: Burst = 20
    tokens_per_minute: TokensPerMinute | None = None
    idle_seconds: float = Field(default=300.0, gt=0, le=86_400, allow_inf_nan=False)
    max_clients: int = Field(default=100_000, ge=1, le=10_000_000)
    overrides: tuple[RateLimitOverride, ...] = Field(default=(), max_length=10_000)


TokenBudget = Annotated[int, Field(gt=0, le=10**15)]


class ClientKeyConfig(_Frozen):
    """`[[auth.keys]]`: one client key's name and what it may do. The key itself is in
    environment variable `key_env`, or in `auth.keys_file` (hashed) under the same name."""

    name: str = Field(pattern=GROUP_NAME.pattern)
    key_env: str | None = Field(default=None, pattern=ENV_NAME.pattern)
    models: tuple[str, ...] = Field(default=("*",), min_length=1, max_length=1000)  # patterns over `model`
    requests_per_second: RequestsPerSecond | None = None
    burst: Burst | None = None
    tokens_per_minute: TokensPerMinute | None = None
    tokens_per_day: TokenBudget | None = None
    tokens_per_month: TokenBudget | None = None


class AuthConfig(_Frozen):
    """`[auth]`: client API keys. Off by default (the demo stays open)."""

    enabled: bool = False
    keys_file: str | None = None  # JSON lines written by `octoroute keys create`: name, sha256, created
    keys: tuple[ClientKeyConfig, ...] = Field(default=(), max_length=10_000)


class StateConfig(_Frozen):
    """`[state]`: where the state workers and replicas must agree on lives (rate-limit
    buckets, token budgets, health verdicts, probe leases, usage counters)."""

    backend: Literal["local", "redis"] = "local"  # local: this process (shared memory between --workers)
    url: str = Field(default="redis://127.0.0.1:6379/0", pattern=r"^(redis|rediss|unix)://")
    url_env: str | None = Field(default=None, pattern=ENV_NAME.pattern)  # the URL from this variable instead
    key_prefix: str = Field(default="octoroute:", max_length=100)
    timeout_ms: float = Field(default=50.0, gt=0, le=5000, allow_inf_nan=False)  # each Redis call
    retry_seconds: Seconds = 1.0  # how often a Redis that failed is asked again
    sync_interval_seconds: Seconds = 1.0  # how often shared health verdicts are read
    # how often each process publishes its in-flight counts and reads the others' (least-busy selection)
    inflight_interval_seconds: float = Field(default=0.5, ge=0.05, le=60, allow_inf_nan=False)


class SelectionConfig(_Frozen):
    """`[selection]`: how an endpoint is chosen within a priority level."""

    least_busy: bool = True  # False: weighted random only, as octoroute 1.0


class QueueConfig(_Frozen):
    """`[queue]`: requests waiting for a free slot when every endpoint of their group is full."""

    max_waiting: int = Field(default=100, ge=0, le=100_000)  # per group; 0: answer 503 at once
    max_wait_seconds: Seconds = 60.0
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)  # the Retry-After of the 503


class AffinityConfig(_Frozen):
    """`[affinity]`: keep a conversation on one endpoint so its KV cache is reused."""

    enabled: bool = True
    ttl_seconds: float = Field(default=1800.0, gt=0, le=7 * 86_400, allow_inf_nan=False)
    max_entries: int = Field(default=10_000, ge=1, le=10_000_000)


class UsageConfig(_Frozen):
    """`[usage]`: how token usage and its cost are reported."""

    # The currency the price keys are in: a label on the cost metric and in /metrics.json.
    currency: str = Field(default="USD", pattern=CURRENCY.pattern)


MIB = 1024 * 1024


class LimitsConfig(_Frozen):
    """`[limits]`: bounds on what one request may cost the gateway."""

    max_response_bytes: int = Field(default=32 * MIB, ge=64 * 1024, le=1024 * MIB)  # one non-streamed answer
    max_event_bytes: int = Field(default=8 * MIB, ge=4 * 1024, le=256 * MIB)  # one SSE event of a stream
    max_json_depth: int = Field(default=64, ge=8, le=200)  # nesting of a client's JSON body (orjson re-encodes < 255)
    # A client's request head (first byte to blank line) and body (whole body) must arrive within these;
    # a connection with no request in flight is closed after the keep-alive timeout.
    client_header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    client_body_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    client_keepalive_timeout_seconds: float = Field(default=75.0, gt=0, le=3600)


def _one_or_many(value: object) -> object:
    """octoroute 1.0's README writes one endpoint per tier as a single table
    (`[models.fast]`); its example config writes arrays of tables (`[[models.fast]]`)."""
    if isinstance(value, dict):
        return {group: [eps] if isinstance(eps, dict) else eps for group, eps in value.items()}
    return value


class ResponsesConfig(_Frozen):
    """`[responses]`: the Responses API's store of recent responses, which
    `previous_response_id` and `GET /v1/responses/{id}` read (shared like `[state]`:
    memory for one process, files for `--workers N`, Redis for replicas)."""

    store_max_entries: int = Field(default=1000, ge=0, le=1_000_000)  # 0: nothing is stored
    store_ttl_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400, allow_inf_nan=False)


class Config(_Frozen):
    server: ServerConfig = ServerConfig()
    limits: LimitsConfig = LimitsConfig()
    models: Annotated[dict[str, list[EndpointConfig]], BeforeValidator(_one_or_many)] = Field(min_length=1)
    routing: RoutingConfig = RoutingConfig()
    timeouts: TierTimeouts = TierTimeouts()
    health: HealthConfig = HealthConfig()
    retry: RetryConfig = RetryConfig()
    fallback: dict[str, str] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)
    groups: dict[str, GroupOptions] = Field(default_factory=dict)
    capabilities: dict[str, CapabilityOverride] = Field(default_factory=dict)
    rate_limit: RateLimitConfig = RateLimitConfig()
    auth: AuthConfig = AuthConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    selection: SelectionConfig = SelectionConfig()
    queue: QueueConfig = QueueConfig()
    affinity: AffinityConfig = AffinityConfig()
    usage: UsageConfig = UsageConfig()
    responses: ResponsesConfig = ResponsesConfig()
    state: StateConfig = StateConfig()

    @field_validator("models")
    @classmethod
    def _group_names(cls, value: dict[str, list[EndpointConfig]]) -> dict[str, list[EndpointConfig]]:
        for group, endpoints in value.items():
            if not GROUP_NAME.match(group):
                raise ValueError(f"group name '{group}' must match {GROUP_NAME.pattern}")
            if group == "auto":
                raise ValueError("'auto' is reserved for routing and cannot be a group name")
            if not endpoints:
                raise ValueError(f"group '{group}' has no endpoints")
        return value
