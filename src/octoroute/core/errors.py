"""Every error octoroute raises, in one tree.

    OctorouteError
    ├── ConfigError                 config file invalid; carries every problem with its key path
    ├── EvaluationError             routing-quality metrics undefined for the data (`octoroute eval`)
    ├── ClientError                 the client's request cannot be served as sent (4xx)
    │   ├── InvalidRequest          400: malformed JSON, invalid fields
    │   │   ├── TranslationError    400: a body whose structure cannot be translated to the other API
    │   │   └── ContextTooLarge     400: no endpoint's context window can hold the request (says the sizes)
    │   ├── Unauthorised            401: /metrics or /metrics.json without the configured token
    │   ├── NotFound                404: a switched-off feature (metrics = false)
    │   ├── ModelNotFound           404: `model` names no group, endpoint or `auto`
    │   └── PayloadTooLarge         413: body over the configured limit
    ├── UpstreamError               one attempt at one endpoint failed
    │   ├── UpstreamConnectError    refused / reset / DNS: retryable
    │   ├── UpstreamTimeout         connect, first-byte or total timeout: retryable
    │   ├── UpstreamStatusError     the upstream answered 4xx/5xx; 401/403, 429 and 5xx retryable
    │   │   └── UpstreamContextOverflow  its 4xx says the prompt exceeds its context window: retryable
    │   │                                elsewhere, and no sign of ill health
    │   ├── UpstreamProtocolError   unreadable answer (bad JSON, cut body): retryable
    │   └── UpstreamMidStream       a committed stream broke: never retried
    └── RoutingExhausted            no attempt succeeded
        ├── AllEndpointsFailed      502 (504 when every attempt timed out); keeps every attempt
        ├── EndpointsCoolingDown    429: every candidate is in an upstream rate-limit cooldown
        ├── NoHealthyEndpoint       503: nothing could even be tried
        └── NoFreeSlot              503 with Retry-After: every endpoint full and the queue full,
                                    or the wait in it over `[queue] max_wait_seconds`

Third-party exceptions (aiohttp, orjson, pydantic) are mapped into this tree
once, at the boundary that calls the library, with `raise ... from exc`.
The server turns any of these into the error shape of the API the client
called; nothing else reaches a client.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class ErrorType(enum.StrEnum):
    """Closed set of upstream failure kinds (log field and metric label)."""

    CONNECT = "connect"
    TIMEOUT = "timeout"
    HTTP_4XX = "http_4xx"
    HTTP_AUTH = "http_auth"  # 401/403: the endpoint's credentials are wrong, not the request
    HTTP_429 = "http_429"
    HTTP_5XX = "http_5xx"
    PROTOCOL = "protocol"
    MID_STREAM = "mid_stream"
    CONTEXT_OVERFLOW = "context_overflow"


class Pressure(enum.StrEnum):
    """Upstream answers that ask us to wait rather than fail (a log field and metric label;
    `fleet.rotation.pressure_of` classifies them)."""

    RATE_LIMITED = "rate_limited"  # 429
    BUSY = "busy"  # 503 from a server whose queue is full (Ollama: "server busy"); Anthropic's 529
    LOADING = "loading"  # 503 while the server loads its model


COOLDOWN_PRESSURES = (Pressure.RATE_LIMITED, Pressure.BUSY)  # the ones that cool an endpoint down


class TimeoutPhase(enum.StrEnum):
    CONNECT = "connect"
    FIRST_BYTE = "first_byte"
    TOTAL = "total"


class OctorouteError(Exception):
    """Root of the tree."""


class EvaluationError(OctorouteError):
    """Routing-quality metrics cannot be computed: no items, strong and weak tie, a non-finite score."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    path: str  # e.g. "models.fast[1].weight"
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(OctorouteError):
    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ClientError(OctorouteError):
    """An error caused by the request; rendered with `status`, `code` and `param`."""

    status = 400
    code: str | None = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(ClientError):
    status = 400
    code = "invalid_request"


