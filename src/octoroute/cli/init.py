"""`octoroute init`: find the LLM servers already running on this machine's
loopback and write a commented config for them.

Tiers by size: a model under 4B parameters is `fast`, under 20B `balanced`,
anything larger `deep`. Without a parameter count (the server reports none and
the name holds none) the size on disk decides: under 3 GB `fast`, under 12 GB
`balanced`, else `deep`; with neither the model is `balanced`.

Embedding-only models never go into a tier (chat `auto` picks among the tiers,
and such a model cannot chat): they go into the group `embed`, which serves
`/v1/embeddings` only. What the server says wins (Ollama's `/api/show`
capabilities, LM Studio's `type`); without that, the family (`bert`,
`nomic-bert`, any BERT-like encoder) or the name (`embed`, `minilm`, or a
`bge`, `e5` or `gte` part) decides; see `embedding_reason`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final, TextIO

from octoroute.core.types import Tier
from octoroute.upstream.scan import DEFAULT_PORTS, FoundModel, FoundServer, scan

FAST_BELOW: Final = 4e9  # parameters
BALANCED_BELOW: Final = 20e9
FAST_BELOW_BYTES: Final = 3 * 10**9
BALANCED_BELOW_BYTES: Final = 12 * 10**9
EMBED_GROUP: Final = "embed"
# A name part that marks a known embedding series: "bge-m3", "BAAI/bge-large-en-v1.5",
# "intfloat/multilingual-e5-large", "thenlper/gte-base"; "embed" and "minilm" anywhere
# ("nomic-embed-text", "text-embedding-3-small", "all-minilm").
_EMBEDDING_NAME = re.compile(r"embed|minilm|(?:^|[/:_.\-])(?:bge|e5|gte)(?:[/:_.\-]|$)", re.IGNORECASE)


def tier_of(model: FoundModel) -> Tier:
    """The tier a model's size puts it in (see the module docstring)."""
    if model.parameters is not None:
        size, fast, balanced = model.parameters, FAST_BELOW, BALANCED_BELOW
    elif model.size_bytes is not None:
        size, fast, balanced = float(model.size_bytes), FAST_BELOW_BYTES, BALANCED_BELOW_BYTES
    else:
        return Tier.BALANCED
    return Tier.FAST if size < fast else Tier.BALANCED if size < balanced else Tier.DEEP


def embedding_reason(model: FoundModel) -> str | None:
    """Why `model` is taken for an embedding-only model, or None when it is taken for a chat model.

    What the server reports decides when it reports anything: Ollama's capabilities
    (embedding and no completion), LM Studio's type. Else a BERT-like family (an encoder:
    it cannot generate), else the name.

        embedding_reason(FoundModel("all-minilm", None, None, None))  # "its name"
    """
    if model.capabilities is not None:
        caps = set(model.capabilities)
        embeds = "embedding" in caps and "completion" not in caps
        return f"the server lists its capabilities as {', '.join(model.capabilities)}" if embeds else None
    if model.model_type is not None:
        return f"the server lists its type as {model.model_type}" if model.model_type == "embeddings" else None
    if model.family is not None and "bert" in model.family.lower():
        return f"its family is {model.family}"
    return "its name" if _EMBEDDING_NAME.search(model.name) else None


def is_embedding(model: FoundModel) -> bool:
    return embedding_reason(model) is not None


def describe_size(model: FoundModel) -> str:
    parts = []
    if model.parameters is not None:
        count = model.parameters
        shown = f"{count / 1e9:.1f}B" if count >= 1e9 else f"{count / 1e6:.0f}M" if count >= 1e6 else f"{count:.0f}"
        parts.append(f"{shown} parameters" + (" (from its name)" if model.parameters_from_name else ""))
    if model.size_bytes is not None:
        parts.append(f"{model.size_bytes / 1e9:.1f} GB" if model.size_bytes >= 1e8 else f"{model.size_bytes:,} bytes")
    if model.context is not None:
        parts.append(f"context {model.context:,}")
    return ", ".join(parts) or "size not reported"


