"""Reloading `octoroute serve`'s config file: on SIGHUP, and with `--watch` when the
file changes.

`--watch` polls the file's `stat` (modification time, size, inode) every
`--watch-interval` seconds, and that of the learned scorer's weights file when the
config names one (`routing.learned_weights`). Polling one file costs one system call per interval
and sees every way a file gets replaced: written in place, renamed over by an
editor or a config tool, a symlink switched (Kubernetes ConfigMaps), a network
file system. A change only starts a reload; the reload compares the loaded
config's content (`config.reload.config_digest`), so touching the file or
editing a comment applies nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from octoroute.config import Config, load_config
from octoroute.config.reload import weights_paths
from octoroute.core.errors import ConfigError
from octoroute.server.live import Live, ReloadReport

DEFAULT_WATCH_INTERVAL = 1.0
log = logging.getLogger("octoroute.config")


def bound_to(config: Config, host: str | None) -> Config:
    """`config` with `--host` in place of `server.host`, so that warnings (a public bind
    without [auth]) and reloads see the address actually bound."""
    if host is None or host == config.server.host:
        return config
    return config.model_copy(update={"server": config.server.model_copy(update={"host": host})})


@dataclass(frozen=True)
class ConfigSource:
    """Where a server's config comes from: the file, the environment its secrets are
    read from (as it was at start), and the `--host` override."""

    path: Path
    env: Mapping[str, str]
    host: str | None = None

    def load(self) -> Config:
        """The file's config, validated (`ConfigError` listing every problem)."""
        return bound_to(load_config(self.path, self.env), self.host)


async def reload_config(live: Live, source: ConfigSource, watching: Watching | None = None) -> ReloadReport:
    """Load the file again and apply it; a config with problems is refused and logged,
    and the running one stays. With `watching`, the weights files it names are watched
    from here on."""
    try:
        config = await asyncio.to_thread(source.load)
    except ConfigError as exc:
        return live.refuse([str(p) for p in exc.problems], str(source.path))
    if watching is not None:
        watching.follow(weights_paths(config))
    return await live.reload(config, source.env, str(source.path))


class FileWatch:
    """Tells whether a file changed since it was last asked (by its `stat`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen = self._signature()

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # follows symlinks: a switched link is a change
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def changed(self) -> bool:
        """True once per change. A missing file is no change: it is being replaced, or was
        removed by mistake; either way the running config stays until it is back."""
        now = self._signature()
        if now == self._seen:
            return False
        self._seen = now
        return now is not None


def reload_on_sighup() -> asyncio.Event:
    """An event SIGHUP sets, installed before the server starts, so a SIGHUP at any
    point after this never kills the process (its default action)."""
    requested = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, requested.set)
    return requested


@dataclass(frozen=True)
class Watching:
    """`--watch`: the file's watch (made before the file is first read, so no change is
    missed), the seconds between looks, and the watch of the learned scorer's weights
    file the running config names (`routing.learned_weights`): retrained in place, it
    reloads like an edited config."""

    watch: FileWatch
    interval: float = DEFAULT_WATCH_INTERVAL
    _weights: dict[str, FileWatch] = field(default_factory=dict)

    def follow(self, weights_paths: Sequence[str]) -> None:
        """Watch the weights files a just-loaded config names, from now: called after the
        config is read and before a gateway loads the files, so a change after this is
        seen (at worst it starts one reload that finds nothing new)."""
        for path in set(self._weights) - set(weights_paths):
            del self._weights[path]
        for path in weights_paths:
            if path not in self._weights:
                self._weights[path] = FileWatch(Path(path))

    def changed(self) -> bool:
        """Did the config file, or a weights file it names, change since the last look?"""
        changed = self.watch.changed()
        for watch in self._weights.values():
            changed = watch.changed() or changed
        return changed


async def serve_reloads(live: Live, source: ConfigSource, requested: asyncio.Event, watching: Watching | None) -> None:
    """Reload whenever `requested` is set (SIGHUP) and, with `watching`, whenever the
    file changes. Runs until cancelled; reloads run one at a time, and requests that
    arrive during one are served by a single reload after it."""
    watcher = None
    if watching is not None:
        watcher = asyncio.create_task(_watch(watching, requested), name="octoroute-watch")
    try:
        while True:
            await requested.wait()
            requested.clear()
            try:
                await reload_config(live, source, watching)
            except Exception:  # a background task's outermost handler: the server must keep serving
                log.exception("config reload of %s failed; the running config stays", source.path)
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def _watch(watching: Watching, requested: asyncio.Event) -> None:
    while True:
        await asyncio.sleep(watching.interval)  # polling the file is the mechanism, not a synchronisation
        if watching.changed():
            requested.set()
