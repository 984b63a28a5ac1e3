"""The size bound: least recently used entries go first, across users."""

from __future__ import annotations

import os

from imapproxy.cache import IndexEntry, MessageCache

from .conftest import UPSTREAM, CacheFactory

MAX = 2 * 1024 * 1024
ENTRY = 100_000  # file-backed (over 32 KiB)


def payload(n: int) -> bytes:
    return n.to_bytes(4, "big") * (ENTRY // 4)


def test_total_stays_under_max_size(make_cache: CacheFactory) -> None:
    cache = make_cache(max_size=MAX)
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    for uid in range(1, 101):  # 10 MB into a 2 MB cache
        assert box.put(uid, payload(uid))
        assert cache.total_size() <= MAX
    present = [uid for uid in range(1, 101) if box.contains(uid)]
    assert 15 <= len(present) <= MAX // ENTRY
    assert present == list(range(101 - len(present), 101))  # the most recent ones
    assert cache.stats().bytes <= MAX


def test_a_recently_read_entry_survives(make_cache: CacheFactory) -> None:
    cache = make_cache(max_size=MAX)
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    for uid in range(1, 11):
        box.put(uid, payload(uid))
    for uid in range(11, 60):
        assert box.get(1) == payload(1)  # keep reading UID 1
        box.put(uid, payload(uid))
    assert box.get(1) == payload(1)
    assert not box.contains(2)
    assert cache.stats().bytes <= MAX


def test_a_batch_read_keeps_its_entries_recent(make_cache: CacheFactory) -> None:
    """get_many (one SELECT and one UPDATE per batch) does the LRU bookkeeping of get."""
    cache = make_cache(max_size=MAX)
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    for uid in range(1, 11):
        box.put(uid, payload(uid))
    for uid in range(11, 60):
        got = box.get_many([1, 3, 999])  # small and file-backed entries, and a missing one
        assert got == {1: payload(1), 3: payload(3), 999: None}
        box.put(uid, payload(uid))
    assert box.get_many([1, 3]) == {1: payload(1), 3: payload(3)}
    assert not box.contains(2) and not box.contains(4)
    assert cache.stats().bytes <= MAX


def test_lru_is_global_across_users(make_cache: CacheFactory) -> None:
    cache = make_cache(max_size=MAX)
    alice = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    bob = cache.for_user(UPSTREAM, "bob").mailbox("INBOX", 1)
    for uid in range(1, 6):
        alice.put(uid, payload(uid))  # old
    for uid in range(1, 6):
        bob.put(uid, payload(uid))  # newer
    alice.get(5)  # newest of all
    for uid in range(100, 115):  # carol pushes the cache over its bound
        cache.for_user(UPSTREAM, "carol").mailbox("INBOX", 1).put(uid, payload(uid))
    assert not any(alice.contains(uid) for uid in range(1, 5))
    assert alice.contains(5)
    assert cache.stats().bytes <= MAX
    # Bob's entries went only after all of Alice's older ones.
    bob_left = [uid for uid in range(1, 6) if bob.contains(uid)]
    assert bob_left == list(range(6 - len(bob_left), 6))


def test_entries_of_users_not_open_in_this_process_are_evicted(make_cache: CacheFactory) -> None:
    first = make_cache(max_size=MAX)
    old = first.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    for uid in range(1, 11):
        old.put(uid, payload(uid))
    first.close()
    second = make_cache(max_size=MAX)
    box = second.for_user(UPSTREAM, "bob").mailbox("INBOX", 1)
    for uid in range(1, 15):
        box.put(uid, payload(uid))
    stats = second.stats()
    assert stats.bytes <= MAX
    by_user = {u.user: u for u in stats.users}
    assert by_user["alice"].entries < 10
    assert by_user["bob"].entries == 14


def test_small_entries_count_too(make_cache: CacheFactory) -> None:
    cache = make_cache(max_size=MAX)
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    for uid in range(1, 400):  # 8 MB of 20 KB entries, all inside SQLite
        box.put(uid, os.urandom(20_000))
    assert cache.stats().bytes <= MAX
    assert box.contains(399) and not box.contains(1)


def test_index_rows_of_the_least_recently_used_mailbox_go_when_needed(
    make_cache: CacheFactory,
) -> None:
    cache = make_cache(max_size=MAX)
    user = cache.for_user(UPSTREAM, "alice")
    old = user.mailbox("Old", 1)
    old.update_index(IndexEntry(uid, size=1, structure=os.urandom(2000)) for uid in range(1, 300))
    assert len(old.index()) == 299
    box = user.mailbox("INBOX", 1)
    for uid in range(1, 40):
        box.put(uid, payload(uid))
    assert cache.stats().bytes <= MAX
    assert old.index() == {}
    assert user.mailboxes()[b"Old"] == 1  # UIDVALIDITY is kept


def test_explicit_evict(cache: MessageCache) -> None:
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 1)
    for uid in range(1, 6):
        box.put(uid, payload(uid))
    assert cache.evict(0) == 5
    assert not any(box.contains(uid) for uid in range(1, 6))
    assert cache.stats().users[0].entries == 0
