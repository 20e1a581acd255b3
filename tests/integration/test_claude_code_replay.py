"""Real requests captured from the Claude Code CLI (../shared/data/claude-code),
replayed through /v1/messages to a fixture OpenAI upstream: large system
prompts, a dozen tools with `$schema`, cache_control, thinking, metadata,
mid-conversation system messages, beta query strings and headers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from pydantic import TypeAdapter
from tests.support import endpoint, fleet_config

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "data" / "claude-code"
EVENT = TypeAdapter(anthropic.types.RawMessageStreamEvent)
HOP_BY_HOP = {"host", "connection", "content-length", "accept-encoding", "x-api-key", "authorization"}


def captured() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(CAPTURES.glob("*.requests.jsonl")):
        for line in path.read_bytes().splitlines():
            record = orjson.loads(line)
            if record["method"] == "POST" and record["path"].startswith("/v1/messages"):
                found.append((f"{record['label']}#{record['seq']}", record))
    return found


CAPTURED = captured()


def test_the_captures_are_there():
    assert len(CAPTURED) >= 10, f"expected Claude Code captures in {CAPTURES}"


async def replay(url: str, records: list[dict[str, Any]]) -> list[tuple[int, bytes]]:
    async with aiohttp.ClientSession() as session:

        async def one(record: dict[str, Any]) -> tuple[int, bytes]:
            headers = {k: v for k, v in record["headers"].items() if k.lower() not in HOP_BY_HOP}
            headers["x-api-key"] = "sk-test"
            async with session.post(url + record["path"], data=orjson.dumps(record["body"]), headers=headers) as r:
                return r.status, await r.read()

        return await asyncio.gather(*(one(r) for r in records))  # parallel, as an agent sends them


@pytest.fixture
def gw(upstreams, gateway):
    sim = upstreams("local")
    return gateway(
        fleet_config(
            {"fast": [endpoint(sim, "m")], "deep": [endpoint(sim, "m2")]},
            aliases={"claude-*": "deep", "capture-*": "auto"},
        )
    ), sim


def test_every_captured_request_streams_back_valid_events(gw):
    running, sim = gw
    results = asyncio.run(replay(running.url, [r for _, r in CAPTURED]))
    for (name, record), (status, body) in zip(CAPTURED, results, strict=True):
        assert status == 200, (name, body[:300])
        if record["body"].get("stream"):
            lines = body.decode().splitlines()
            events = [orjson.loads(x[6:]) for x in lines if x.startswith("data: ")]
            names = [x[7:] for x in lines if x.startswith("event: ")]
            assert names == [e["type"] for e in events], name
            for event in events:
                if event["type"] != "ping":  # ping is allowed by the API but not in the SDK's event union
                    EVENT.validate_python(event)
            assert names[0] == "message_start", name
            assert names[-1] == "message_stop", name
        else:
            anthropic.types.Message.model_validate(orjson.loads(body))
    assert sim.count == len(CAPTURED)
    for request in sim.chat_requests:
        sent = request.body
        assert sent is not None
        assert "thinking" not in sent
        assert "cache_control" not in orjson.dumps(sent).decode()
        assert [m["role"] for m in sent["messages"]].count("system") <= 1  # the late one is a user note, in place
        assert not [k for k in request.headers if k.lower().startswith("anthropic-")]  # none to an OpenAI server
    # Claude Code's late system message stays where it came, as a marked user note right after the first turn
    late = [r for _, r in CAPTURED if "system" in [m["role"] for m in r["body"]["messages"]]]
    noted = [
        r.body["messages"]
        for r in sim.chat_requests
        if any(str(m.get("content")).startswith("<system-note>") for m in r.body["messages"])
    ]
    assert len(late) == len(noted) > 0
    for messages in noted:
        assert [m["role"] for m in messages[:3]] == ["system", "user", "user"]
        assert messages[2]["content"].startswith("<system-note>")
