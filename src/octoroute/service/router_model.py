"""The router model's I/O: a judge or tool body sent to the router tier with its own
short timeout and retries (`RouterModel._ask_router`, the function `routing.Router`
is built with), and why an attempt failed (`router_failure`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from octoroute.core.errors import ErrorType, TimeoutPhase, UpstreamError, UpstreamStatusError, UpstreamTimeout
from octoroute.core.types import Importance, JudgeFailure
from octoroute.fleet.capabilities import Needs, selection_needs
from octoroute.fleet.policy import AttemptPlan
from octoroute.routing.router import JudgeUnavailable
from octoroute.service.attempts import AttemptLoop
from octoroute.service.bodies import body_for, openai_payload
from octoroute.service.call import AUTO, ChatCall


def router_failure(error: UpstreamError) -> JudgeFailure:
    """Why one router-model attempt failed: a timeout; a refusal with a status the
    attempt loop does not retry (a 4xx but 429; for `tool` typically a server that does
    not take `tools` or `tool_choice`); else unavailable."""
    if isinstance(error, UpstreamTimeout):
        return JudgeFailure.TIMEOUT
    if isinstance(error, UpstreamStatusError) and 400 <= error.status < 500 and not error.retryable:
        return JudgeFailure.REJECTED
    return JudgeFailure.UNAVAILABLE


class RouterModel(AttemptLoop):
    """`Gateway`'s calls to the router model."""

    async def _ask_router(self, body: dict[str, object]) -> dict[str, Any]:
        """Send a judge or tool body to the router tier: short timeout, retries on other
        endpoints; the answer in OpenAI's shape. Endpoints whose model lacks what the
        body needs (tools, by the capability table) are not asked."""
        routing = self.config.routing
        group = self.topology.groups[routing.router_tier]
        wants_tools = selection_needs(body).tools
        able = {ep.id for ep in group.endpoints if not (wants_tools and self._lacking(Needs(tools=True), ep))}
        if not able:
            raise JudgeUnavailable(
                JudgeFailure.TOOLS_UNSUPPORTED,
                f"no model on router tier '{group.name}' calls tools, by the capability table",
            )
        retry = self.config.retry.model_copy(update={"max_attempts": routing.llm_retries + 1})
        plan = AttemptPlan([group], self.selectors, lambda eid: eid in able and self.is_available(eid), retry, self.rng)
        failures: list[JudgeFailure] = []
        while (attempt := plan.next_attempt()) is not None:
            ep = attempt.endpoint
            payload, _ = body_for(ChatCall(body, AUTO, False, Importance.NORMAL, None, "judge"), ep)
            self.metrics.attempt_started(group.name)
            sent_at = time.perf_counter()
            self.slots.acquire(ep.id)  # counted, never queued: the judge has its own short timeout
            try:
                async with asyncio.timeout(routing.llm_timeout_seconds):
                    reply = await self.pool.complete(ep, payload, {})
            except TimeoutError:
                failures.append(JudgeFailure.TIMEOUT)
                self.metrics.attempt_finished(ep.id, ErrorType.TIMEOUT, time.perf_counter() - sent_at)
                plan.record(UpstreamTimeout(ep.id, TimeoutPhase.TOTAL, routing.llm_timeout_seconds))
                continue
            except UpstreamError as error:
                error.attempt = attempt.number
                self._attempt_failed(ep, error, sent_at, None)
                failures.append(router_failure(error))
                plan.record(error)
                continue
            finally:
                self.slots.release(ep.id)
            self._attempt_committed(ep, None, sent_at, None)
            self._record(ep, None, reply.latency_ms)
            return openai_payload(ep, reply.payload)
        if failures and failures[-1] is JudgeFailure.REJECTED:  # a refusal ends the plan: it is the verdict
            kind = JudgeFailure.REJECTED
        elif failures and all(f is JudgeFailure.TIMEOUT for f in failures):
            kind = JudgeFailure.TIMEOUT
        else:
            kind = JudgeFailure.UNAVAILABLE
        raise JudgeUnavailable(kind, f"router tier '{group.name}' did not answer ({len(failures)} attempts)")
