"""Fixtures for the message cache tests: a MessageCache in a fresh directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imapproxy.cache import MessageCache
from imapproxy.config import CacheConfig

UPSTREAM = "imap.example.org:993"

CacheFactory = Callable[..., MessageCache]


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def make_cache(cache_dir: Path) -> Iterator[CacheFactory]:
    """``make_cache(max_size=...)``: a MessageCache on ``cache_dir`` (closed at the end).
    Without the hot tier unless ``hot_size`` is given: these tests are about the disk."""
    made: list[MessageCache] = []

    def make(max_size: int = 1 << 30, directory: Path | None = None,
             hot_size: int = 0) -> MessageCache:
        cache = MessageCache(directory or cache_dir,
                             CacheConfig(max_size=max_size, hot_size=hot_size))
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


@pytest.fixture
def cache(make_cache: CacheFactory) -> MessageCache:
    return make_cache()


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def value_files(path: Path) -> list[Path]:
    """diskcache's value files (entries of 32 KiB and more) under ``path``."""
    return sorted(path.rglob("*.val"))
