"""Every directory the cache creates is 0700 and every file 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapproxy.cache import IndexEntry, MessageCache

from .conftest import UPSTREAM


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in root.rglob("*")}


def test_dirs_0700_files_0600(tmp_path: Path, loose_umask: None) -> None:
    root = tmp_path / "cache"
    with MessageCache(root) as cache:
        for user in ("alice", "bob"):
            box = cache.for_user(UPSTREAM, user).mailbox("INBOX", 1)
            box.put(1, b"small" * 100)
            box.put(2, os.urandom(200_000))  # a value file in two new sub-directories
            box.update_index([IndexEntry(1, size=500, structure=b"s")])
        # While open: SQLite's -wal and -shm files exist now.
        seen = modes(root)
        cache.stats()
        cache.purge(user="bob")
        cache.for_user(UPSTREAM, "bob").mailbox("INBOX", 1).put(3, os.urandom(100_000))
        seen.update(modes(root))
    seen.update(modes(root))
    assert stat.S_IMODE(root.stat().st_mode) == 0o700  # created by the cache
    names = {Path(name).name for name in seen}
    assert {"users", "owner.json", "index.sqlite3", "messages", "cache.db",
            "cache.db-wal", "cache.db-shm", "index.sqlite3-wal"} <= names
    assert any(name.endswith(".val") for name in names)
    for name, mode in seen.items():
        path = root / name
        if not path.exists():
            continue
        expected = 0o700 if path.is_dir() else 0o600
        assert mode == expected, f"{name}: {oct(mode)}"


def test_an_existing_cache_dir_keeps_its_mode_but_users_is_private(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    (root / "users").mkdir(mode=0o755)
    os.chmod(root / "users", 0o755)
    with MessageCache(root) as cache:
        cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1).put(1, b"x")
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "users").stat().st_mode) == 0o700
