"""`octoroute keys create | list | revoke`: client keys in the `[auth]` keys file.

`create` prints a new random key once and appends only its SHA-256 digest
(the file is created 0600); `list` shows names, creation times and, with a
config, each key's models and limits, never a key or a digest; `revoke`
removes a name's lines.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from octoroute.config import load_config
from octoroute.config.keysfile import KeyRecord, append_key, keys_file_warning, read_keys_file
from octoroute.config.models import GROUP_NAME, ClientKeyConfig, Config
from octoroute.core.errors import ConfigError
from octoroute.fleet.clientkeys import format_key, hash_key

KEY_BYTES = 32


def keys_file_of(file: Path | None, config_path: Path | None, env: Mapping[str, str]) -> tuple[str, Config | None]:
    """The keys file: `--file`, else the config's `auth.keys_file`; and the config when one was given.

    A config that does not validate yet (`[auth] enabled` before its first key) still names its keys file."""
    try:
        config = load_config(config_path, env) if config_path is not None else None
    except ConfigError:
        if file is None and config_path is not None:
            raw = _raw_keys_file(config_path)
            if raw is not None:
                return raw, None
        raise
    if file is not None:
        return str(file), config
    if config is not None and config.auth.keys_file:
        return config.auth.keys_file, config
    raise ConfigError([])  # caught by the caller: neither says where


def _raw_keys_file(config_path: Path) -> str | None:
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    auth = data.get("auth")
    path = auth.get("keys_file") if isinstance(auth, dict) else None
    return path if isinstance(path, str) else None


def run_keys(
    action: str, name: str | None, file: Path | None, config_path: Path | None, env: Mapping[str, str], out: TextIO
) -> int:
    try:
        path, config = keys_file_of(file, config_path, env)
    except ConfigError as exc:
        if not exc.problems:
            out.write("octoroute keys: give --file PATH or --config with auth.keys_file\n")
        for problem in exc.problems:
            out.write(f"{problem}\n")
        return 1
    if action == "create":
        return _create(path, name or "", out)
    if action == "revoke":
        return _revoke(path, name or "", out)
    return _list(path, config, out)


def _create(path: str, name: str, out: TextIO) -> int:
    if not GROUP_NAME.match(name):
        out.write(f"octoroute keys: the name must match {GROUP_NAME.pattern}\n")
        return 1
    records, problems = read_keys_file(path)
    if problems:
        out.writelines(f"{p}\n" for p in problems)
        return 1
    if any(r.name == name for r in records):
        out.write(f"octoroute keys: {path} already has a key named '{name}'; revoke it first\n")
        return 1
    key = format_key(secrets.token_bytes(KEY_BYTES))
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    append_key(path, KeyRecord(name, hash_key(key), created))
    out.write(f"{key}\n")
    out.write(f"# key '{name}' added to {path} (its hash only); this is the only time it is shown\n")
    return 0


def _revoke(path: str, name: str, out: TextIO) -> int:
    records, problems = read_keys_file(path)
    if problems:
        out.writelines(f"{p}\n" for p in problems)
        return 1
    kept = [r for r in records if r.name != name]
    if len(kept) == len(records):
        out.write(f"octoroute keys: no key named '{name}' in {path}\n")
        return 1
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".keys-")  # mode 0600
    os.close(fd)
    for record in kept:
        append_key(tmp, record)
    os.replace(tmp, path)
    out.write(f"revoked '{name}' in {path}; a running gateway accepts it until restarted\n")
    return 0


def _list(path: str, config: Config | None, out: TextIO) -> int:
    records, problems = read_keys_file(path)
    out.writelines(f"{p}\n" for p in problems)
    entries = {k.name: k for k in config.auth.keys} if config is not None else {}
    out.write(f"{'name':<24} {'created':<21} permissions\n")
    for record in records:
        out.write(f"{record.name:<24} {record.created or '-':<21} {_describe(entries.get(record.name))}\n")
    if config is not None:
        for entry in config.auth.keys:
            if entry.key_env:
                out.write(f"{entry.name:<24} {'(env ' + entry.key_env + ')':<21} {_describe(entry)}\n")
    warning = keys_file_warning(path)
    if warning:
        out.write(f"warning: {warning}\n")
    return 1 if problems else 0


def _describe(entry: ClientKeyConfig | None) -> str:
    if entry is None:
        return "models * (rate_limit defaults, no budget)"
    parts = [f"models {','.join(entry.models)}"]
    for label, value in (
        ("rps", entry.requests_per_second),
        ("burst", entry.burst),
        ("tokens/min", entry.tokens_per_minute),
        ("tokens/day", entry.tokens_per_day),
        ("tokens/month", entry.tokens_per_month),
    ):
        if value is not None:
            parts.append(f"{label} {value:g}")
    return "; ".join(parts)
