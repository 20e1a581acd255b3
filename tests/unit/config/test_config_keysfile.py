"""`[auth]` config: the keys file (hashes only, 0600), its problems and warnings."""

from __future__ import annotations

import os
import stat

import pytest

from octoroute.config import build_topology, parse_config
from octoroute.config.keysfile import KeyRecord, append_key, keys_file_warning, read_keys_file
from octoroute.config.topology import config_warnings
from octoroute.core.errors import ConfigError
from octoroute.fleet.clientkeys import hash_key

KEY = "ork-" + "c3" * 32
MODELS = {"fast": [{"name": "m", "base_url": "http://127.0.0.1:9/v1"}]}


def test_append_creates_the_file_owner_only_and_keeps_no_key(tmp_path):
    path = str(tmp_path / "keys.jsonl")
    append_key(path, KeyRecord("ci", hash_key(KEY), "2026-12-07T15:40:00Z"))
    append_key(path, KeyRecord("bot", hash_key(KEY + "x")))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert KEY not in (tmp_path / "keys.jsonl").read_text()
    records, problems = read_keys_file(path)
    assert problems == []
    assert [(r.name, r.digest, r.created) for r in records] == [
        ("ci", hash_key(KEY), "2026-12-07T15:40:00Z"),
        ("bot", hash_key(KEY + "x"), None),
    ]
    assert keys_file_warning(path) is None


def test_a_readable_keys_file_is_warned_about(tmp_path):
    path = tmp_path / "keys.jsonl"
    append_key(str(path), KeyRecord("ci", hash_key(KEY)))
    path.chmod(0o644)
    warning = keys_file_warning(str(path))
    assert warning is not None
    assert "chmod 600" in warning
    config = parse_config({"models": MODELS, "auth": {"enabled": True, "keys_file": str(path)}}, {})
    assert any("chmod 600" in w for w in config_warnings(config, build_topology(config, {})))


def test_bad_lines_are_problems_naming_the_line(tmp_path):
    path = tmp_path / "keys.jsonl"
    path.write_text('{"name": "ci", "sha256": "sha256:abc"}\nnot json\n\n')
    _, problems = read_keys_file(str(path))
    assert [p.split(":")[0] for p in problems] == [f"{path} line 1", f"{path} line 2"]


@pytest.mark.parametrize(
    ("auth", "env", "expected"),
    [
        ({"enabled": True}, {}, "auth: enabled with no keys"),
        ({"enabled": True, "keys": [{"name": "ci", "key_env": "CI_KEY"}]}, {}, "auth.keys[0].key_env: environment"),
        ({"enabled": True, "keys": [{"name": "ci"}]}, {}, "auth.keys[0]: 'ci' has no key_env"),
        (
            {"enabled": True, "keys": [{"name": "ci", "key_env": "A"}, {"name": "ci", "key_env": "A"}]},
            {"A": KEY},
            "auth.keys[1].name: 'ci' is already used",
        ),
    ],
)
def test_auth_problems_are_reported(auth, env, expected):
    with pytest.raises(ConfigError) as info:
        parse_config({"models": MODELS, "auth": auth}, env)
    assert any(str(p).startswith(expected) for p in info.value.problems)


def test_auth_off_needs_no_keys_and_warns_on_a_public_bind():
    config = parse_config({"models": MODELS, "server": {"host": "0.0.0.0"}}, {})
    warnings = config_warnings(config, build_topology(config, {}))
    assert any("[auth] is off" in w for w in warnings)
    loopback = parse_config({"models": MODELS}, {})
    assert not any("[auth]" in w for w in config_warnings(loopback, build_topology(loopback, {})))


def test_topology_holds_digests_of_env_and_file_keys_never_a_key(tmp_path):
    path = tmp_path / "keys.jsonl"
    append_key(str(path), KeyRecord("bot", hash_key("ork-filekey-0123456789")))
    auth = {"enabled": True, "keys_file": str(path), "keys": [{"name": "ci", "key_env": "CI_KEY", "models": ["fast"]}]}
    config = parse_config({"models": MODELS, "auth": auth}, {"CI_KEY": KEY})
    topology = build_topology(config, {"CI_KEY": KEY})
    assert [(k.name, k.digest, k.index) for k in topology.client_keys] == [
        ("ci", hash_key(KEY), 0),
        ("bot", hash_key("ork-filekey-0123456789"), None),
    ]
    assert KEY not in repr(topology)


def test_per_key_rate_limits_without_rate_limit_are_warned_about():
    auth = {"enabled": True, "keys": [{"name": "ci", "key_env": "CI_KEY", "burst": 3}]}
    config = parse_config({"models": MODELS, "auth": auth}, {"CI_KEY": KEY})
    warnings = config_warnings(config, build_topology(config, {"CI_KEY": KEY}))
    assert any("auth.keys ci set rate limits but [rate_limit] is off" in w for w in warnings)
