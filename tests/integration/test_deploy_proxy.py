"""deploy/nginx.conf and deploy/Caddyfile in a real nginx and Caddy (Debian's,
scripts/system-deps.sh) run by the test on a loopback port, in front of a real
gateway: a stream reaches the client event by event, while the upstream still
holds the rest of it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest
from tests.integration.installed import DEPLOY
from tests.integration.raw_upstream import CHUNK, LAST_CHUNK, SSE_HEAD_UNDELIMITED, RawUpstream, Script, sse_event
from tests.support import fleet_config, free_port

from octoroute.config.models import LimitsConfig, ServerConfig

SHIPPED = DEPLOY / "nginx.conf"
LISTEN = "listen 80;"
UPSTREAM = "server 127.0.0.1:3000;"
CADDYFILE = DEPLOY / "Caddyfile"
CADDY_SITE = "llm.example.internal {"
CADDY_UPSTREAM = "reverse_proxy 127.0.0.1:3000 {"
HI = [{"role": "user", "content": "hi"}]

DEFAULTS_ONLY = """\
server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://127.0.0.1:{upstream}; }}
}}
"""


def seconds(directive: str) -> float:
    match = re.search(rf"^\s*{directive}\s+(\d+)s;", SHIPPED.read_text(), re.MULTILINE)
    assert match, f"{directive} not set in {SHIPPED}"
    return float(match.group(1))


def shipped_site(port: int, gateway_port: int) -> str:
    """deploy/nginx.conf with the test's ports: each templated line must be there exactly once."""
    text = SHIPPED.read_text()
    for line in (LISTEN, UPSTREAM):
        assert text.count(line) == 1, f"{SHIPPED} should have '{line}' once"
    return text.replace(LISTEN, f"listen 127.0.0.1:{port};").replace(UPSTREAM, f"server 127.0.0.1:{gateway_port};")


class Proxy:
    """A proxy server process in its own process group, with its files under `root`."""

    STOP = signal.SIGTERM

    def __init__(self, root: Path, port: int, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.root, self.port = root, port
        self._stderr = root.joinpath("stderr.log").open("w")
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env, start_new_session=True
        )
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.proc.args[0]} exited: {self.log()}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.02)  # polling a condition with a deadline, not synchronisation by sleep
        raise AssertionError(f"{self.proc.args[0]} never listened on {self.port}: {self.log()}")

    def log(self) -> str:
        return "".join(path.read_text() for path in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, self.STOP)
        self.proc.wait(timeout=30)
        self._stderr.close()


class Nginx(Proxy):
    """nginx in the foreground; the site is included in the http block, as from conf.d/."""

    STOP = signal.SIGQUIT  # graceful: workers finish, master exits

    def __init__(self, root: Path, site: str, port: int) -> None:
        (root / "site.conf").write_text(site)
        (root / "nginx.conf").write_text(main_config(root))
        argv = [shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(root), "-e", str(root / "error.log")]
        argv += ["-c", str(root / "nginx.conf")]
        checked = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
        super().__init__(root, port, argv)


class Caddy(Proxy):
    """`caddy run` on a Caddyfile; no admin endpoint, no certificates, its state under `root`."""

    def __init__(self, root: Path, caddyfile: str, port: int) -> None:
        (root / "Caddyfile").write_text("{\n\tadmin off\n\tauto_https off\n}\n\n" + caddyfile)
        argv = [shutil.which("caddy") or "/usr/bin/caddy", "run", "--adapter", "caddyfile"]
        argv += ["--config", str(root / "Caddyfile")]
        env = {**os.environ, "HOME": str(root), "XDG_DATA_HOME": str(root), "XDG_CONFIG_HOME": str(root)}
        super().__init__(root, port, argv, env)


ProxyKind = Callable[[Path, str, int], Proxy]  # Nginx or Caddy: (root, config text, port)


def main_config(root: Path) -> str:
    """The main nginx.conf a package would provide, with every file under `root`;
    the site under test is included in its http block, as from conf.d/."""
    temp = "".join(
        f"{kind}_temp_path {root / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "daemon off;\nworker_processes 1;\n"
        f"pid {root / 'nginx.pid'};\nerror_log {root / 'error.log'} info;\n"
        + ("user root;\n" if os.geteuid() == 0 else "")  # workers must reach the temp dirs under tmp_path
        + "events { worker_connections 64; }\n"
        + f"http {{\naccess_log off;\n{temp}include {root / 'site.conf'};\n}}\n"
    )


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[Callable[[ProxyKind, str, int], Proxy]]:
    """Factory: `proxies(Nginx, site, port)` starts one; all stop after the test."""
    started: list[Proxy] = []

    def start(kind: ProxyKind, config: str, port: int) -> Proxy:
        root = tmp_path / f"proxy{len(started)}"
        root.mkdir()
        proxy = kind(root, config, port)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def held_stream(loop_thread) -> Iterator[tuple[RawUpstream, asyncio.Event]]:
    """An upstream that sends a stream's first event, then holds the rest until the event is set."""
    release = asyncio.Event()
    upstream = RawUpstream(
        [Script(SSE_HEAD_UNDELIMITED, [sse_event(CHUNK), release, sse_event(LAST_CHUNK), sse_event(b"[DONE]")])]
    )
    loop_thread.run(upstream.start())
    yield upstream, release
    loop_thread.loop.call_soon_threadsafe(release.set)
    loop_thread.run(upstream.stop())


