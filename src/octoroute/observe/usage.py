"""Usage and cost accounting: tokens in and out per client key, group and endpoint,
and what they cost at the configured prices.

    ledger = UsageLedger(metrics)
    ledger.record("alice", "fast", "fast/a", 120, 40)   # after the last byte of a request
    ledger.record(None, "fast", "fast/a", None, None)   # anonymous; upstream reported no usage

`UsageLedger.record` is the one place a served request's usage is counted. It
counts into the app's Prometheus counters (per process, merged over workers like
every other counter; Prometheus sums replicas), which `/metrics` reads. With a
shared `[state]` store (Redis, or the workers' shared memory) it also adds the
request to the store's `usage` hash, one `incr_many` per request in a task of
its own after the last byte, so the store never delays a response; a failing
store degrades as `state.guard.GuardedState` does. `/metrics.json`, the
dashboard and `octoroute stats` then show the fleet-wide totals read back from
the store (`UsageLedger.refresh`, cached for `SHARED_READ_SECONDS`).

The store cannot list a hash's fields (the shared-memory backend keeps hashes of
names only), so the totals read are those of the (client, group, endpoint)
triples this process knows: its configured client keys and `anonymous`, every
(group, member endpoint) pair of its topology, and every triple it served itself.

Tokens are integers, so sums are exact. Costs are never added up as floats:
`cost_of` multiplies exact token totals by the prices as `Decimal`s, and a
float is made only for the Prometheus exposition, from that exact sum.
When an upstream reports no usage, the request counts 0 tokens and one
`unreported` request: no estimate is made, so every number is one an upstream
said (docs/metrics-json.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from octoroute.config.topology import EndpointSpec
    from octoroute.core.state import StateStore

log = logging.getLogger("octoroute.usage")

MILLION = Decimal(1_000_000)
USAGE_HASH = "usage"  # the store's hash of usage counters, one field per triple and stat
SHARED_READ_SECONDS = 1.0  # /metrics.json reads the store at most this often per process
# a field of USAGE_HASH: client, group, endpoint and stat, joined by a character no name holds
_SEP = "\x1f"
_STATS = ("reported", "missing", "input", "output")
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


def usage_field(client: str, group: str, endpoint: str, stat: str) -> str:
    """The `USAGE_HASH` field of one stat ('reported', 'missing', 'input', 'output') of a triple."""
    return _SEP.join((client, group, endpoint, stat))


def usage_amounts(
    client: str, group: str, endpoint: str, tokens_in: int, tokens_out: int, reported: bool
) -> dict[str, float]:
    """What one request adds to `USAGE_HASH` (one `incr_many`)."""
    return {
        usage_field(client, group, endpoint, "reported" if reported else "missing"): 1,
        usage_field(client, group, endpoint, "input"): tokens_in,
        usage_field(client, group, endpoint, "output"): tokens_out,
    }


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Counter totals in the shape `usage_rows` reads: requests keyed (client, group,
    endpoint, 'reported'|'missing'), tokens keyed (client, group, endpoint, 'input'|'output')."""

    requests: Mapping[tuple[str, str, str, str], int]
    tokens: Mapping[tuple[str, str, str, str], int]

    def token_totals(self) -> dict[UsageKey, tuple[int, int]]:
        keys = {k[:3] for k in self.tokens} | {k[:3] for k in self.requests}
        return {k: (self.tokens.get((*k, "input"), 0), self.tokens.get((*k, "output"), 0)) for k in keys}


def totals_of(triples: Iterable[UsageKey], values: Iterable[float | None]) -> UsageTotals:
    """`UsageTotals` from `read_many(USAGE_HASH, fields_of(triples))`'s answer."""
    requests: dict[tuple[str, str, str, str], int] = {}
    tokens: dict[tuple[str, str, str, str], int] = {}
    it = iter(values)
    for triple in triples:
        for stat in _STATS:
            value = next(it)
            if value:
                (requests if stat in ("reported", "missing") else tokens)[(*triple, stat)] = round(value)
    return UsageTotals(requests, tokens)


