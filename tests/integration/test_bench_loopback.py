"""Regression (issue 11): bench/overhead.py started the LiteLLM proxy without
`--host`, so it listened on every interface. `start_litellm` is run here against
a stand-in that, like LiteLLM, binds every interface unless told otherwise; the
kernel's table of listening sockets must show it on 127.0.0.1 only."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STAND_IN = """
import argparse, http.server
parser = argparse.ArgumentParser()
parser.add_argument("--config")
parser.add_argument("--host", default="0.0.0.0")  # LiteLLM's default: every interface
parser.add_argument("--port", type=int)
args = parser.parse_args()

class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass

http.server.HTTPServer((args.host, args.port), Ok).serve_forever()
"""


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp) of sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_the_litellm_proxy_of_the_benchmark_listens_on_loopback_only(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    litellm_proxy = importlib.import_module("litellm_proxy")
    procs = importlib.import_module("procs")
    script = tmp_path / "litellm_stand_in.py"
    script.write_text(STAND_IN)
    with procs.Services(tmp_path) as services:
        _service, port = litellm_proxy.start_litellm(services, [sys.executable, str(script)], tmp_path, 1, "m")
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, not 00000000 (every interface)
