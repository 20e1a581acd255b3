"""`PrometheusRecorder` in multiprocess mode: one scrape merges every worker's files,
and a worker's file caught at 0 bytes (created, not yet sized) does not fail it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from octoroute.observe.metrics import PrometheusRecorder

WORKER = """
import sys
from octoroute.observe.metrics import PrometheusRecorder
recorder = PrometheusRecorder(["fast-a"], ["fast"], multiprocess_dir=sys.argv[1])
for _ in range(int(sys.argv[2])):
    recorder.http_started()
    recorder.http_finished("/health", "GET", 200, 0.001)
"""

HEALTH = 'octoroute_http_requests_total{method="GET",route="/health",status="200"}'


def worker(directory: Path, requests: int) -> None:
    """A real worker process's metric files, written through prometheus_client's multiprocess mode."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", WORKER, str(directory), str(requests)], env=env, check=True, timeout=60)


def test_a_scrape_sums_every_workers_files(tmp_path: Path) -> None:
    worker(tmp_path, 2)
    worker(tmp_path, 3)
    text = PrometheusRecorder(["fast-a"], ["fast"], multiprocess_dir=str(tmp_path)).exposition().decode()
    assert f"{HEALTH} 5.0" in text


def test_a_file_a_worker_has_created_but_not_sized_yet_does_not_fail_the_scrape(tmp_path: Path) -> None:
    worker(tmp_path, 2)
    for kind in ("counter", "histogram", "gauge_livesum"):  # what a worker starting (or killed) this instant leaves
        (tmp_path / f"{kind}_4242.db").touch()
    text = PrometheusRecorder(["fast-a"], ["fast"], multiprocess_dir=str(tmp_path)).exposition().decode()
    assert f"{HEALTH} 2.0" in text
