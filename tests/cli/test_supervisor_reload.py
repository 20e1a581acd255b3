"""`Supervisor` passes a reload on to its workers, and never to one still starting
(SIGHUP's default action would kill it): that one gets it once it is ready."""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path

from tests.sighup_child import worker
from tests.support import eventually

from octoroute.cli.serve import Supervisor


def test_a_reload_reaches_a_starting_worker_once_it_is_ready(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    hangups = tmp_path / "hangups"
    hangups.touch()
    started: list[BaseProcess] = []
    refreshed = threading.Event()

    def start(slot: int) -> tuple[BaseProcess, Event]:
        ready = ctx.Event()
        proc = ctx.Process(target=worker, args=(go, ready, str(hangups)), name=f"test-worker-{slot}")
        proc.start()
        started.append(proc)
        return proc, ready

    supervisor = Supervisor(start, 1, str(tmp_path), refresh=refreshed.set)
    codes: list[int] = []
    loop = threading.Thread(target=lambda: codes.append(supervisor.run()), daemon=True)
    loop.start()
    try:
        eventually(lambda: len(started) == 1, what="the worker started")
        supervisor.hang_up()  # as SIGHUP to the server would
        assert refreshed.wait(10)
        go.set()  # only now may it take SIGHUP: one sent earlier would have killed it
        eventually(lambda: hangups.read_text() == "hup\n", what="the owed SIGHUP reached the worker")
        assert len(started) == 1  # never killed and replaced
    finally:
        supervisor.stop()
        loop.join(30)
    assert codes == [0]
