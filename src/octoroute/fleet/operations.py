"""Which endpoints can serve an operation (chat, embeddings, completions), pure.

A group serves what `[groups.X] serves` lists; within it, an endpoint must also
speak the operation's API: Anthropic-native servers have no embeddings or
completions API, Ollama's native /api/embed takes no token-id input, and
fill-in-the-middle needs an endpoint whose `fim` is set (llama.cpp's /infill
takes no token-id prompt either). The attempt loop only tries endpoints in the
set this module computes, so a request never reaches one that would answer it
wrongly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from octoroute.config.topology import EndpointSpec, GroupSpec
from octoroute.core.types import Api, Fim, Operation


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request asks: the operation, and what narrows the endpoints that can do it."""

    op: Operation = Operation.CHAT
    fim: bool = False  # a completions request with a non-empty `suffix`
    # Input a translating endpoint cannot take: embeddings `input` as token ids (Ollama's
    # /api/embed takes text), a completions `prompt` other than one string (/infill takes one).
    token_ids: bool = False


CHAT = Ask()


def can_serve(ep: EndpointSpec, ask: Ask) -> bool:
    """Whether `ep` (whatever its group serves) speaks what `ask` needs."""
    if ask.op is Operation.CHAT:
        return True
    if ep.kind is Api.ANTHROPIC:
        return False
    if ask.op is Operation.EMBEDDINGS:
        return not (ask.token_ids and ep.kind is Api.OLLAMA)
    if not ask.fim:
        return True
    return ep.fim is Fim.SUFFIX or (ep.fim is Fim.INFILL and not ask.token_ids)


def able_endpoints(groups: Iterable[GroupSpec], ask: Ask) -> frozenset[str]:
    """Ids of the endpoints that may serve `ask`: in a group that serves its operation,
    and able to by `can_serve`."""
    return frozenset(
        ep.id for group in groups if ask.op in group.options.serves for ep in group.endpoints if can_serve(ep, ask)
    )


def group_for_auto(groups: Mapping[str, GroupSpec], default_group: str, able: frozenset[str]) -> str | None:
    """`auto` for embeddings or completions: the default tier when it has an able
    endpoint, else the first group (in config order) that has one; None when none has."""
    ordered = [groups[default_group]] if default_group in groups else []
    ordered += [g for name, g in groups.items() if name != default_group]
    return next((g.name for g in ordered if any(ep.id in able for ep in g.endpoints)), None)


def unable_reason(ask: Ask) -> str:
    """What no endpoint of a group could do, for the 400 that says so."""
    if ask.op is Operation.EMBEDDINGS:
        if ask.token_ids:
            return "serves embeddings of token-id input (Ollama's native API takes text only)"
        return "serves embeddings"
    if ask.op is Operation.COMPLETIONS and ask.fim:
        return 'does fill-in-the-middle (a completions request with \'suffix\'; set fim = "suffix" or "infill")'
    return f"serves {ask.op.value}"
