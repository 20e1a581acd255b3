"""Turning pydantic validation errors into `ConfigProblem`s a person can act on."""

from __future__ import annotations

import re

from pydantic import ValidationError

from octoroute.core.errors import ConfigProblem

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


_PYDANTIC_TAG = re.compile(r"^(?:function-\w+|[a-z_]+)\[.*\]$")  # union and validator tags, e.g. function-before[...]


def format_loc(loc: tuple[int | str, ...]) -> str:
    """('models', 'fast', 1, 'weight') -> 'models.fast[1].weight'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PYDANTIC_TAG.match(str(part)):
            continue  # pydantic's union-member tags add noise, not location
        else:
            out += f".{part}" if out else str(part)
    return out


def problems_from(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[ConfigProblem]:
    """pydantic's errors as config problems with key paths and plain messages."""
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
        problems.append(ConfigProblem(format_loc((*prefix, *err["loc"])), message))
    return problems
