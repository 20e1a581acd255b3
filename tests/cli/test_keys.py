"""`octoroute keys` and `octoroute check` for [auth], as a user runs them (real processes)."""

from __future__ import annotations

import os
import stat

from tests.cli.test_cli import octoroute

from octoroute.config.keysfile import read_keys_file
from octoroute.fleet.clientkeys import ClientKey, KeyRing, hash_key

CONFIG = """
[server]
host = "{host}"
[[models.fast]]
name = "m"
base_url = "http://127.0.0.1:1/v1"
[routing]
strategy = "rule"
[auth]
enabled = {enabled}
keys_file = "{keys}"
[[auth.keys]]
name = "ci"
models = ["fast"]
tokens_per_day = 100000
"""


def write_config(tmp_path, *, enabled: bool = True, host: str = "127.0.0.1"):
    path = tmp_path / "octoroute.toml"
    keys = tmp_path / "keys.jsonl"
    path.write_text(CONFIG.format(host=host, enabled=str(enabled).lower(), keys=keys))
    return path, keys


def test_create_prints_the_key_once_and_stores_only_its_hash(tmp_path):
    config, keys = write_config(tmp_path)
    created = octoroute("keys", "create", "ci", "--config", str(config))
    assert created.returncode == 0, created.stdout + created.stderr
    key = created.stdout.splitlines()[0]
    assert key.startswith("ork-")
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o600
    assert key not in keys.read_text()
    records, _ = read_keys_file(str(keys))
    found = KeyRing([ClientKey(r.name, r.digest) for r in records]).verify(key)
    assert found is not None
    assert found.name == "ci"
    assert hash_key(key) in keys.read_text()

    again = octoroute("keys", "create", "ci", "--file", str(keys))
    assert again.returncode == 1
    assert "already has a key named 'ci'" in again.stdout

    listed = octoroute("keys", "list", "--config", str(config))
    assert listed.returncode == 0, listed.stdout
    assert "ci" in listed.stdout
    assert "models fast; tokens/day 100000" in listed.stdout
    assert key not in listed.stdout
    assert "sha256" not in listed.stdout

    checked = octoroute("check", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_revoke_removes_the_name_and_keeps_the_file_private(tmp_path):
    _, keys = write_config(tmp_path)
    for name in ("a", "b"):
        assert octoroute("keys", "create", name, "--file", str(keys)).returncode == 0
    revoked = octoroute("keys", "revoke", "a", "--file", str(keys))
    assert revoked.returncode == 0, revoked.stdout
    assert [r.name for r in read_keys_file(str(keys))[0]] == ["b"]
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o600
    assert octoroute("keys", "revoke", "a", "--file", str(keys)).returncode == 1


def test_check_warns_on_a_public_bind_without_auth_and_on_a_readable_keys_file(tmp_path):
    config, _ = write_config(tmp_path, enabled=False, host="0.0.0.0")
    checked = octoroute("check", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[auth] is off" in checked.stdout

    config, keys = write_config(tmp_path)
    assert octoroute("keys", "create", "ci", "--file", str(keys)).returncode == 0
    keys.chmod(0o644)
    checked = octoroute("check", str(config))
    assert "chmod 600" in checked.stdout


def test_check_refuses_credentials_in_a_base_url(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[models.fast]]\nname = "m"\nbase_url = "http://admin:hunter22@127.0.0.1:1/v1"\n')
    checked = octoroute("check", str(path))
    assert checked.returncode == 1
    assert "api_key_env" in checked.stderr
    assert "hunter22" not in checked.stdout + checked.stderr
