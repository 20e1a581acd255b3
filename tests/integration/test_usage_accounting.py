"""Usage and cost per client key, group and endpoint, over real HTTP with the official
SDKs: two `[auth]` keys send traffic through fixture upstreams that report usage
(OpenAI-compatible and Anthropic-native, streamed and not) and one that reports none;
`/metrics`, `/metrics.json` and `octoroute stats` must all say exactly what the
clients were told, priced exactly (decimal) at the configured prices."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anthropic
import openai
import orjson
import pytest
import urllib3
from prometheus_client.parser import text_string_to_metric_families
from tests.cli.test_stats import octoroute_stats, plain
from tests.integration.test_prometheus import (
    ID_PREFIX,
    chat,
    fetch,
    parse,
    promtool_complaints,
    serve,  # noqa: F401  (fixture)
    total,
    write_config,
)
from tests.scripted import scripted  # noqa: F401  (fixture)
from tests.support import endpoint, eventually, fleet_config

from octoroute.config import parse_config
from octoroute.observe.usage import MILLION, format_cost
from octoroute.server.state import LIVE

HTTP = urllib3.PoolManager()
ALICE_KEY = "ork-" + "a1" * 32
BOB_KEY = "ork-" + "b0" * 32
ENV = {"ALICE_KEY": ALICE_KEY, "BOB_KEY": BOB_KEY}
HI = [{"role": "user", "content": "hello there, how are you today?"}]
# group prices; `deep`'s endpoint sets its own, which win
PRICES = {
    "fast-small": (Decimal("0.15"), Decimal("0.6")),
    "deep-native": (Decimal("3"), Decimal("15")),
    "balanced-quiet": (Decimal("0.1"), Decimal("0.2")),
}

Key = tuple[str, str, str]  # client, group, endpoint


@dataclass
class Expected:
    """What the clients were told, per (client, group, endpoint)."""

    requests: dict[Key, int] = field(default_factory=lambda: defaultdict(int))
    unreported: dict[Key, int] = field(default_factory=lambda: defaultdict(int))
    tokens_in: dict[Key, int] = field(default_factory=lambda: defaultdict(int))
    tokens_out: dict[Key, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, key: Key, usage: tuple[int, int] | None) -> None:
        self.requests[key] += 1
        if usage is None:
            self.unreported[key] += 1
            return
        self.tokens_in[key] += usage[0]
        self.tokens_out[key] += usage[1]

    def cost(self, key: Key) -> Decimal:
        price_in, price_out = PRICES[key[2]]
        return (self.tokens_in[key] * price_in + self.tokens_out[key] * price_out) / MILLION

    def served(self) -> list[Key]:
        return sorted(self.requests)


def usage_config(upstreams: Any, quiet_upstream: Any) -> dict[str, Any]:
    fast, deep = upstreams("fast"), upstreams("deep")
    quiet = quiet_upstream(lambda body: [{"content": "fine"}], usage=None)  # reports no usage at all
    return fleet_config(
        {
            "fast": [endpoint(fast, "small-model", id="fast-small")],
            "deep": [
                endpoint(
                    deep,
                    "native-model",
                    id="deep-native",
                    kind="anthropic",
                    price_input_per_mtok=3,
                    price_output_per_mtok="15",
                )
            ],
            "balanced": [{"name": "quiet-model", "id": "balanced-quiet", "base_url": quiet.base_url}],
        },
        groups={
            "fast": {"price_input_per_mtok": 0.15, "price_output_per_mtok": 0.6},
            "deep": {"price_input_per_mtok": 1, "price_output_per_mtok": 1},
            "balanced": {"price_input_per_mtok": 0.1, "price_output_per_mtok": 0.2},
        },
        auth={
            "enabled": True,
            "keys": [{"name": "alice", "key_env": "ALICE_KEY"}, {"name": "bob", "key_env": "BOB_KEY"}],
        },
        usage={"currency": "EUR"},
    )


def send_traffic(gw: Any) -> Expected:
    """Both keys, both SDKs, streamed and not, through all three upstreams."""
    expected = Expected()
    alice = openai.OpenAI(base_url=gw.base_url, api_key=ALICE_KEY, max_retries=0, _strict_response_validation=True)
    bob = anthropic.Anthropic(base_url=gw.url, api_key=BOB_KEY, max_retries=0, _strict_response_validation=True)
    with alice, bob:
        for model, where in (("fast", "fast-small"), ("fast", "fast-small"), ("deep", "deep-native")):
            done = alice.chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
            assert done.usage is not None
            expected.add(("alice", model, where), (done.usage.prompt_tokens, done.usage.completion_tokens))
        chunks = list(
            alice.chat.completions.create(
                model="fast",
                messages=HI,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        usage = chunks[-1].usage
        assert usage is not None
        expected.add(("alice", "fast", "fast-small"), (usage.prompt_tokens, usage.completion_tokens))
        quiet = alice.chat.completions.create(model="balanced", messages=HI)  # type: ignore[arg-type]
        assert quiet.usage is None
        expected.add(("alice", "balanced", "balanced-quiet"), None)

        for model, where in (("deep", "deep-native"), ("fast", "fast-small")):
            message = bob.messages.create(model=model, max_tokens=64, messages=HI)  # type: ignore[arg-type]
            expected.add(("bob", model, where), (message.usage.input_tokens, message.usage.output_tokens))
        with bob.messages.stream(model="deep", max_tokens=64, messages=HI) as stream:  # type: ignore[arg-type]
            final = stream.get_final_message()
        expected.add(("bob", "deep", "deep-native"), (final.usage.input_tokens, final.usage.output_tokens))
        with bob.messages.stream(model="balanced", max_tokens=64, messages=HI) as stream:  # type: ignore[arg-type]
            stream.get_final_message()
        expected.add(("bob", "balanced", "balanced-quiet"), None)
    assert all(n > 0 for n in expected.tokens_in.values())
    return expected


def get(gw: Any, path: str) -> urllib3.BaseHTTPResponse:
    response = HTTP.request("GET", gw.url + path, headers={"Authorization": f"Bearer {ALICE_KEY}"}, retries=False)
    assert response.status == 200, response.data
    return response


def prometheus(gw: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(get(gw, "/metrics").data.decode()):
        for sample in family.samples:
            out[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return out


def labels(key: Key, **extra: str) -> tuple[tuple[str, str], ...]:
    client, group, ep = key
    return tuple(sorted({"client": client, "group": group, "endpoint": ep, **extra}.items()))


@pytest.fixture
def served(upstreams, scripted, gateway):  # noqa: F811
    gw = gateway(usage_config(upstreams, scripted), env=ENV)
    expected = send_traffic(gw)
    # a stream's usage is counted after its last byte, which the client may read first
    total = sum(expected.requests.values())
    eventually(lambda: get(gw, "/metrics.json").json()["usage"]["total"]["requests"] == total, what="usage")
    return gw, expected


def test_prometheus_counts_tokens_and_cost_per_client_group_and_endpoint(served):
    gw, expected = served
    metrics = prometheus(gw)
    tokens, requests, cost = (
        metrics["octoroute_usage_tokens_total"],
        metrics["octoroute_usage_requests_total"],
        metrics["octoroute_usage_cost_total"],
    )
    assert {dict(k)["client"] for k in tokens} == {"alice", "bob"}
    for key in expected.served():
        assert tokens[labels(key, direction="input")] == expected.tokens_in[key], key
        assert tokens[labels(key, direction="output")] == expected.tokens_out[key], key
        reported = expected.requests[key] - expected.unreported[key]
        assert requests.get(labels(key, usage="reported"), 0) == reported, key
        assert requests.get(labels(key, usage="missing"), 0) == expected.unreported[key], key
        # the float Prometheus shows is the exact decimal cost, rounded once
        assert cost[labels(key, currency="EUR")] == float(expected.cost(key)), key
    assert len(tokens) == 2 * len(expected.served())  # no series for pairs that sent nothing


def test_metrics_json_has_the_same_numbers_and_exact_decimal_costs(served):
    gw, expected = served
    usage = get(gw, "/metrics.json").json()["usage"]
    assert usage["currency"] == "EUR"
    rows = {(r["client"], r["group"], r["endpoint"]): r for r in usage["rows"]}
    assert sorted(rows) == expected.served()
    for key, row in rows.items():
        assert row["requests"] == expected.requests[key]
        assert row["unreported"] == expected.unreported[key]
        assert row["input_tokens"] == expected.tokens_in[key]
        assert row["output_tokens"] == expected.tokens_out[key]
        assert Decimal(row["cost"]) == expected.cost(key)
    total = usage["total"]
    assert total["requests"] == sum(expected.requests.values())
    assert total["unreported"] == 2
    assert total["input_tokens"] == sum(expected.tokens_in.values())
    assert Decimal(total["cost"]) == sum(expected.cost(k) for k in expected.served())


def test_stats_shows_the_usage_table_at_80_columns(served):
    gw, expected = served
    result = octoroute_stats("--url", gw.url, "--once", "--token", ALICE_KEY, env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    out = plain(result.stdout)
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "usage by client (cost in EUR)" in out
    for key in expected.served():
        client, _, ep = key
        numbers = (
            expected.requests[key],
            expected.unreported[key],
            expected.tokens_in[key],
            expected.tokens_out[key],
        )
        cost = format_cost(expected.cost(key))
        row = rf"{client}\s+{re.escape(ep)}\s+" + r"\s+".join(map(str, numbers)) + rf"\s+{re.escape(str(cost))}"
        assert re.search(row, out), (row, out)


def test_without_auth_usage_is_anonymous_and_an_endpoint_without_a_price_costs_nothing(upstreams, gateway):
    sim = upstreams("plain")
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m", id="fast-m")]}))
    with openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0) as client:
        done = client.chat.completions.create(model="fast", messages=HI)  # type: ignore[arg-type]
    assert done.usage is not None
    usage = HTTP.request("GET", gw.url + "/metrics.json").json()["usage"]
    assert usage["rows"] == [
        {
            "client": "anonymous",
            "group": "fast",
            "endpoint": "fast-m",
            "requests": 1,
            "unreported": 0,
            "input_tokens": done.usage.prompt_tokens,
            "output_tokens": done.usage.completion_tokens,
            "cost": None,
        }
    ]
    assert usage["total"]["cost"] is None
    assert b"octoroute_usage_cost" not in HTTP.request("GET", gw.url + "/metrics").data


def test_two_workers_count_usage_once_and_price_the_merged_totals(upstreams, serve, tmp_path):  # noqa: F811
    """`octoroute serve --workers 2`: whichever worker answers, the usage and cost are the
    totals of both, the cost is the merged tokens times the price (written in TOML as
    0.1 and 0.2, which no float sum would keep exact), and promtool accepts the family."""
    a, b = upstreams("fast-a"), upstreams("fast-b")
    config = tmp_path / "octoroute.toml"
    write_config(
        config, {"fast": [("fast-a", a.base_url), ("fast-b", b.base_url)]}, {"routing_duration_unit": "seconds"}
    )
    config.write_text(config.read_text() + "\n[groups.fast]\nprice_input_per_mtok = 0.1\nprice_output_per_mtok = 0.2\n")
    served = serve(config, 2)
    served.wait_for_workers(2)
    n = 40
    ids, tokens_in, tokens_out = set(), 0, 0
    for _ in range(n):
        reply = chat(served.port, "fast")
        assert reply.status == 200, (reply.body, served.output())
        usage = orjson.loads(reply.body)["usage"]
        tokens_in += usage["prompt_tokens"]
        tokens_out += usage["completion_tokens"]
        ids.add(reply.headers["x-request-id"][:ID_PREFIX])
    assert len(ids) == 2, ids  # both workers served
    cost = (tokens_in * Decimal("0.1") + tokens_out * Decimal("0.2")) / MILLION

    snapshot = orjson.loads(fetch(served.port, "GET", "/metrics.json").body)["usage"]
    assert snapshot["total"] == {
        "requests": n,
        "unreported": 0,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "cost": format_cost(cost),
    }
    text = fetch(served.port, "GET", "/metrics").body.decode()
    series = parse(text)
    assert total(series, "octoroute_usage_requests_total", client="anonymous", usage="reported") == n
    assert total(series, "octoroute_usage_tokens_total", direction="input") == tokens_in
    assert sum(v for (name, _), v in series.items() if name == "octoroute_usage_cost_total") == pytest.approx(
        float(cost), rel=1e-12
    )  # one float per endpoint, each rounded once from its exact decimal
    assert promtool_complaints(text) == (0, "")
    assert served.stop() == 0, served.output()


def test_streams_count_the_usage_the_gateway_asked_for_without_showing_it(scripted, gateway):  # noqa: F811
    """A stream whose client did not ask for usage: the gateway asks the upstream for it
    (stream_options.include_usage), counts it, and drops the usage chunk on the way; an
    Anthropic client's stream to the same OpenAI upstream counts it too."""
    upstream = scripted(lambda body: [{"content": "Hel"}, {"content": "lo"}])  # usage 50 in, 10 out
    gw = gateway(fleet_config({"fast": [{"name": "s", "id": "fast-s", "base_url": upstream.base_url}]}))
    with openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0) as client:
        chunks = list(client.chat.completions.create(model="fast", messages=HI, stream=True))  # type: ignore[arg-type]
    assert [c.usage for c in chunks] == [None] * len(chunks)
    claude = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
    with claude, claude.messages.stream(model="fast", max_tokens=32, messages=HI) as stream:  # type: ignore[arg-type]
        assert stream.get_final_message().usage.output_tokens == 10
    assert all(seen.body["stream_options"] == {"include_usage": True} for seen in upstream.requests)

    def row() -> dict[str, Any] | None:
        rows = HTTP.request("GET", gw.url + "/metrics.json").json()["usage"]["rows"]
        return rows[0] if rows and rows[0]["requests"] == 2 else None

    eventually(lambda: row() is not None, what="both streams counted")
    assert row() == {
        "client": "anonymous",
        "group": "fast",
        "endpoint": "fast-s",
        "requests": 2,
        "unreported": 0,
        "input_tokens": 100,
        "output_tokens": 20,
        "cost": None,
    }


