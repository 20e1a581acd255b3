"""The client keys file (`auth.keys_file`): JSON lines of name, hash and creation
time, written by `octoroute keys create`, never holding a key itself.

    {"name": "ci", "sha256": "sha256:9f86d0...", "created": "2026-12-07T15:40:00Z"}
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from octoroute.config.models import Config
from octoroute.core.errors import ConfigProblem

HASH_PREFIX = "sha256:"
HEX_DIGITS = 64


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One line of the keys file."""

    name: str
    digest: str  # 'sha256:' + 64 hex digits
    created: str | None = None


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    """A configured key with its digest: from the keys file or from hashing `key_env`'s value."""

    name: str
    digest: str
    created: str | None
    index: int | None  # its [[auth.keys]] entry, None when it has none (all models, default limits)


def read_keys_file(path: str) -> tuple[list[KeyRecord], list[str]]:
    """The records of `path` and the problems of its bad lines (a missing file: no records)."""
    records: list[KeyRecord] = []
    problems: list[str] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [f"cannot read {path}: {exc.strerror}"]
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            name, digest = item["name"], item["sha256"]
            ok = isinstance(name, str) and isinstance(digest, str) and _is_digest(digest)
        except (ValueError, TypeError, KeyError):
            ok = False
        if not ok:
            problems.append(f'{path} line {n}: expected {{"name": ..., "sha256": "sha256:<64 hex>"}}')
            continue
        created = item.get("created")
        records.append(KeyRecord(name, digest, created if isinstance(created, str) else None))
    return records, problems


def _is_digest(value: str) -> bool:
    hexpart = value.removeprefix(HASH_PREFIX)
    return (
        value.startswith(HASH_PREFIX) and len(hexpart) == HEX_DIGITS and all(c in "0123456789abcdef" for c in hexpart)
    )


def append_key(path: str, record: KeyRecord) -> None:
    """Append `record` to `path`, creating it with mode 0600 (owner only)."""
    line = json.dumps({"name": record.name, "sha256": record.digest, "created": record.created}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(line)


def keys_file_warning(path: str) -> str | None:
    """A warning when the keys file can be read by its group or by everyone."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"auth.keys_file {path} is readable by group or others (mode {stat.S_IMODE(mode):o}); chmod 600 it"
    return None


def resolve_keys(config: Config, env: Mapping[str, str]) -> list[ResolvedKey]:
    """Every key `[auth]` accepts, in config order then keys-file order; assumes `auth_problems` found none."""
    auth = config.auth
    records = read_keys_file(auth.keys_file)[0] if auth.keys_file else []
    index = {k.name: i for i, k in enumerate(auth.keys)}
    out: list[ResolvedKey] = []
    for i, key in enumerate(auth.keys):
        if key.key_env:
            digest = HASH_PREFIX + sha256(env[key.key_env].encode("utf-8", "surrogatepass")).hexdigest()
            out.append(ResolvedKey(key.name, digest, None, i))
    out.extend(ResolvedKey(r.name, r.digest, r.created, index.get(r.name)) for r in records)
    return out


def auth_problems(config: Config, env: Mapping[str, str]) -> list[ConfigProblem]:
    """With `[auth] enabled`: some key exists, each `key_env` is set and non-empty, names are unique,
    and the keys file (when given) reads cleanly."""
    auth = config.auth
    if not auth.enabled:
        return []
    problems: list[ConfigProblem] = []
    names: set[str] = set()
    for i, key in enumerate(auth.keys):
        if key.name in names:
            problems.append(ConfigProblem(f"auth.keys[{i}].name", f"'{key.name}' is already used"))
        names.add(key.name)
        if key.key_env is not None and not env.get(key.key_env):
            problems.append(
                ConfigProblem(f"auth.keys[{i}].key_env", f"environment variable {key.key_env} is not set or empty")
            )
    records: list[KeyRecord] = []
    if auth.keys_file:
        records, bad = read_keys_file(auth.keys_file)
        problems.extend(ConfigProblem("auth.keys_file", message) for message in bad)
    filed = {r.name for r in records}
    for i, key in enumerate(auth.keys):
        if key.key_env is None and key.name not in filed:
            problems.append(
                ConfigProblem(f"auth.keys[{i}]", f"'{key.name}' has no key_env and no entry in auth.keys_file")
            )
    if not any(k.key_env for k in auth.keys) and not records:
        problems.append(
            ConfigProblem("auth", "enabled with no keys: add [[auth.keys]] with key_env, or run octoroute keys create")
        )
    return problems
