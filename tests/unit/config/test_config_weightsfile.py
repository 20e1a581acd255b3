"""`routing.learned_weights`: the file is checked with the config, and its content
is part of the config's digest (retrained in place, a reload applies it)."""

from __future__ import annotations

from importlib import resources

import orjson
import pytest

from octoroute.config import parse_config
from octoroute.config.reload import config_digest
from octoroute.config.weightsfile import MAX_BYTES, read_weights_file
from octoroute.core.errors import ConfigError

MODELS = {"fast": [{"name": "m", "base_url": "http://127.0.0.1:9/v1"}]}
BUNDLED = resources.files("octoroute.routing").joinpath("learned_weights.json").read_bytes()


def config(path: str) -> dict[str, object]:
    return {"models": MODELS, "routing": {"learned_weights": path}}


def test_a_valid_file_loads_with_the_config(tmp_path):
    path = tmp_path / "w.json"
    path.write_bytes(BUNDLED)
    loaded = parse_config(config(str(path)), {})
    assert loaded.routing.learned_weights == str(path)
    assert read_weights_file(str(path))[1].version == orjson.loads(BUNDLED)["version"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "cannot read"),
        (b"", "not JSON"),
        (b'{"format": "octoroute-learned-scorer/2"}', "format: Input should be 'octoroute-learned-scorer/1'"),
        (orjson.dumps({**orjson.loads(BUNDLED), "reference": [0.5, 0.5]}), "two different raw scores"),
    ],
)
def test_a_bad_file_is_a_problem_at_its_key(tmp_path, content, fragment):
    path = tmp_path / "w.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        parse_config(config(str(path)), {})
    [problem] = caught.value.problems
    assert problem.path == "routing.learned_weights"
    assert fragment in problem.message
    assert str(path) in problem.message


def test_an_oversized_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "w.json"
    with path.open("wb") as handle:
        handle.truncate(MAX_BYTES + 10)
    with pytest.raises(ValueError, match="larger than 64 MB"):
        read_weights_file(str(path))


def test_an_empty_path_is_refused():
    with pytest.raises(ConfigError) as caught:
        parse_config(config(""), {})
    assert caught.value.problems[0].path == "routing.learned_weights"


def test_retraining_in_place_changes_the_digest(tmp_path):
    path = tmp_path / "w.json"
    path.write_bytes(BUNDLED)
    before = config_digest(parse_config(config(str(path)), {}))
    assert config_digest(parse_config(config(str(path)), {})) == before
    path.write_bytes(orjson.dumps({**orjson.loads(BUNDLED), "version": "retrained"}))
    assert config_digest(parse_config(config(str(path)), {})) != before