def test_a_price_change_on_reload_prices_only_what_comes_after(scripted, gateway, loop_thread):  # noqa: F811
    """Prices changed by a config reload: the tokens counted before keep the old price, in
    /metrics and /metrics.json alike (each request: 50 tokens in, 10 out)."""
    upstream = scripted(lambda body: [{"content": "ok"}])

    def config(price_in: str, price_out: str) -> dict[str, Any]:
        prices = {"price_input_per_mtok": price_in, "price_output_per_mtok": price_out}
        return fleet_config(
            {"fast": [{"name": "s", "id": "fast-s", "base_url": upstream.base_url}]}, groups={"fast": prices}
        )

    def send(n: int) -> None:
        with openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0) as client:
            for _ in range(n):
                client.chat.completions.create(model="fast", messages=HI)  # type: ignore[arg-type]

    def costs() -> tuple[str, float]:
        row = HTTP.request("GET", gw.url + "/metrics.json").json()["usage"]["rows"][0]
        metrics = text_string_to_metric_families(HTTP.request("GET", gw.url + "/metrics").data.decode())
        (value,) = [s.value for f in metrics for s in f.samples if s.name == "octoroute_usage_cost_total"]
        return row["cost"], value

    gw = gateway(config("1", "2"))
    send(3)
    before = (150 * Decimal(1) + 30 * Decimal(2)) / MILLION
    assert costs() == (format_cost(before), float(before))
    report = loop_thread.run(gw.app[LIVE].reload(parse_config(config("100", "0.5"), {}), {}))
    assert (report.result, report.changed, report.needs_restart) == ("ok", True, ()), report
    assert costs() == (format_cost(before), float(before))  # nothing counted yet at the new price
    send(2)
    after = before + (100 * Decimal(100) + 20 * Decimal("0.5")) / MILLION
    assert costs() == (format_cost(after), float(after))
