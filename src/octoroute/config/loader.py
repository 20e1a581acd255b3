"""Reading a TOML file into a validated `Config`, every problem reported at once."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from octoroute.config.models import Config
from octoroute.config.problems import problems_from
from octoroute.config.topology import check_semantics
from octoroute.core.errors import ConfigError, ConfigProblem


def parse_config(data: Mapping[str, Any], env: Mapping[str, str]) -> Config:
    """Validate a decoded TOML document; raises `ConfigError` listing every problem."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc)) from exc
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
