"""The learned scorer's weights file (`routing.learned_weights`, and the bundled one):
one JSON object, written by `octoroute train` or `training/train_scorer.py`.

    {"format": "octoroute-learned-scorer/1", "version": "trained-2026-12-07-3f2a9c1e",
     "bias": -1.2, "dense": [9 numbers], "dense_means": [9 numbers],
     "terms": {"word": 0.01, ...}, "reference": [at least 2 numbers]}

Format 1 has exactly `DENSE_FEATURES` dense weights (the counts and densities
`routing.learned` computes, in its `DENSE_NAMES` order). The schema lives here,
beside the keys file's, so a config check reports a bad file as a config
problem; `routing.learned` builds the model from the validated document.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from octoroute.config.problems import format_loc

FORMAT: Final = "octoroute-learned-scorer/1"
DENSE_FEATURES: Final = 9
MAX_BYTES: Final = 64 * 1024 * 1024  # a weights file with every word term is a few MB

Weight = Annotated[float, Field(allow_inf_nan=False)]


class WeightsDocument(BaseModel):
    """A parsed, validated weights file."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    format: Literal["octoroute-learned-scorer/1"]
    version: str = Field(min_length=1, max_length=200)
    bias: Weight
    dense: tuple[Weight, ...] = Field(min_length=DENSE_FEATURES, max_length=DENSE_FEATURES)
    dense_means: tuple[Weight, ...] = Field(min_length=DENSE_FEATURES, max_length=DENSE_FEATURES)
    terms: dict[str, Weight]
    reference: tuple[Weight, ...] = Field(min_length=2)

    @model_validator(mode="after")
    def _spread(self) -> WeightsDocument:
        if max(self.reference) <= min(self.reference):
            raise ValueError("reference must hold at least two different raw scores")
        return self


def parse_weights(data: bytes) -> WeightsDocument:
    """The validated document; raises ValueError saying what is wrong, in one line."""
    try:
        return WeightsDocument.model_validate_json(data, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = format_loc(first["loc"]) if first["loc"] else "the file"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        if first["type"] == "json_invalid":
            raise ValueError(f"not JSON: {first['msg']}") from None
        raise ValueError(f"not a weights file of format {FORMAT}: {where}: {first['msg']}{more}") from None


def read_weights_file(path: str) -> tuple[bytes, WeightsDocument]:
    """The file's bytes and its validated document; raises ValueError saying why not."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise ValueError(f"{path} is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        return data, parse_weights(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def weights_digest(path: str) -> str:
    """A fingerprint of the file's content ('' when unreadable): part of the config
    digest, so a retrained file under the same name is a changed config."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return ""
