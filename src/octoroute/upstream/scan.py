"""Finding OpenAI-compatible servers on this machine's loopback, for `octoroute init`.

Each port is asked `GET /v1/models` on 127.0.0.1 (nowhere else); a port that
answers with a model list is a server. What kind of server it is, and how large
its models are, comes from what each kind reports about itself:

- Ollama: `GET /api/tags`, each model's `size` (bytes on disk),
  `details.parameter_size` ("8.0B", "137M") and `details.family` ("llama",
  "nomic-bert"); `POST /api/show` per model for its `capabilities`
  (`["completion", "tools"]`, `["embedding"]`; older Ollama says none).
- llama.cpp: `GET /props` answers; `/v1/models` entries carry
  `meta.n_params` and `meta.size`. Neither says whether the model embeds:
  `--embeddings` changes nothing in `/props`, and the Ollama-like `models`
  array beside `data` lists `capabilities: ["completion"]` for every model
  (both seen on llama-server b1-7e4c0a9), so it is not read.
- vLLM: `/v1/models` entries are `owned_by: "vllm"` with `max_model_len`.
- LM Studio: `GET /api/v0/models` entries carry `type` ("llm", "vlm",
  "embeddings"), `arch` and `max_context_length`.
- anything else: the ids only.

The parsers are pure; `scan` does the I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from octoroute.config.topology import EndpointSpec, ResolvedTimeouts
from octoroute.core.errors import UpstreamError
from octoroute.upstream.checkup import listed_ids
from octoroute.upstream.client import UpstreamPool

# Ollama, LM Studio, llama.cpp's llama-server, vLLM: each one's default port.
DEFAULT_PORTS: Final = (11434, 1234, 8080, 8000)
LOOPBACK: Final = "127.0.0.1"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBT])\s*$", re.IGNORECASE)
_SIZE_IN_NAME = re.compile(r"(?<![A-Za-z0-9.])(?:(\d+)x)?(\d+(?:\.\d+)?)[bB](?![A-Za-z0-9])")
_UNITS: Final = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


@dataclass(frozen=True, slots=True)
class FoundModel:
    name: str
    parameters: float | None  # count, as the server reports it (or read from the name)
    size_bytes: int | None  # on disk, where the server says
    context: int | None  # tokens, where the server says
    parameters_from_name: bool = False
    family: str | None = None  # Ollama's details.family, LM Studio's arch ("llama", "nomic-bert")
    capabilities: tuple[str, ...] | None = None  # Ollama's /api/show ("completion", "embedding", ...)
    model_type: str | None = None  # LM Studio's /api/v0/models type ("llm", "vlm", "embeddings")


@dataclass(frozen=True, slots=True)
class FoundServer:
    port: int
    kind: str  # "Ollama", "llama.cpp", "vLLM", "LM Studio", "OpenAI-compatible"
    models: tuple[FoundModel, ...]

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"


def parse_parameter_size(text: object) -> float | None:
    """Ollama's `parameter_size` ("8.0B", "137M") as a count."""
    m = _SIZE.match(text) if isinstance(text, str) else None
    return float(m.group(1)) * _UNITS[m.group(2).upper()] if m else None


def parameters_in_name(name: str) -> float | None:
    """A count written in a model's name ("Qwen2.5-7B-Instruct", "llama3.1:70b"; experts times
    their size for "8x7b"), the largest if several."""
    counts = [int(m.group(1) or 1) * float(m.group(2)) * 1e9 for m in _SIZE_IN_NAME.finditer(name)]
    return max(counts) if counts else None


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def models_from_tags(payload: object) -> tuple[FoundModel, ...]:
    """Ollama's `/api/tags`."""
    models = payload.get("models") if isinstance(payload, dict) else None
    out: list[FoundModel] = []
    for m in models if isinstance(models, list) else []:
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            continue
        raw_details = m.get("details")
        details: dict[str, object] = raw_details if isinstance(raw_details, dict) else {}
        params = parse_parameter_size(details.get("parameter_size"))
        family = _text(details.get("family"))
        out.append(FoundModel(m["name"], params, _positive_int(m.get("size")), None, family=family))
    return tuple(out)


def capabilities_from_show(payload: object) -> tuple[str, ...] | None:
    """Ollama's `/api/show` `capabilities` (`["completion", "tools"]`), None when it has none."""
    caps = payload.get("capabilities") if isinstance(payload, dict) else None
    if not isinstance(caps, list) or not caps:
        return None
    return tuple(c for c in caps if isinstance(c, str))


