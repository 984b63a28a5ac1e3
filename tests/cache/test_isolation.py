"""Per-user isolation: no lookup of one user can ever be answered with another user's bytes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from imapproxy.cache import CacheIsolationError, IndexEntry, MessageCache, user_cache_id

from .conftest import UPSTREAM, CacheFactory

ALICE = b"alice's message, 20 KB " * 1000
BOB = b"bob's message, same mailbox and UID " * 1000
ALICE_LARGE = b"A" * 200_000
BOB_LARGE = b"B" * 200_000


def fill(cache: MessageCache) -> None:
    for user, small, large in (("alice", ALICE, ALICE_LARGE), ("bob", BOB, BOB_LARGE)):
        box = cache.for_user(UPSTREAM, user).mailbox("INBOX", 42)
        assert box.put(1, small)
        assert box.put(2, large)
        box.set_index(1, size=len(small), structure=user.encode())


def test_same_mailbox_and_uid_different_users(cache: MessageCache) -> None:
    fill(cache)
    alice = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 42)
    bob = cache.for_user(UPSTREAM, "bob").mailbox("INBOX", 42)
    assert alice.get(1) == ALICE and bob.get(1) == BOB
    assert alice.get(2) == ALICE_LARGE and bob.get(2) == BOB_LARGE
    assert alice.index()[1] == IndexEntry(1, len(ALICE), None, b"alice")
    assert bob.index()[1] == IndexEntry(1, len(BOB), None, b"bob")
    # A user with nothing cached gets nothing, whatever the others have.
    carol = cache.for_user(UPSTREAM, "carol").mailbox("INBOX", 42)
    assert carol.get(1) is None and carol.get(2) is None and carol.index() == {}


def test_same_user_name_on_another_upstream_is_another_cache(cache: MessageCache) -> None:
    cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 42).put(1, ALICE)
    other = cache.for_user("other.example.net:993", "alice").mailbox("INBOX", 42)
    assert other.get(1) is None


def test_user_names_are_exact(cache: MessageCache) -> None:
    """"Alice" is not "alice", and no name is a prefix trick away from another."""
    cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 42).put(1, ALICE)
    for name in ("Alice", "alice ", "alic", "alice\x00", b"alice\xff"):
        assert cache.for_user(UPSTREAM, name).mailbox("INBOX", 42).get(1) is None
    # (upstream, user) pairs that concatenate alike are different caches.
    assert user_cache_id("a:1", "b") != user_cache_id("a:", "1b")


def test_each_user_has_its_own_directory_named_by_a_hash(cache: MessageCache) -> None:
    fill(cache)
    alice = cache.for_user(UPSTREAM, "alice")
    bob = cache.for_user(UPSTREAM, "bob")
    assert alice.path != bob.path
    assert alice.path.parent == bob.path.parent == cache.directory / "users"
    assert {p.name for p in (cache.directory / "users").iterdir()} == {alice.id, bob.id}
    for user in (alice, bob):
        assert len(user.id) == 32 and int(user.id, 16) >= 0
        assert user.id == user_cache_id(UPSTREAM, user.user)
        assert "alice" not in user.id and "bob" not in user.id
        owner = json.loads((user.path / "owner.json").read_text())
        assert (owner["upstream"], owner["user"]) == (UPSTREAM, user.user.decode())
    # Each directory holds only its user's bytes.
    alice_bytes = b"".join(p.read_bytes() for p in alice.path.rglob("*.val"))
    bob_bytes = b"".join(p.read_bytes() for p in bob.path.rglob("*.val"))
    assert ALICE_LARGE in alice_bytes and BOB_LARGE not in alice_bytes
    assert BOB_LARGE in bob_bytes and ALICE_LARGE not in bob_bytes


def test_purge_of_one_user_leaves_the_other(make_cache: CacheFactory) -> None:
    cache = make_cache()
    fill(cache)
    alice_path = cache.for_user(UPSTREAM, "alice").path
    bob_path = cache.for_user(UPSTREAM, "bob").path
    assert cache.purge(user="alice") == 1
    assert not alice_path.exists()
    assert bob_path.is_dir()
    alice = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 42)
    bob = cache.for_user(UPSTREAM, "bob").mailbox("INBOX", 42)
    assert alice.get(1) is None and alice.get(2) is None and alice.index() == {}
    assert bob.get(1) == BOB and bob.get(2) == BOB_LARGE
    # The same, seen by a fresh process.
    cache.close()
    again = make_cache()
    assert again.for_user(UPSTREAM, "bob").mailbox("INBOX", 42).get(2) == BOB_LARGE
    assert again.for_user(UPSTREAM, "alice").mailbox("INBOX", 42).get(2) is None


def test_purge_by_upstream_and_all(cache: MessageCache) -> None:
    fill(cache)
    cache.for_user("other:143", "alice").mailbox("INBOX", 1).put(1, b"x")
    assert cache.purge(user="alice", upstream="other:143") == 1
    assert cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 42).get(1) == ALICE
    assert cache.purge(upstream=UPSTREAM) == 2
    assert cache.for_user(UPSTREAM, "bob").mailbox("INBOX", 42).get(1) is None
    fill(cache)
    assert cache.purge() == 2
    assert [p for p in (cache.directory / "users").iterdir()] == []


def test_purge_finds_a_directory_without_owner_file_by_its_name(cache: MessageCache) -> None:
    fill(cache)
    alice = cache.for_user(UPSTREAM, "alice")
    cache.close()
    (alice.path / "owner.json").unlink()
    with MessageCache(cache.directory) as fresh:
        assert fresh.purge(user="alice") == 0  # no owner.json: not found by name alone
        assert fresh.purge(user="alice", upstream=UPSTREAM) == 1
        assert not alice.path.exists()


def test_another_users_files_never_verify(make_cache: CacheFactory) -> None:
    """Even if a bug (or an operator) put alice's store into bob's directory, bob's lookups
    find entries whose digest does not cover bob's cache: misses, never alice's bytes."""
    cache = make_cache()
    fill(cache)
    alice_path = cache.for_user(UPSTREAM, "alice").path
    bob_path = cache.for_user(UPSTREAM, "bob").path
    cache.close()
    shutil.rmtree(bob_path / "messages")
    shutil.copytree(alice_path / "messages", bob_path / "messages")
    again = make_cache()
    bob = again.for_user(UPSTREAM, "bob").mailbox("INBOX", 42)
    assert bob.get(1) is None
    assert bob.open(2) is None
    assert again.stats().corrupt == 2


def test_owner_mismatch_is_refused(make_cache: CacheFactory) -> None:
    cache = make_cache()
    alice = cache.for_user(UPSTREAM, "alice")
    alice.mailbox("INBOX", 42).put(1, ALICE)
    cache.close()
    owner = alice.path / "owner.json"
    owner.write_text(json.dumps({"version": 1, "upstream": UPSTREAM, "user": "mallory"}))
    again = make_cache()
    with pytest.raises(CacheIsolationError):
        again.for_user(UPSTREAM, "alice")


def test_dir_names_do_not_contain_user_names(cache: MessageCache, cache_dir: Path) -> None:
    fill(cache)
    for path in cache_dir.rglob("*"):
        assert "alice" not in path.name and "bob" not in path.name
