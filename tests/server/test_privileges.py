"""Start-up permission checks of the cache and key directories."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pytest

from imapproxy.config import Config, ListenerConfig
from imapproxy.server.privileges import (
    UnsafePermissions,
    check_directory,
    check_startup_permissions,
    drop_privileges,
)


def test_world_writable_directory_is_refused(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o777)
    with pytest.raises(UnsafePermissions) as info:
        check_directory(tmp_path, "cache directory")
    assert info.value.filename == str(tmp_path)
    assert "writable by everyone" in str(info.value.strerror)


def test_group_readable_directory_is_a_warning(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    os.chmod(tmp_path, 0o750)
    with caplog.at_level(logging.WARNING):
        check_directory(tmp_path, "key directory")
    assert "readable by its group" in caplog.text


def test_private_directory_is_fine(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    os.chmod(tmp_path, 0o700)
    with caplog.at_level(logging.WARNING):
        check_directory(tmp_path, "cache directory")
        check_directory(tmp_path / "missing", "cache directory")  # created later, safely
    assert caplog.text == ""


def test_startup_checks_the_key_directory_too(tmp_path: Path) -> None:
    cache, keys = tmp_path / "cache", tmp_path / "keys"
    cache.mkdir(mode=0o700)
    keys.mkdir()
    os.chmod(keys, 0o777)
    config = dataclasses.replace(Config(), cache_dir=cache, listeners=(ListenerConfig(
        tls="implicit", cert_file=keys / "c.pem", key_file=keys / "k.pem"),))
    with pytest.raises(UnsafePermissions, match="key directory"):
        check_startup_permissions(config)
    os.chmod(keys, 0o700)
    check_startup_permissions(config)


def test_unknown_user_or_group_names_the_setting() -> None:
    with pytest.raises(PermissionError) as info:
        drop_privileges("no-such-user-xyz", None)
    assert info.value.filename == "server.user"
    with pytest.raises(PermissionError) as info:
        drop_privileges("root", "no-such-group-xyz")
    assert info.value.filename == "server.group"