class TranslationError(InvalidRequest):
    """The body's structure cannot be translated between APIs; `param` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, param=param)


class ContextTooLarge(InvalidRequest):
    """No endpoint the request may use has a context window that holds it."""

    code = "context_length_exceeded"

    def __init__(
        self, prompt_tokens: int, output_tokens: int, largest_window: int, *, exact: bool, refusal: str | None = None
    ) -> None:
        counted = "counted by the upstream" if exact else "estimated"
        said = f" (last refusal: {refusal})" if refusal else ""
        super().__init__(
            f"the request needs about {prompt_tokens + output_tokens} tokens ({prompt_tokens} prompt tokens, "
            f"{counted}, plus {output_tokens} requested output tokens) but the largest context window "
            f"available is {largest_window} tokens; shorten the conversation or lower max_tokens{said}",
            param="messages",
        )
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.largest_window = largest_window
        self.attempts = 0  # upstream attempts made before deciding, set by the attempt loop


class Unauthorised(ClientError):
    status = 401
    code = "unauthorized"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class ModelNotFound(ClientError):
    status = 404
    code = "model_not_found"


class PayloadTooLarge(ClientError):
    status = 413
    code = "payload_too_large"


class UpstreamError(OctorouteError):
    """One attempt failed. `retryable` tells the policy whether another endpoint may help."""

    error_type: ErrorType = ErrorType.PROTOCOL
    retryable = True
    attempt = 0  # the attempt number within its request, set by the attempt loop

    def __init__(self, endpoint_id: str, message: str) -> None:
        super().__init__(f"{endpoint_id}: {message}")
        self.endpoint_id = endpoint_id
        self.message = message


class UpstreamConnectError(UpstreamError):
    error_type = ErrorType.CONNECT


class UpstreamTimeout(UpstreamError):
    error_type = ErrorType.TIMEOUT

    def __init__(self, endpoint_id: str, phase: TimeoutPhase, seconds: float) -> None:
        super().__init__(endpoint_id, f"{phase.value} timeout after {seconds:g}s")
        self.phase = phase
        self.seconds = seconds


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status; `body` is kept to pass 4xx through.

    `detail` is the upstream's own message, already redacted and bounded (the
    upstream client extracts it); `message` is `HTTP <status>: <detail>`. A 401 or
    403 is retryable: the endpoint's credentials are wrong, so another endpoint
    may serve the same request.
    """

    def __init__(
        self,
        endpoint_id: str,
        status: int,
        body: bytes,
        content_type: str | None,
        retry_after: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(endpoint_id, f"HTTP {status}: {detail}" if detail else f"HTTP {status}")
        self.status = status
        self.body = body
        self.content_type = content_type
        self.retry_after = retry_after
        self.detail = detail
        self.retryable = status in (401, 403, 429) or status >= 500
        if status == 429:
            self.error_type = ErrorType.HTTP_429
        elif status in (401, 403):
            self.error_type = ErrorType.HTTP_AUTH
        elif status >= 500:
            self.error_type = ErrorType.HTTP_5XX
        else:
            self.error_type = ErrorType.HTTP_4XX

    @property
    def client_message(self) -> str:
        """What a client is told: `upstream <endpoint> answered <status>: <their message>`."""
        said = f": {self.detail}" if self.detail else ""
        return f"upstream {self.endpoint_id} answered {self.status}{said}"


class UpstreamContextOverflow(UpstreamStatusError):
    """A 4xx whose body says the request exceeds the endpoint's context window.

    Another endpoint with a larger window may serve it, so it is retryable, but
    the endpoint answered and is not unwell. `prompt_tokens` and `window` are
    what the body said (None when it did not say).
    """

    def __init__(self, error: UpstreamStatusError, prompt_tokens: int | None, window: int | None) -> None:
        super().__init__(
            error.endpoint_id, error.status, error.body, error.content_type, error.retry_after, error.detail
        )
        self.retryable = True
        self.error_type = ErrorType.CONTEXT_OVERFLOW
        self.prompt_tokens = prompt_tokens
        self.window = window


class UpstreamProtocolError(UpstreamError):
    error_type = ErrorType.PROTOCOL


class UpstreamMidStream(UpstreamError):
    """The stream failed after the commit point; it ends with an error event."""

    error_type = ErrorType.MID_STREAM
    retryable = False


class RoutingExhausted(OctorouteError):
    status = 502
    code = "upstream_failed"
    retry_after: int | None = None  # whole seconds for the Retry-After header, when known


class AllEndpointsFailed(RoutingExhausted):
    """Every attempt failed; `attempts` keeps each one's error in order."""

    def __init__(self, group: str, attempts: Sequence[UpstreamError]) -> None:
        self.group = group
        self.attempts = tuple(attempts)
        detail = "; ".join(str(a) for a in self.attempts) or "no attempt made"
        super().__init__(f"all endpoints for '{group}' failed: {detail}")
        if self.attempts and all(isinstance(a, UpstreamTimeout) for a in self.attempts):
            self.status = 504
            self.code = "upstream_timeout"


class EndpointsCoolingDown(RoutingExhausted):
    """Every endpoint that could serve is cooling down after its upstream answered 429."""

    status = 429
    code = "upstream_rate_limited"

    def __init__(self, group: str, retry_after: int, attempts: Sequence[UpstreamError] = ()) -> None:
        self.group = group
        self.retry_after = retry_after
        self.attempts = tuple(attempts)
        super().__init__(f"every endpoint for '{group}' is rate limited by its upstream; retry after {retry_after}s")


class NoHealthyEndpoint(RoutingExhausted):
    status = 503
    code = "no_healthy_endpoint"

    def __init__(self, group: str, retry_after: int | None = None, reason: str = "") -> None:
        self.group = group
        self.retry_after = retry_after
        detail = f" ({reason})" if reason else ""
        super().__init__(f"no healthy endpoint is available for '{group}'{detail}; try again shortly")


class NoFreeSlot(RoutingExhausted):
    """Every endpoint the request may use is serving all it can, and it could not
    wait for a slot: the waiting line was full (`queue_full`) or the wait ran out
    (`queue_timeout`)."""

    status = 503

    def __init__(self, group: str, *, timed_out: bool, waited_seconds: float, retry_after_seconds: int) -> None:
        self.group = group
        self.timed_out = timed_out
        self.retry_after = retry_after_seconds
        if timed_out:
            self.code = "queue_timeout"
            detail = f"no slot freed within {waited_seconds:g}s"
        else:
            self.code = "queue_full"
            detail = "the waiting line is full"
        super().__init__(f"every endpoint for '{group}' is busy and {detail}; retry after {retry_after_seconds}s")
