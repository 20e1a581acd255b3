"""Reading a TOML file into a validated `Config`, every problem reported at once."""

from __future__ import annotations

import datetime
import json
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from octoroute.config.models import Config
from octoroute.config.problems import format_loc, problems_from
from octoroute.config.topology import check_semantics
from octoroute.core.errors import ConfigError, ConfigProblem


def _dates(value: object, loc: tuple[int | str, ...] = ()) -> Iterator[tuple[int | str, ...]]:
    """Key paths of TOML dates and times: no config key takes one."""
    if isinstance(value, datetime.date | datetime.time):
        yield loc
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _dates(item, (*loc, key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _dates(item, (*loc, i))


def validate_config(data: Mapping[str, Any]) -> Config:
    """`Config` from a decoded TOML document, without coercion: `port = "3000"`,
    `max_tokens = true` or `active = "yes"` are problems, an integer where a number
    is expected is fine. Validated as JSON in strict mode, where strings are still
    accepted for enums and arrays for tuples (a TOML document is JSON plus dates)."""
    dates = [ConfigProblem(format_loc(loc), "must not be a TOML date or time") for loc in _dates(data)]
    if dates:
        raise ConfigError(dates)
    try:
        return Config.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, model=Config)) from exc


def parse_config(data: Mapping[str, Any], env: Mapping[str, str]) -> Config:
    """Validate a decoded TOML document; raises `ConfigError` listing every problem."""
    config = validate_config(data)
    problems = check_semantics(config, env)
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path, env: Mapping[str, str]) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem("", f"cannot read {path}: {exc.strerror or exc}")]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem("", f"{path} is not valid TOML: {exc}")]) from exc
    return parse_config(data, env)
