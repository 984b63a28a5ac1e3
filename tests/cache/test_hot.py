"""The hot tier: verified small messages kept in memory in front of the disk cache."""

from __future__ import annotations

import asyncio

import pytest

from imapproxy.cache import IndexEntry, MessageCache, store
from imapproxy.cache.memory import MemoryLRU
from imapproxy.cache.store import HOT_ENTRY_MAX

from .conftest import UPSTREAM, CacheFactory, value_files

HOT = 4 * 1024 * 1024
BODY = b"Subject: hot\r\n\r\n" + b"x" * 40_000  # file-backed on disk (over 32 KiB)


def test_a_read_after_a_put_comes_from_memory(make_cache: CacheFactory) -> None:
    """With the disk file damaged, the hot copy still answers (and a cache without the
    tier notices the damage): so the answer really came from memory."""
    for hot_size, expected in ((HOT, BODY), (0, None)):
        cache = make_cache(hot_size=hot_size, directory=None)
        box = cache.for_user(UPSTREAM, f"alice{hot_size}").mailbox("INBOX", 1)
        assert box.put(1, BODY)
        for path in value_files(cache.directory):
            path.write_bytes(b"garbage")
        assert box.get(1) == expected
        assert box.get_many([1, 2]) == {1: expected, 2: None}
    assert cache.stats().misses >= 1


def test_memory_hits_are_counted_and_skip_the_thread_pool(make_cache: CacheFactory) -> None:
    cache = make_cache(hot_size=HOT)
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    box.put(1, BODY)
    cache._executor.shutdown(wait=True)  # a thread-pool trip would raise now
    assert asyncio.run(box.aget_many([1])) == {1: BODY}
    assert box.in_memory([1, 2], count=False) == {1: BODY}
    assert cache.stats().hits == 1


def test_the_tier_is_bounded(make_cache: CacheFactory) -> None:
    cache = make_cache(hot_size=200_000)
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    for uid in range(1, 21):
        box.put(uid, BODY + b"%d" % uid)
    assert cache.hot.size <= 200_000
    assert box.in_memory(range(1, 21), count=False).keys() == {17, 18, 19, 20}
    big = make_cache(hot_size=64 * HOT, directory=cache.directory / "big")
    box = big.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    box.put(1, b"y" * (HOT_ENTRY_MAX + 1))  # streamed from its file, never held in memory
    assert len(big.hot) == 0


def test_forget_and_purge_drop_the_memory_copy(make_cache: CacheFactory) -> None:
    cache = make_cache(hot_size=HOT)
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    box.put(1, BODY)
    box.put(2, BODY)
    box.forget([1])
    assert box.get(1) is None
    assert box.get(2) == BODY
    assert cache.purge("alice") == 1
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    assert box.get(2) is None
    assert len(cache.hot) == 0


def test_users_do_not_share_memory_copies(make_cache: CacheFactory) -> None:
    cache = make_cache(hot_size=HOT)
    alice = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    bob = cache.for_user(UPSTREAM, "bob").mailbox("INBOX", 1)
    alice.put(1, b"for alice")
    bob.put(1, b"for bob")
    assert alice.get(1) == b"for alice" and bob.get(1) == b"for bob"
    assert cache.for_user(UPSTREAM, "carol").mailbox("INBOX", 1).get(1) is None


def test_structures_are_kept_beside_the_bytes(make_cache: CacheFactory) -> None:
    cache = make_cache(hot_size=HOT)
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    box.put(1, BODY)
    assert box.structures_in_memory([1]) == {}
    box.update_index([IndexEntry(1, len(BODY), None, b"structure-1")])
    assert box.structures_in_memory([1, 2]) == {1: b"structure-1"}
    box.put(2, BODY)  # known to the index before the tier had it: loaded with index()
    cache.hot.discard([(box.user.id, box._key(2))])
    box.update_index([IndexEntry(2, len(BODY), None, b"structure-2")])
    box.get(2)
    box.index([2])
    assert box.structures_in_memory([2]) == {2: b"structure-2"}


def test_memory_reads_keep_disk_entries_recent(make_cache: CacheFactory) -> None:
    """Reads answered from memory still count for the disk LRU (written before any
    eviction), as in test_eviction.test_lru_is_global_across_users."""
    cache: MessageCache = make_cache(max_size=2 * 1024 * 1024, hot_size=HOT)
    entry = 100_000
    alice = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    for uid in range(1, 11):
        alice.put(uid, uid.to_bytes(4, "big") * (entry // 4))
    for uid in range(11, 60):
        assert alice.get(1) is not None  # from memory every time
        alice.put(uid, uid.to_bytes(4, "big") * (entry // 4))
    assert alice.contains(1)
    assert not alice.contains(2)


def test_memory_lru_extra_and_discard_where() -> None:
    lru: MemoryLRU[tuple[str, int]] = MemoryLRU(1000)
    lru.put(("a", 1), b"x" * 10)
    lru.set_extra(("a", 1), b"s" * 5)
    lru.set_extra(("a", 2), b"ignored")  # not present: nothing
    assert lru.get(("a", 1)) == (b"x" * 10, b"s" * 5) and lru.size == 15
    lru.put(("b", 1), b"y" * 10)
    lru.discard_where(lambda key: key[0] == "a")
    assert lru.get_many([("a", 1), ("b", 1)]) == {("b", 1): (b"y" * 10, b"")}
    assert lru.size == 10


def test_a_purge_by_another_process_stops_memory_answers(
        make_cache: CacheFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """``imapproxy cache purge`` while the proxy runs: its memory copies are not served
    once it notices (owner.json gone; checked at most every OWNER_CHECK_SECONDS)."""
    monkeypatch.setattr(store, "OWNER_CHECK_SECONDS", 0.0)
    cache = make_cache(hot_size=HOT)
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    box.put(1, BODY)
    assert asyncio.run(box.aget_many([1])) == {1: BODY}
    other = make_cache(directory=cache.directory)  # the CLI's own MessageCache
    assert other.purge("alice") == 1
    assert box.in_memory([1]) == {}
    assert len(cache.hot) == 0
    assert box.get(1) is None  # and the disk starts afresh