def stream_through(proxy: Proxy, upstream_release: asyncio.Event, loop_thread) -> tuple[str, str, dict[str, str]]:
    """The first event (read while the upstream holds the rest), then the rest, and the headers."""
    with openai.OpenAI(base_url=f"http://127.0.0.1:{proxy.port}/v1", api_key="k", max_retries=0, timeout=15) as client:
        raw = client.chat.completions.with_raw_response.create(model="fast", messages=HI, stream=True)
        chunks = iter(raw.parse())
        first = next(chunks).choices[0].delta.content or ""  # a buffering proxy would time out here
        assert not upstream_release.is_set()
        loop_thread.loop.call_soon_threadsafe(upstream_release.set)
        rest = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return first, rest, dict(raw.headers)


def test_the_shipped_nginx_site_streams_event_by_event(proxies, gateway, held_stream, loop_thread):
    upstream, release = held_stream
    gw = gateway(fleet_config({"fast": [{"name": "m", "base_url": upstream.base_url}]}))
    port = free_port()
    proxy = proxies(Nginx, shipped_site(port, gw.port), port)
    first, rest, headers = stream_through(proxy, release, loop_thread)
    assert (first, rest) == ("Hel", "lo")
    assert headers["x-octoroute-endpoint"] == "fast/m"


def test_octoroute_asks_even_a_default_nginx_not_to_buffer_its_streams(proxies, gateway, held_stream, loop_thread):
    """proxy_buffering is on by default; X-Accel-Buffering: no on octoroute's streams turns it off."""
    upstream, release = held_stream
    gw = gateway(fleet_config({"fast": [{"name": "m", "base_url": upstream.base_url}]}))
    port = free_port()
    proxy = proxies(Nginx, DEFAULTS_ONLY.format(port=port, upstream=gw.port), port)
    first, rest, _ = stream_through(proxy, release, loop_thread)
    assert (first, rest) == ("Hel", "lo")


def test_the_shipped_nginx_site_outwaits_octoroute_and_lets_it_answer_oversized_bodies():
    assert seconds("proxy_read_timeout") > ServerConfig().request_timeout_seconds
    assert seconds("proxy_send_timeout") > ServerConfig().request_timeout_seconds
    text = SHIPPED.read_text()
    size = re.search(r"client_max_body_size (\d+)m;", text)
    assert size
    assert int(size.group(1)) * 1024 * 1024 > ServerConfig().max_body_bytes
    keepalive = re.search(r"keepalive_timeout (\d+)s;", text)
    assert keepalive
    assert int(keepalive.group(1)) < LimitsConfig().client_keepalive_timeout_seconds
    assert "proxy_buffering off;" in text
    assert "proxy_http_version 1.1;" in text


def shipped_caddyfile(port: int, gateway_port: int) -> str:
    text = CADDYFILE.read_text()
    for line in (CADDY_SITE, CADDY_UPSTREAM):
        assert text.count(line) == 1, f"{CADDYFILE} should have '{line}' once"
    return text.replace(CADDY_SITE, f"http://127.0.0.1:{port} {{").replace(
        CADDY_UPSTREAM, f"reverse_proxy 127.0.0.1:{gateway_port} {{"
    )


def test_the_shipped_caddyfile_streams_event_by_event(proxies, gateway, held_stream, loop_thread):
    upstream, release = held_stream
    gw = gateway(fleet_config({"fast": [{"name": "m", "base_url": upstream.base_url}]}))
    port = free_port()
    proxy = proxies(Caddy, shipped_caddyfile(port, gw.port), port)
    first, rest, headers = stream_through(proxy, release, loop_thread)
    assert (first, rest) == ("Hel", "lo")
    assert headers["x-octoroute-endpoint"] == "fast/m"


def test_the_shipped_caddyfile_outwaits_octoroute():
    timeout = re.search(r"response_header_timeout (\d+)s", CADDYFILE.read_text())
    assert timeout
    assert float(timeout.group(1)) > ServerConfig().request_timeout_seconds
