"""Turning pydantic validation errors into `ConfigProblem`s a person can act on.

Every message is in one house style: lowercase, no trailing period, the key path
in front (`models.fast[0].weight: must be > 0`), what was found after "got",
and for an unknown key the nearest known key at the same level ("did you mean").
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from octoroute.core.errors import ConfigProblem

_BOUNDS = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "finite_number": "must be a finite number",
    "string_too_short": "must be at least {min_length} characters long",
    "string_too_long": "must be at most {max_length} characters long",
    "too_short": "must have at least {min_length} entries",
    "too_long": "must have at most {max_length} entries",
    "string_pattern_mismatch": "must match the pattern {pattern}",
}

# Wrong-type errors: what the key must hold, in TOML's words.
_TYPES = {
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be an array",
    "tuple_type": "must be an array",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
}


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def show_value(value: object) -> str:
    """A value as it would be written in TOML, short: "3000", 3000, true, an array, a table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return '"' + shown.replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


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


def _unwrap(tp: Any) -> Any:
    """The structured type inside Annotated[...] and `X | None`."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            rest = [a for a in get_args(tp) if a is not type(None)]
            structured = [a for a in rest if get_origin(a) is not None or _is_model(a)]
            tp = (structured or rest)[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def known_keys(model: type[BaseModel], path: tuple[int | str, ...]) -> list[str]:
    """The keys a table at `path` (below `model`) may hold; [] when not a fixed set."""
    tp: Any = model
    for part in path:
        tp = _unwrap(tp)
        if isinstance(part, str) and _PYDANTIC_TAG.match(part):
            continue
        if _is_model(tp):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return []
            tp = field.annotation
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        elif get_origin(tp) in (list, tuple):
            tp = get_args(tp)[0]
        else:
            return []
    tp = _unwrap(tp)
    return list(tp.model_fields) if _is_model(tp) else []


def did_you_mean(key: str, known: list[str]) -> str:
    """ "; did you mean 'port'?" when `key` is close to one of `known`, else ""."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _message(err: Any, model: type[BaseModel] | None) -> str:
    kind = err["type"]
    ctx = err.get("ctx", {})
    if kind == "extra_forbidden":
        loc = err["loc"]
        known = known_keys(model, tuple(loc[:-1])) if model is not None else []
        return "unknown key" + did_you_mean(str(loc[-1]), known)
    if kind == "missing":
        return "required key is missing"
    if kind in _BOUNDS:
        return _BOUNDS[kind].format(**{k: _number(v) for k, v in ctx.items()})
    if kind in _TYPES:
        return f"{_TYPES[kind]}, got {show_value(err['input'])}"
    if kind in ("enum", "literal_error"):
        expected = str(ctx.get("expected", "")).replace(" or ", ", ")
        return f"must be one of {expected}; got {show_value(err['input'])}"
    message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    for raw, house in (("Input should be ", "must be "), ("Input should have ", "must have ")):
        if message.startswith(raw):
            message = house + message.removeprefix(raw)
    return message[:1].lower() + message[1:].rstrip(".")


def problems_from(
    exc: ValidationError, prefix: tuple[int | str, ...] = (), model: type[BaseModel] | None = None
) -> list[ConfigProblem]:
    """pydantic's errors as config problems with key paths and house-style messages.

    `model` is the model validated at `prefix`, for "did you mean" on unknown keys."""
    return [
        ConfigProblem(format_loc((*prefix, *err["loc"])), _message(err, model)) for err in exc.errors(include_url=False)
    ]
