"""A stand-in worker process for `tests/cli/test_supervisor_reload.py`: it becomes
ready only when the test says so, and only then survives SIGHUP (as a real worker
does once its event loop has its handler); each SIGHUP it gets is a line in a file."""

from __future__ import annotations

import signal
import sys
from multiprocessing.synchronize import Event
from pathlib import Path


def worker(go: Event, ready: Event, hangups: str) -> None:
    def note(*_: object) -> None:
        with Path(hangups).open("a") as out:
            out.write("hup\n")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    go.wait()
    signal.signal(signal.SIGHUP, note)
    ready.set()
    while True:
        signal.pause()
