"""Hit/miss counters (persisted), stats(), and ``imapproxy cache stats|purge``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from imapproxy.cache import MessageCache

from .conftest import UPSTREAM, CacheFactory

REPO = Path(__file__).resolve().parents[2]


def run_imapproxy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "imapproxy", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def populate(cache: MessageCache) -> None:
    alice = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    alice.put(1, b"a" * 1000)
    alice.put(2, b"b" * 100_000)
    alice.set_index(1, size=1000)
    for uid in (1, 2, 1, 3):  # 3 hits, 1 miss
        alice.get(uid)
    bob = cache.for_user(UPSTREAM, "bob").mailbox("INBOX", 7)
    bob.put(1, b"c" * 10)
    bob.get(2)  # miss
    with bob.open(1) as stream:  # type: ignore[union-attr]  # hit
        assert stream.read() == b"c" * 10


def test_stats_counts_and_hit_ratio(cache: MessageCache) -> None:
    populate(cache)
    stats = cache.stats()
    assert (stats.entries, stats.index_entries) == (3, 1)
    assert (stats.hits, stats.misses, stats.corrupt) == (4, 2, 0)
    assert stats.hit_ratio == 4 / 6
    assert stats.bytes >= 101_010
    assert stats.max_size == 1 << 30
    users = {u.user: u for u in stats.users}
    assert (users["alice"].entries, users["alice"].hits, users["alice"].misses) == (2, 3, 1)
    assert (users["bob"].entries, users["bob"].hits, users["bob"].misses) == (1, 1, 1)
    assert users["alice"].upstream == UPSTREAM


def test_empty_cache_stats(cache: MessageCache) -> None:
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.hits, stats.hit_ratio) == (0, 0, 0, None)


def test_counters_survive_a_restart(make_cache: CacheFactory) -> None:
    first = make_cache()
    populate(first)
    first.close()
    second = make_cache()
    stats = second.stats()
    assert (stats.hits, stats.misses) == (4, 2)
    second.for_user(UPSTREAM, "alice").mailbox("INBOX", 7).get(2)
    assert second.stats().hits == 5


def test_cli_stats(make_cache: CacheFactory, cache_dir: Path, tmp_path: Path) -> None:
    cache = make_cache()
    populate(cache)
    cache.close()
    result = run_imapproxy("cache", "stats", "--cache-dir", str(cache_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"cache directory: {cache_dir}"
    assert "user caches:     2" in lines
    assert "entries:         3 messages, 1 index entries" in lines
    assert "hits:            4" in lines
    assert "misses:          2" in lines
    assert "hit ratio:       66.7%" in lines
    result = run_imapproxy("cache", "stats", "--cache-dir", str(cache_dir), "--json",
                           "--users", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["entries"], data["hits"], data["misses"]) == (3, 4, 2)
    assert data["hit_ratio"] == 4 / 6
    assert data["user_caches"] == 2
    assert sorted(u["user"] for u in data["users"]) == ["alice", "bob"]


def test_cli_stats_reads_the_config_file(
    make_cache: CacheFactory, cache_dir: Path, tmp_path: Path
) -> None:
    cache = make_cache()
    populate(cache)
    cache.close()
    config = tmp_path / "imapproxy.toml"
    config.write_text(f'[cache]\ndir = "{cache_dir}"\nmax_size = "2 GiB"\n')
    result = run_imapproxy("cache", "stats", "--config", str(config), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["entries"] == 3
    assert data["max_size"] == 2 * 1024**3


def test_cli_stats_of_a_missing_cache_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    result = run_imapproxy("cache", "stats", "--cache-dir", str(missing), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "entries:         0 messages" in result.stdout
    assert "hit ratio:       -" in result.stdout
    assert not missing.exists()


def test_cli_purge_one_user_then_all(
    make_cache: CacheFactory, cache_dir: Path, tmp_path: Path
) -> None:
    cache = make_cache()
    populate(cache)
    alice_path = cache.for_user(UPSTREAM, "alice").path
    bob_path = cache.for_user(UPSTREAM, "bob").path
    cache.close()
    result = run_imapproxy("cache", "purge", "--cache-dir", str(cache_dir), "--user", "alice",
                           cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"purged 1 user cache in {cache_dir}\n"
    assert not alice_path.exists() and bob_path.is_dir()

    result = run_imapproxy("cache", "purge", "--cache-dir", str(cache_dir), "--user", "bob",
                           "--upstream", "imaps://other.example.net", cwd=tmp_path)
    assert result.stdout == f"purged 0 user caches in {cache_dir}\n"
    assert bob_path.is_dir()
    result = run_imapproxy("cache", "purge", "--cache-dir", str(cache_dir), "--user", "bob",
                           "--upstream", "imaps://IMAP.example.org", cwd=tmp_path)
    assert result.stdout == f"purged 1 user cache in {cache_dir}\n"

    populate(make_cache())
    result = run_imapproxy("cache", "purge", "--cache-dir", str(cache_dir), cwd=tmp_path)
    assert result.stdout == f"purged 2 user caches in {cache_dir}\n"
    assert list((cache_dir / "users").iterdir()) == []


def test_cli_purge_while_a_cache_is_open(make_cache: CacheFactory, cache_dir: Path,
                                         tmp_path: Path) -> None:
    """A running proxy (here: this process) loses the purged entries and starts afresh."""
    cache = make_cache()
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    box.put(1, b"small")
    box.put(2, b"L" * 100_000)
    result = run_imapproxy("cache", "purge", "--cache-dir", str(cache_dir), "--user", "alice",
                           cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert box.get(1) is None and box.get(2) is None
    assert box.put(3, b"after the purge")
    assert box.get(3) == b"after the purge"
    assert (box.user.path / "owner.json").exists()


def test_cli_errors(tmp_path: Path) -> None:
    result = run_imapproxy("cache", cwd=tmp_path)
    assert result.returncode == 2
    result = run_imapproxy("cache", "purge", "--cache-dir", str(tmp_path), "--upstream",
                           "http://x", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("config error: --upstream: ")
    bad = tmp_path / "bad.toml"
    bad.write_text("[cache]\nmax_size = 'lots'\n")
    result = run_imapproxy("cache", "stats", "--config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("config error: cache.max_size: ")
