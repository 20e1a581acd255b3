"""A short soak (issue 11): `octoroute serve` in a subprocess under the fault mix;
its RSS and open file descriptors, read from /proc, stay flat between a warm-up
and many more requests. A resource assertion, not a timing one.
bench/faults.py --soak runs it longer and prints a table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support import free_port, octoroute_serve

from octoroute.demo.faults import FaultFleet, config_toml, measure, plan_mix, run_mix

WARM_UP = 200
MORE = 600
RSS_GROWTH_KIB = 32 * 1024  # generous for allocator noise; 56 KB kept per request would break it
FD_GROWTH = 64  # pooled connections come and go (55-87 seen at concurrency 32); a leak per request is hundreds


@pytest.fixture
def fleet(upstreams, loop_thread) -> Iterator[FaultFleet]:
    running = FaultFleet(upstreams("healthy").base_url)
    loop_thread.run(running.__aenter__())
    yield running
    loop_thread.run(running.__aexit__(None, None, None))


def test_rss_and_open_fds_stay_flat_under_the_fault_mix(fleet, loop_thread, tmp_path):
    port = free_port()
    config = tmp_path / "soak.toml"
    config.write_text(config_toml(fleet.gateway_config(), port=port))
    url = f"http://127.0.0.1:{port}"
    with octoroute_serve(config, port) as proc:
        warm = loop_thread.run(run_mix(url, plan_mix(WARM_UP, seed=2), concurrency=16), timeout=120)
        before = measure(proc.pid)
        more = loop_thread.run(run_mix(url, plan_mix(MORE, seed=3), concurrency=16), timeout=300)
        after = measure(proc.pid)
    assert warm.violations == [], "\n".join(warm.violations)
    assert more.violations == [], "\n".join(more.violations)
    assert more.total == MORE
    assert before.rss_kib > 0
    assert before.fds > 0
    assert after.rss_kib - before.rss_kib < RSS_GROWTH_KIB, (before, after)
    assert after.fds - before.fds <= FD_GROWTH, (before, after)
