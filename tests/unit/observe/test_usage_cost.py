"""Usage accounting's pure parts: prices read as written, exact costs, rows from counters."""

from __future__ import annotations

from decimal import Decimal

import pytest
from tests.support import fleet_config

from octoroute.config import build_topology, parse_config
from octoroute.core.errors import ConfigError
from octoroute.observe.usage import CostBook, Price, UsageRow, cost_of, format_cost, total_cost, usage_rows


def topology(groups: dict[str, object], **endpoint: object) -> dict[str, Price]:
    data = fleet_config(
        {"fast": [{"name": "a", "id": "a", "base_url": "http://127.0.0.1:9/v1", **endpoint}]}, groups=groups
    )
    topo = build_topology(parse_config(data, {}), {})
    return {ep.id: Price(ep.price_input_per_mtok, ep.price_output_per_mtok) for ep in topo.endpoints.values()}


@pytest.mark.parametrize(
    ("written", "read"),
    [(0.1, Decimal("0.1")), (0.15, Decimal("0.15")), (3, Decimal("3")), ("2.50", Decimal("2.50")), (0, Decimal(0))],
)
def test_a_price_is_the_decimal_the_file_wrote(written, read):
    price = topology({"fast": {"price_input_per_mtok": written}})["a"]
    assert price.input_per_mtok == read
    assert price.output_per_mtok is None


def test_an_endpoint_price_wins_over_its_group():
    price = topology({"fast": {"price_input_per_mtok": 1, "price_output_per_mtok": 2}}, price_output_per_mtok=5)["a"]
    assert price == Price(Decimal(1), Decimal(5))


@pytest.mark.parametrize("bad", [-1, True, "cheap", "NaN", 2_000_000, [1]])
def test_a_bad_price_is_a_config_problem_naming_the_key(bad):
    with pytest.raises(ConfigError) as failed:
        topology({}, price_input_per_mtok=bad)
    assert "models.fast[0].price_input_per_mtok" in str(failed.value)


def test_a_bad_currency_is_a_config_problem():
    with pytest.raises(ConfigError) as failed:
        parse_config(
            fleet_config({"fast": [{"name": "a", "base_url": "http://127.0.0.1:9/v1"}]}, usage={"currency": "€ uro"}),
            {},
        )
    assert "usage.currency" in str(failed.value)


def test_costs_are_exact_where_floats_are_not():
    # 0.1 + 0.2 per million tokens, a million times over: floats drift, decimals do not
    price = Price(Decimal("0.1"), Decimal("0.2"))
    assert cost_of(price, 3_000_000, 1_000_000) == Decimal("0.5")
    assert cost_of(price, 1, 1) == Decimal("0.0000003")
    assert format_cost(cost_of(price, 1, 1)) == "0.0000003"  # never '3E-7'
    assert cost_of(Price(Decimal(3), None), 10, 999) == Decimal("0.00003")  # output unpriced: free
    assert cost_of(Price(), 10, 10) is None
    assert cost_of(None, 10, 10) is None
    assert format_cost(Decimal("12.500")) == "12.5"
    assert format_cost(Decimal(0)) == "0"


def test_rows_join_requests_and_tokens_and_skip_pairs_without_requests():
    requests = {
        ("bob", "fast", "a", "reported"): 2,
        ("bob", "fast", "a", "missing"): 1,
        ("alice", "deep", "d", "missing"): 1,
        ("carol", "fast", "a", "reported"): 0,
    }
    tokens = {("bob", "fast", "a", "input"): 30, ("bob", "fast", "a", "output"): 12}
    rows = usage_rows(requests, tokens, {("bob", "fast", "a"): Decimal("0.000054"), ("alice", "deep", "d"): None})
    assert rows == [
        UsageRow("alice", "deep", "d", 1, 1, 0, 0, None),
        UsageRow("bob", "fast", "a", 3, 1, 30, 12, Decimal("0.000054")),
    ]
    assert total_cost(rows) == Decimal("0.000054")
    assert total_cost(rows[:1]) is None


def test_a_price_change_prices_only_the_tokens_counted_after_it():
    key = ("alice", "fast", "a")
    book = CostBook({"a": Price(Decimal("1"), Decimal("2"))})
    assert book.costs({key: (1_000_000, 500_000)}) == {key: Decimal(2)}
    book.reprice({"a": Price(Decimal("10"), None)}, {key: (1_000_000, 500_000)})
    # 2 for what came before, then 10 per million input tokens and output free
    assert book.costs({key: (1_000_000, 500_000)}) == {key: Decimal(2)}
    assert book.costs({key: (1_100_000, 900_000)}) == {key: Decimal(3)}
    book.reprice({}, {key: (1_100_000, 900_000)})  # no price any more: the cost stays, grows no more
    assert book.costs({key: (5_000_000, 5_000_000)}) == {key: Decimal(3)}
    other = ("bob", "fast", "a")
    assert book.costs({other: (7, 7)}) == {other: None}  # never priced
