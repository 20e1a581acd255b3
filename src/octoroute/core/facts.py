"""What an upstream server told the gateway about itself, and where a window came from.

`ServerFacts` is the one immutable per-endpoint record of discovered values
(context window, slot count), made by `upstream.discovery` and kept by
`fleet.context.ContextBook`; anything that needs a discovered value (context
fit, slot limits) reads it from there.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FactSource(enum.StrEnum):
    """Who said it: a label in `/models`, `/metrics.json` and the logs."""

    LLAMA_PROPS = "llama_props"  # llama.cpp GET /props
    OLLAMA_SHOW = "ollama_show"  # Ollama POST /api/show
    VLLM_MODELS = "vllm_models"  # vLLM GET /v1/models `max_model_len`
    OVERFLOW_ERROR = "overflow_error"  # learned from the upstream's context-overflow error body


class WindowSource(enum.StrEnum):
    """Where an endpoint's context window comes from, in the order they win."""

    CONFIG = "config"  # `context_window` on the endpoint
    DISCOVERED = "discovered"  # the server said so (see `FactSource`)
    TABLE = "table"  # the bundled capability table (or a `[capabilities]` override)
    UNKNOWN = "unknown"  # none of these: every request is tried, overflow answers teach the window


class ContextEvent(enum.StrEnum):
    """Context-window events counted by `octoroute_context_events_total`."""

    SKIPPED = "skipped"  # an endpoint was passed over: the request does not fit its window
    OVERFLOWED = "overflowed"  # an endpoint answered with a context-overflow error
    ESCALATED = "escalated"  # a request was served after an overflow or a skip sent it elsewhere
    REJECTED = "rejected"  # no endpoint could hold the request: the client got a 400


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """What one endpoint's server reported; None where it said nothing."""

    source: FactSource
    context_window: int | None = None  # tokens one request may use (per slot, for llama.cpp)
    total_slots: int | None = None  # requests the server runs at once (llama.cpp `total_slots`)