def _toml(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def render_config(servers: Sequence[FoundServer]) -> str:
    """The config text for what `scan` found: commented, valid for `octoroute check`."""
    lines = [
        "# octoroute config written by `octoroute init` from the servers found on this machine.",
        "# Check it with `octoroute check <file>`, probe every endpoint with `octoroute doctor --config <file>`.",
        "# Tiers by size: under 4B parameters fast, under 20B balanced, larger deep",
        "# (without a parameter count: under 3 GB fast, under 12 GB balanced).",
        "#",
    ]
    lines += [f"# {s.kind} at {s.base_url}: {len(s.models)} model(s)" for s in servers]
    lines += ["", "[server]", 'host = "127.0.0.1"  # loopback only; see [auth] before binding wider', "port = 3000", ""]
    lines += ["[routing]", 'strategy = "learned"  # scores each prompt offline, no model call', ""]
    by_tier: dict[Tier, list[tuple[FoundServer, FoundModel]]] = {t: [] for t in Tier}
    embedders: list[tuple[FoundServer, FoundModel]] = []
    for server in servers:
        for model in server.models:
            (embedders if is_embedding(model) else by_tier[tier_of(model)]).append((server, model))
    for tier in Tier:
        for server, model in by_tier[tier]:
            lines.append(f"# {model.name} on {server.kind}: {describe_size(model)}")
            lines += _endpoint(tier.value, server, model)
    if embedders:
        lines += [
            f"# Embedding models: the group {EMBED_GROUP} serves /v1/embeddings (and Ollama's /api/embed) only,",
            "# so chat `auto` never lands on them; `auto` embeddings requests go to it.",
            f"[groups.{EMBED_GROUP}]",
            'serves = ["embeddings"]',
            "",
        ]
    for server, model in embedders:
        lines.append(
            f"# {model.name} on {server.kind}: {describe_size(model)}; embedding only: {embedding_reason(model)}"
        )
        lines += _endpoint(EMBED_GROUP, server, model)
    return "\n".join(lines).rstrip("\n") + "\n"


def _endpoint(group: str, server: FoundServer, model: FoundModel) -> list[str]:
    return [f"[[models.{group}]]", f"name = {_toml(model.name)}", f"base_url = {_toml(server.base_url)}", ""]


def summarize(servers: Iterable[FoundServer]) -> list[str]:
    """What `init` prints about each server it found: its chat models, then its embedding models apart."""
    lines = []
    for server in servers:
        chat = [m for m in server.models if not is_embedding(m)]
        embed = [m for m in server.models if is_embedding(m)]
        names = ", ".join(f"{m.name} ({describe_size(m)})" for m in chat) or "no chat model"
        lines.append(f"found {server.kind} at {server.base_url}: {names}")
        if embed:
            shown = "; ".join(f"{m.name} ({describe_size(m)}; {embedding_reason(m)})" for m in embed)
            lines.append(f"  embedding models (group {EMBED_GROUP}, not in the chat tiers): {shown}")
    return lines


def has_chat_models(servers: Iterable[FoundServer]) -> bool:
    return any(not is_embedding(m) for s in servers for m in s.models)


def run_init(
    ports: Sequence[int], output: Path | None, force: bool, out: TextIO, err: TextIO, *, default_ports: bool = True
) -> int:
    """Scan the default ports (unless `default_ports` is False) and `ports`, then write
    the config to `output` (never over a file unless `force`) or to `out`."""
    if output is not None and output.exists() and not force:
        print(f"octoroute init: {output} exists; give --force to overwrite it", file=err)
        return 1
    wanted = [*(DEFAULT_PORTS if default_ports else ()), *ports]
    servers = asyncio.run(scan(wanted))
    for line in summarize(servers):
        print(line, file=err)
    if not has_chat_models(servers):
        tried = ", ".join(str(p) for p in dict.fromkeys(wanted))
        print(
            f"octoroute init: no OpenAI-compatible server with a chat model answered on 127.0.0.1 "
            f"(ports {tried}). Start one (Ollama, LM Studio, llama-server, vLLM) or give its port "
            "with --port; no config was written.",
            file=err,
        )
        return 1
    text = render_config(servers)
    if output is None:
        out.write(text)
        return 0
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"octoroute init: cannot write {output}: {exc.strerror or exc}", file=err)
        return 1
    print(f"wrote {output}; next: octoroute doctor --config {output}", file=err)
    return 0