def fields_of(triples: Iterable[UsageKey]) -> list[str]:
    return [usage_field(*triple, stat) for triple in triples for stat in _STATS]


class UsageCounters(Protocol):
    """Where the ledger counts in this process: the app's metrics recorder
    (`observe.metrics.Recorder`, which records nothing when metrics are off)."""

    @property
    def enabled(self) -> bool: ...

    def usage(self, client: str, group: str, endpoint: str, tokens_in: int, tokens_out: int, reported: bool) -> None:
        """One request's usage for the key `client` through `endpoint` of `group`."""


class UsageLedger:
    """Counts each served request's usage under its client key, group and endpoint
    (see the module docstring for the shared store)."""

    def __init__(self, metrics: UsageCounters, clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._clock = clock
        self._store: StateStore | None = None
        # False: `record` would do nothing (metrics off, no store), so the observer skips it
        self.counting = metrics.enabled
        self._pending: set[asyncio.Task[None]] = set()
        self._seen: set[UsageKey] = set()
        self._clients: frozenset[str] = frozenset()
        self._read_at = -float("inf")
        self._read_for: frozenset[UsageKey] = frozenset()
        self.shared: UsageTotals | None = None  # the store's totals as last read; None without a store

    def share(self, store: StateStore, clients: Iterable[str]) -> None:
        """Also count into `store` (shared by workers and replicas) and read totals from it,
        for the key names `clients` (and 'anonymous') besides those served here."""
        self._store = store
        self._clients = frozenset((*clients, ANONYMOUS))
        self.counting = True

    @property
    def sharing(self) -> bool:
        return self._store is not None

    def record(
        self, client: str | None, group: str, endpoint: str, tokens_in: int | None, tokens_out: int | None
    ) -> None:
        """One request served by `endpoint` of `group` for the key named `client` (None:
        no `[auth]` key, counted as 'anonymous'); None tokens: the upstream did not say."""
        reported = tokens_in is not None or tokens_out is not None
        name = client or ANONYMOUS
        self._metrics.usage(name, group, endpoint, tokens_in or 0, tokens_out or 0, reported)
        if self._store is None:
            return
        self._seen.add((name, group, endpoint))
        amounts = usage_amounts(name, group, endpoint, tokens_in or 0, tokens_out or 0, reported)
        task = asyncio.get_running_loop().create_task(self._add(amounts), name="octoroute-usage")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _add(self, amounts: Mapping[str, float]) -> None:
        assert self._store is not None
        try:
            await self._store.incr_many(USAGE_HASH, amounts)
        except OSError as error:  # the shared-memory file; Redis failures are GuardedState's
            log.warning("usage not counted in the shared state store: %s", error)

    async def refresh(self, pairs: Iterable[tuple[str, str]]) -> UsageTotals | None:
        """The store's totals for each known client through each (group, endpoint) of `pairs`,
        and for every triple served here (read at most once per `SHARED_READ_SECONDS` for
        the same triples); None without a shared store."""
        if self._store is None:
            return None
        wanted = frozenset((c, g, e) for c in self._clients for g, e in pairs) | self._seen
        now = self._clock()
        if self.shared is not None and wanted == self._read_for and now - self._read_at < SHARED_READ_SECONDS:
            return self.shared
        ordered = sorted(wanted)
        try:
            values = await self._store.read_many(USAGE_HASH, fields_of(ordered))
        except OSError as error:
            log.warning("usage not read from the shared state store: %s", error)
            return self.shared
        self.shared = totals_of(ordered, values)
        self._read_at, self._read_for = now, wanted
        return self.shared

    async def drain(self) -> None:
        """Wait for the counts still being added (at shutdown, before the store closes)."""
        await asyncio.gather(*self._pending, return_exceptions=True)