def models_from_lmstudio(payload: object) -> tuple[FoundModel, ...]:
    """LM Studio's `/api/v0/models`: each entry's `type`, `arch` and `max_context_length`."""
    data = payload.get("data") if isinstance(payload, dict) else None
    out: list[FoundModel] = []
    for e in data if isinstance(data, list) else []:
        if not isinstance(e, dict) or not isinstance(e.get("id"), str) or not _text(e.get("type")):
            continue
        context = _positive_int(e.get("max_context_length"))
        out.append(FoundModel(e["id"], None, None, context, family=_text(e.get("arch")), model_type=str(e["type"])))
    return tuple(out)


def models_from_listing(payload: object) -> tuple[FoundModel, ...]:
    """`/v1/models`: llama.cpp's `meta` (n_params, size, n_ctx) and vLLM's `max_model_len` where present."""
    data = payload.get("data") if isinstance(payload, dict) else None
    out: list[FoundModel] = []
    for e in data if isinstance(data, list) else []:
        if not isinstance(e, dict) or not isinstance(e.get("id"), str):
            continue
        raw_meta = e.get("meta")
        meta: dict[str, object] = raw_meta if isinstance(raw_meta, dict) else {}
        params = _positive_int(meta.get("n_params"))
        context = _positive_int(e.get("max_model_len")) or _positive_int(meta.get("n_ctx"))
        out.append(FoundModel(e["id"], float(params) if params else None, _positive_int(meta.get("size")), context))
    return tuple(out)


def with_names_read(models: Iterable[FoundModel]) -> tuple[FoundModel, ...]:
    """Models without a reported count get one read from their name, marked as such."""
    out = []
    for m in models:
        guess = parameters_in_name(m.name) if m.parameters is None else None
        out.append(dataclasses.replace(m, parameters=guess, parameters_from_name=True) if guess else m)
    return tuple(out)


def _spec(port: int, limit: float) -> EndpointSpec:
    timeouts = ResolvedTimeouts(connect=limit, first_byte=limit, total=limit, idle=limit)
    return EndpointSpec(f"scan:{port}", "scan", "", f"http://{LOOPBACK}:{port}/v1", 1.0, 1, None, None, None, timeouts)


async def probe_port(port: int, limit_seconds: float) -> FoundServer | None:
    """What answers on 127.0.0.1:`port`, or None when nothing OpenAI-compatible does."""
    ep = _spec(port, limit_seconds)
    pool = UpstreamPool([ep])
    await pool.start()
    try:
        status, listing = await pool.fetch_json(ep, "GET", "/v1/models", b"", limit_seconds)
        if status != 200 or not listed_ids(listing):
            return None
        models = models_from_listing(listing)
        data = listing.get("data") if isinstance(listing, dict) else None
        if isinstance(data, list) and any(isinstance(e, dict) and e.get("owned_by") == "vllm" for e in data):
            return FoundServer(port, "vLLM", with_names_read(models))
        status, tags = await pool.fetch_json(ep, "GET", "/api/tags", b"", limit_seconds)
        if status == 200 and models_from_tags(tags):
            shown = await asyncio.gather(
                *(_ollama_capabilities(pool, ep, m, limit_seconds) for m in models_from_tags(tags))
            )
            return FoundServer(port, "Ollama", with_names_read(shown))
        status, props = await pool.fetch_json(ep, "GET", "/props", b"", limit_seconds)
        if status == 200 and isinstance(props, dict) and "default_generation_settings" in props:
            return FoundServer(port, "llama.cpp", with_names_read(models))
        status, lmstudio = await pool.fetch_json(ep, "GET", "/api/v0/models", b"", limit_seconds)
        if status == 200 and models_from_lmstudio(lmstudio):
            return FoundServer(port, "LM Studio", with_names_read(models_from_lmstudio(lmstudio)))
        return FoundServer(port, "OpenAI-compatible", with_names_read(models))
    except UpstreamError:
        return None
    finally:
        await pool.close()


async def _ollama_capabilities(pool: UpstreamPool, ep: EndpointSpec, model: FoundModel, limit: float) -> FoundModel:
    """`model` with the capabilities Ollama's `/api/show` lists for it (unchanged when it lists none)."""
    body = json.dumps({"model": model.name}).encode()
    try:
        status, shown = await pool.fetch_json(ep, "POST", "/api/show", body, limit)
    except UpstreamError:
        return model  # the listing answered: the name and the family still tell
    caps = capabilities_from_show(shown) if status == 200 else None
    return dataclasses.replace(model, capabilities=caps) if caps is not None else model


async def scan(ports: Iterable[int], limit_seconds: float = 2.0) -> list[FoundServer]:
    """Every port that answers, in the order given (duplicates asked once)."""
    unique = list(dict.fromkeys(ports))
    found = await asyncio.gather(*(probe_port(p, limit_seconds) for p in unique))
    return [s for s in found if s is not None]
