"""`serve --watch`'s view of the config file (`cli.reload.FileWatch`), on a real file."""

from __future__ import annotations

import os
from pathlib import Path

from octoroute.cli.reload import FileWatch, Watching


def test_a_change_is_seen_once_whichever_way_the_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "octoroute.toml"
    path.write_text("a = 1\n")
    watch = FileWatch(path)
    assert not watch.changed()

    path.write_text("a = 22\n")  # in place
    assert watch.changed()
    assert not watch.changed()

    new = tmp_path / "new.toml"  # renamed over it, as editors and config tools do
    new.write_text("a = 3\n")
    os.replace(new, path)
    assert watch.changed()

    target = tmp_path / "v2.toml"  # a switched symlink, as a Kubernetes ConfigMap does
    target.write_text("a = 4444\n")
    link = tmp_path / "link.toml"
    link.symlink_to(path)
    linked = FileWatch(link)
    link.unlink()
    link.symlink_to(target)
    assert linked.changed()


def test_a_missing_file_is_no_change_until_it_is_back(tmp_path: Path) -> None:
    path = tmp_path / "octoroute.toml"
    path.write_text("a = 1\n")
    watch = FileWatch(path)
    path.unlink()
    assert not watch.changed()
    path.write_text("a = 2\n")
    assert watch.changed()


def test_touching_the_file_is_a_change_the_reload_then_finds_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "octoroute.toml"
    path.write_text("a = 1\n")
    watch = FileWatch(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert watch.changed()


def test_watching_follows_the_weights_files_the_loaded_config_names(tmp_path: Path) -> None:
    config, live, shadow = tmp_path / "octoroute.toml", tmp_path / "live.json", tmp_path / "shadow.json"
    for path in (config, live, shadow):
        path.write_text("1")
    watching = Watching(FileWatch(config))
    watching.follow([str(live)])
    assert not watching.changed()
    live.write_text("22")  # retrained in place
    assert watching.changed()
    assert not watching.changed()
    shadow.write_text("333")  # not named yet: not watched
    assert not watching.changed()
    watching.follow([str(shadow)])  # a reload named the shadow file instead
    live.write_text("4444")
    assert not watching.changed()
    shadow.write_text("55555")
    assert watching.changed()
