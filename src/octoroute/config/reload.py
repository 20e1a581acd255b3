"""What a config reload may change in a running gateway, and what needs a restart.

Pure: two validated `Config`s in, data out. The listening socket (`server.host`,
`server.port`), the app's body limit (`server.max_body_bytes`), the client
timeouts every connection is built with (`limits.client_*`), and the sections
whose state is built once into the middlewares, the metrics registry and the
shared-state store (`[auth]`, `[rate_limit]`, `[observability]`, `[state]`)
keep their running values; a
reload that changes them says so ("needs restart") and applies the rest.

    applied = runnable(running, loaded)   # loaded, with the restart-only values of running
    for key in needs_restart(running, loaded): log.warning("%s needs a restart", key)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from octoroute.config.models import Config
from octoroute.config.weightsfile import weights_digest

RESTART_SECTIONS = ("auth", "rate_limit", "observability", "responses", "state")
RESTART_KEYS = {
    "server": ("host", "port", "max_body_bytes"),
    "limits": ("client_header_timeout_seconds", "client_body_timeout_seconds", "client_keepalive_timeout_seconds"),
}


def config_digest(config: Config) -> str:
    """A short fingerprint of a config's content (not its comments or layout): equal
    configs give equal digests in every worker and after every reload. The learned
    scorer's weights files count as content: retrained in place, they change the digest."""
    content = config.model_dump_json() + "".join(map(weights_digest, weights_paths(config)))
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def weights_paths(config: Config) -> tuple[str, ...]:
    """The weights files a config names: the live model's, then the shadow candidate's."""
    shadow = config.routing.shadow
    paths = (config.routing.learned_weights, shadow.learned_weights if shadow else None)
    return tuple(path for path in paths if path is not None)


def needs_restart(running: Config, loaded: Config) -> tuple[str, ...]:
    """Key paths `loaded` changes that a reload cannot apply, in file order."""
    paths: list[str] = []
    for section, keys in RESTART_KEYS.items():
        old, new = getattr(running, section), getattr(loaded, section)
        paths.extend(f"{section}.{key}" for key in keys if getattr(old, key) != getattr(new, key))
    for section in RESTART_SECTIONS:
        paths.extend(
            _differences(
                section,
                getattr(running, section).model_dump(mode="json"),
                getattr(loaded, section).model_dump(mode="json"),
            )
        )
    return tuple(paths)


def runnable(running: Config, loaded: Config) -> Config:
    """`loaded` with every restart-only value as `running` has it: the config a reload applies."""
    update: dict[str, object] = {section: getattr(running, section) for section in RESTART_SECTIONS}
    for section, keys in RESTART_KEYS.items():
        old = getattr(running, section)
        update[section] = getattr(loaded, section).model_copy(update={key: getattr(old, key) for key in keys})
    return loaded.model_copy(update=update)


def _differences(prefix: str, old: object, new: object) -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        found: list[str] = []
        for key in (*old, *(k for k in new if k not in old)):
            found.extend(_differences(f"{prefix}.{key}", old.get(key), new.get(key)))
        return found
    return [] if old == new else [prefix]
