"""Reading a TOML file into a validated `Config`, every problem reported at once."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from octoroute.config.models import Config
from octoroute.config.topology import check_semantics
from octoroute.core.errors import ConfigError, ConfigProblem

_BOUNDS = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "finite_number": "must be a finite number",
}


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_loc(loc: tuple[int | str, ...]) -> str:
    """('models', 'fast', 1, 'weight') -> 'models.fast[1].weight'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or str(part).startswith("function-"):
            continue  # pydantic's union-member tags add noise, not location
        else:
            out += f".{part}" if out else str(part)
    return out


def _problems_from(exc: ValidationError) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        message = err["msg"].removeprefix("Value error, ")
        ctx = err.get("ctx", {})
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        elif err["type"] in _BOUNDS:
            message = _BOUNDS[err["type"]].format(**{k: _number(v) for k, v in ctx.items()})
        problems.append(ConfigProblem(format_loc(tuple(err["loc"])), message))
    return problems


def parse_config(data: Mapping[str, Any], env: Mapping[str, str]) -> Config:
    """Validate a decoded TOML document; raises `ConfigError` listing every problem."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems_from(exc)) from exc
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
