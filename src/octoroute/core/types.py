"""Domain values shared by every layer: tiers, hints, routing decisions.

Everything that becomes a header, a log field or (later) a metric label is an
enum here, so the set of values is closed and names stay stable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Tier(enum.StrEnum):
    """The three model tiers auto-routing chooses among."""

    FAST = "fast"
    BALANCED = "balanced"
    DEEP = "deep"


class Api(enum.StrEnum):
    """An API dialect: what a client speaks, and what an endpoint speaks (its `kind`)."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    # Ollama's API: clients of /api/*; as an endpoint kind, an Ollama server, which
    # serves chat OpenAI-compatible at base_url (.../v1).
    OLLAMA = "ollama"


class Operation(enum.StrEnum):
    """What a request asks of a group (`[groups.X] serves`): each operation is routed
    only to groups that serve it, so `auto` chat never lands on an embeddings model."""

    CHAT = "chat"  # /v1/chat/completions, /v1/messages, /chat
    EMBEDDINGS = "embeddings"  # /v1/embeddings, Ollama's /api/embed and /api/embeddings
    COMPLETIONS = "completions"  # /v1/completions (legacy text completions, fill-in-the-middle)


class Fim(enum.StrEnum):
    """How an endpoint does fill-in-the-middle (a completions request with `suffix`)."""

    NONE = "none"  # it cannot: requests with a suffix go elsewhere
    SUFFIX = "suffix"  # /v1/completions takes `suffix` (vLLM, Ollama, OpenAI)
    INFILL = "infill"  # llama.cpp's /infill with input_prefix / input_suffix


