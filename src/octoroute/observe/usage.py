"""Usage and cost accounting: tokens in and out per client key, group and endpoint,
and what they cost at the configured prices.

    ledger = UsageLedger(metrics)
    ledger.record("alice", "fast", "fast/a", 120, 40)   # after the last byte of a request
    ledger.record(None, "fast", "fast/a", None, None)   # anonymous; upstream reported no usage

`UsageLedger.record` is the one place a served request's usage is counted; the
in-process ledger counts into the app's Prometheus counters (merged over
workers like every other counter), which `/metrics`, `/metrics.json`, the
dashboard and `octoroute stats` all read. A shared state backend replaces this
class, not its callers.

Tokens are integers, so sums are exact. Costs are never added up as floats:
`cost_of` multiplies exact token totals by the prices as `Decimal`s, and a
float is made only for the Prometheus exposition, from that exact sum.
When an upstream reports no usage, the request counts 0 tokens and one
`unreported` request: no estimate is made, so every number is one an upstream
said (docs/metrics-json.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from octoroute.config.topology import EndpointSpec
    from octoroute.observe.metrics import Recorder

MILLION = Decimal(1_000_000)
ANONYMOUS = "anonymous"  # the client label of requests without an [auth] key


@dataclass(frozen=True, slots=True)
class Price:
    """An endpoint's prices per million tokens; a side left unset costs nothing."""

    input_per_mtok: Decimal | None = None
    output_per_mtok: Decimal | None = None

    @property
    def priced(self) -> bool:
        return self.input_per_mtok is not None or self.output_per_mtok is not None


def prices_of(endpoints: Iterable[EndpointSpec]) -> dict[str, Price]:
    """Each endpoint's prices (its own, else its group's), by endpoint id."""
    return {ep.id: Price(ep.price_input_per_mtok, ep.price_output_per_mtok) for ep in endpoints}


def cost_of(price: Price | None, input_tokens: int, output_tokens: int) -> Decimal | None:
    """What the tokens cost, exactly; None when the endpoint has no price."""
    if price is None or not price.priced:
        return None
    cost = Decimal(0)
    if price.input_per_mtok is not None:
        cost += input_tokens * price.input_per_mtok / MILLION
    if price.output_per_mtok is not None:
        cost += output_tokens * price.output_per_mtok / MILLION
    return cost


def format_cost(cost: Decimal | None) -> str | None:
    """A cost as plain decimal text ('0.0000045', '12.5', '0'), never in exponent form."""
    if cost is None:
        return None
    text = format(cost, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True, slots=True)
class UsageRow:
    """What one client key sent through one endpoint (of one group)."""

    client: str
    group: str
    endpoint: str
    requests: int
    unreported: int  # requests whose upstream reported no usage (counted as 0 tokens)
    input_tokens: int
    output_tokens: int
    cost: Decimal | None


UsageKey = tuple[str, str, str]  # client, group, endpoint


def usage_rows(
    requests: Mapping[tuple[str, str, str, str], int],
    tokens: Mapping[tuple[str, str, str, str], int],
    costs: Mapping[UsageKey, Decimal | None],
) -> list[UsageRow]:
    """Rows from counter totals keyed (client, group, endpoint, usage|direction):
    `requests` by usage 'reported'/'missing', `tokens` by direction 'input'/'output';
    `costs` by (client, group, endpoint). Sorted; rows with no request are left out."""
    keys = sorted({k[:3] for k, n in requests.items() if n})
    rows = []
    for client, group, endpoint in keys:
        reported = requests.get((client, group, endpoint, "reported"), 0)
        missing = requests.get((client, group, endpoint, "missing"), 0)
        tokens_in = tokens.get((client, group, endpoint, "input"), 0)
        tokens_out = tokens.get((client, group, endpoint, "output"), 0)
        cost = costs.get((client, group, endpoint))
        rows.append(UsageRow(client, group, endpoint, reported + missing, missing, tokens_in, tokens_out, cost))
    return rows


class CostBook:
    """Exact costs per (client, group, endpoint) at prices that may change while the
    process runs (a config reload): what was counted before a change keeps the price
    it was counted at, so a cost never jumps or goes back.

        book = CostBook(prices)
        book.costs(totals)            # totals: key -> (input tokens, output tokens)
        book.reprice(new_prices, totals)
    """

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self.prices = dict(prices)
        # per key: the cost of the tokens counted before the last price change, and those tokens
        self._banked: dict[UsageKey, tuple[Decimal | None, int, int]] = {}

    @property
    def banked(self) -> bool:
        """Some cost was counted at earlier prices."""
        return any(cost is not None for cost, _, _ in self._banked.values())

    def costs(self, totals: Mapping[UsageKey, tuple[int, int]]) -> dict[UsageKey, Decimal | None]:
        out: dict[UsageKey, Decimal | None] = {}
        for key, (tokens_in, tokens_out) in totals.items():
            banked, before_in, before_out = self._banked.get(key, (None, 0, 0))
            fresh = cost_of(self.prices.get(key[2]), tokens_in - before_in, tokens_out - before_out)
            out[key] = fresh if banked is None else banked + (fresh or Decimal(0))
        return out

    def reprice(self, prices: Mapping[str, Price], totals: Mapping[UsageKey, tuple[int, int]]) -> None:
        """New prices from now on; `totals` are the token counts so far (priced as before)."""
        costs = self.costs(totals)
        self._banked = {key: (costs[key], *totals[key]) for key in totals}
        self.prices = dict(prices)


def total_cost(rows: Iterable[UsageRow]) -> Decimal | None:
    costs = [r.cost for r in rows if r.cost is not None]
    return sum(costs, Decimal(0)) if costs else None


class UsageLedger:
    """Counts each served request's usage under its client key, group and endpoint."""

    def __init__(self, metrics: Recorder) -> None:
        self._metrics = metrics

    def record(
        self, client: str | None, group: str, endpoint: str, tokens_in: int | None, tokens_out: int | None
    ) -> None:
        """One request served by `endpoint` of `group` for the key named `client` (None:
        no `[auth]` key, counted as 'anonymous'); None tokens: the upstream did not say."""
        reported = tokens_in is not None or tokens_out is not None
        self._metrics.usage(client or ANONYMOUS, group, endpoint, tokens_in or 0, tokens_out or 0, reported)