class Importance(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


class TaskType(enum.StrEnum):
    """octoroute 1.0's task types (snake_case on the wire)."""

    CASUAL_CHAT = "casual_chat"
    CODE = "code"
    CREATIVE_WRITING = "creative_writing"
    DEEP_ANALYSIS = "deep_analysis"
    DOCUMENT_SUMMARY = "document_summary"
    QUESTION_ANSWER = "question_answer"


class Strategy(enum.StrEnum):
    """How a decision was made. `direct` means the client named a group or endpoint."""

    LEARNED = "learned"
    RULE = "rule"
    LLM = "llm"
    HYBRID = "hybrid"
    TOOL = "tool"
    DIRECT = "direct"


class RouteReason(enum.StrEnum):
    """Why a request went where it went; sent as `X-Octoroute-Reason`."""

    RULE_CASUAL_SHORT = "rule_casual_short"
    RULE_HIGH_IMPORTANCE = "rule_high_importance"
    RULE_DEEP_TASK = "rule_deep_task"
    RULE_CODE = "rule_code"
    RULE_CODE_LONG = "rule_code_long"
    RULE_MEDIUM_QA = "rule_medium_question"
    DEFAULT_TIER = "default_tier"
    LLM_CLASSIFIED = "llm_classified"
    LLM_FAILED_RULE = "llm_failed_fallback_rule"
    LLM_FAILED_DEFAULT = "llm_failed_fallback_default"
    TOOL_CLASSIFIED = "tool_classified"
    TOOL_FAILED_RULE = "tool_failed_fallback_rule"
    TOOL_FAILED_DEFAULT = "tool_failed_fallback_default"
    LEARNED_SCORE = "learned_score"
    LEARNED_INSTEAD_OF_JUDGE = "learned_instead_of_judge"  # offline scoring (`octoroute score`) of a judge strategy
    EXPLICIT_GROUP = "explicit_group"
    EXPLICIT_ENDPOINT = "explicit_endpoint"
    SERVES_OPERATION = "serves_operation"  # `auto` for embeddings or completions: the group that serves them


class JudgeFailure(enum.StrEnum):
    """Why the LLM router's answer could not be used."""

    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    REFUSAL = "refusal"
    UNPARSEABLE = "unparseable"
    REJECTED = "rejected"  # the router model's server refused the request (a 4xx: for `tool`, often no tools)
    # The `tool` strategy's own: the router model is asked for a function call.
    TOOLS_UNSUPPORTED = "tools_unsupported"  # the capability table says the model has no tool calling
    NO_TOOL_CALL = "no_tool_call"  # an answer without a call (text, empty)
    WRONG_FUNCTION = "wrong_function"  # a call to a function that was not declared
    BAD_ARGUMENTS = "bad_arguments"  # arguments not a JSON object, or no tier of the enum in them


@dataclass(frozen=True, slots=True)
class Features:
    """What routing knows about a request, extracted once from the message list."""

    token_estimate: int
    message_count: int
    user_turns: int
    code_fences: int
    code_lines: int
    has_tools: bool
    has_images: bool
    importance: Importance
    task_type: TaskType
    task_type_explicit: bool

    @property
    def has_code(self) -> bool:
        return self.code_fences > 0 or self.code_lines >= 2


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Where a request goes (a group name: a tier or an alias) and why."""

    group: str
    strategy: Strategy
    reason: RouteReason
    detail: str = ""
    endpoint_id: str | None = None  # set when the client pinned one endpoint
    score: float | None = None  # how much the request needs a stronger model, in [0, 1]; None when not auto-routed

    @property
    def path(self) -> Strategy:
        """The strategy that decided, as octoroute 1.0 counts it: under `hybrid`, the
        path taken (`rule` when a rule matched, else `llm`); any other strategy as is."""
        if self.strategy is not Strategy.HYBRID:
            return self.strategy
        return Strategy.RULE if self.reason.value.startswith("rule_") else Strategy.LLM


class DegradationKind(enum.StrEnum):
    """What a translation had to drop or change; stable names, usable as metric labels."""

    THINKING = "thinking"  # top-level extended thinking config
    THINKING_BLOCK = "thinking_block"  # thinking / redacted_thinking content blocks
    CACHE_CONTROL = "cache_control"
    TOP_K = "top_k"
    OUTPUT_CONFIG = "output_config"
    CONTEXT_MANAGEMENT = "context_management"
    CONTAINER = "container"
    MCP_SERVERS = "mcp_servers"
    SERVICE_TIER = "service_tier"
    DOCUMENT_BLOCK = "document_block"
    UNSUPPORTED_BLOCK = "unsupported_block"  # a content block the target has no form for
    UNSUPPORTED_TOOL = "unsupported_tool"  # server tools (web_search, bash, ...) and OpenAI custom tools
    TOOL_OPTION = "tool_option"  # defer_loading, input_examples, ... on a kept tool
    TOOL_RESULT_IMAGE = "tool_result_image"  # OpenAI tool messages take text only
    STOP_SEQUENCES_TRUNCATED = "stop_sequences_truncated"
    SYSTEM_AS_USER = "system_as_user"  # a system message after the first turn sent as a user-side note in place
    UNSUPPORTED_FIELD = "unsupported_field"  # a known field the target has no equivalent for
    UNKNOWN_FIELD = "unknown_field"
    MAX_TOKENS_DEFAULTED = "max_tokens_defaulted"
    TEMPERATURE_CLAMPED = "temperature_clamped"
    INVALID_TOOL_ARGUMENTS = "invalid_tool_arguments"  # arguments not a JSON object; {} used instead
    EXTRA_CHOICES = "extra_choices"  # n > 1 upstream answer; only choice 0 kept
    LATE_TOOL_DELTA = "late_tool_delta"  # stream: arguments for a tool block already closed
    ENDPOINT_LACKS_TOOLS = "endpoint_lacks_tools"  # no capable endpoint was available; served anyway
    ENDPOINT_LACKS_VISION = "endpoint_lacks_vision"  # the same, for images


@dataclass(frozen=True, slots=True)
class Degradation:
    """One thing a translation dropped or changed: its `kind` (a metric label and an
    `X-Octoroute-Degraded` value), the JSON `path` where it was, and, where the kind
    alone does not tell a client what it lost, `detail`: that thing named in the
    client's own terms, without indices (`tools.web_search`, `reasoning.effort`),
    for `X-Octoroute-Dropped`.

        Degradation(DegradationKind.UNSUPPORTED_TOOL, "tools[8].web_search", "tools.web_search")
    """

    kind: DegradationKind
    path: str
    detail: str | None = None
