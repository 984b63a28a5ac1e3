"""Round trips, persistence across restarts, UIDVALIDITY, the index and the async facade."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from imapproxy.cache import IndexEntry, MessageCache, MessageStream, mailbox_key
from imapproxy.config import CacheConfig, Config, UpstreamConfig

from .conftest import UPSTREAM, CacheFactory, value_files

SMALL = b"From: a@example.org\r\nSubject: hi\r\n\r\n" + b"x" * 20_000
LARGE = os.urandom(5 * 1024 * 1024)


def test_round_trip_small_and_large(cache: MessageCache) -> None:
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    assert box.put(1, SMALL)
    assert box.put(2, LARGE)
    assert box.get(1) == SMALL
    assert box.get_bytes(2) == LARGE
    assert box.get(3) is None
    assert box.contains(1) and box.contains(2) and not box.contains(3)
    # The small one lives in SQLite, the large one in a file of its own.
    assert len(value_files(cache.directory)) == 1


@pytest.mark.parametrize("size", [0, 1, 32 * 1024 - 49, 32 * 1024 - 48, 32 * 1024, 100_000])
def test_sizes_around_the_file_threshold(cache: MessageCache, size: int) -> None:
    data = os.urandom(size)
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    assert box.put(9, data)
    assert box.get(9) == data
    stream = box.open(9)
    assert stream is not None
    with stream:
        assert stream.size == size
        assert stream.read() == data


def test_put_accepts_bytearray_and_memoryview(cache: MessageCache) -> None:
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    assert box.put(1, bytearray(SMALL))
    assert box.put(2, memoryview(LARGE))
    assert box.get(1) == SMALL
    assert box.get(2) == LARGE


def test_put_replaces(cache: MessageCache) -> None:
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    box.put(1, LARGE)
    box.put(1, SMALL)
    assert box.get(1) == SMALL
    assert value_files(cache.directory) == []


def test_open_streams_large_entries_from_the_file(cache: MessageCache) -> None:
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    box.put(2, LARGE)
    stream = box.open(2)
    assert isinstance(stream, MessageStream)
    with stream:
        assert stream.is_file
        assert stream.size == len(LARGE)
        chunks = list(stream.chunks(1 << 20))
        assert all(len(c) <= 1 << 20 for c in chunks)
        assert b"".join(chunks) == LARGE
        assert stream.read() == b""  # never reads into the trailer
        stream.seek(len(LARGE) - 10)
        buffer = bytearray(100)
        assert stream.readinto(buffer) == 10
        assert bytes(buffer[:10]) == LARGE[-10:]
    assert stream.closed
    assert box.open(3) is None


def test_open_stream_survives_eviction_of_the_entry(cache: MessageCache) -> None:
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    box.put(2, LARGE)
    stream = box.open(2)
    assert stream is not None
    with stream:
        box.forget([2])
        assert value_files(cache.directory) == []
        assert stream.read() == LARGE


def test_entries_survive_a_restart(make_cache: CacheFactory) -> None:
    first = make_cache()
    box = first.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    box.put(1, SMALL)
    box.put(2, LARGE)
    box.set_index(1, size=len(SMALL), internaldate="01-Jan-2024 10:00:00 +0000",
                  structure=b"\x01tree")
    first.close()

    second = make_cache()
    box = second.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    assert box.get(1) == SMALL
    assert box.get(2) == LARGE
    assert box.index()[1] == IndexEntry(1, len(SMALL), "01-Jan-2024 10:00:00 +0000",
                                        b"\x01tree")


def test_uidvalidity_change_drops_the_mailbox(cache: MessageCache) -> None:
    user = cache.for_user(UPSTREAM, "alice")
    box = user.mailbox("INBOX", 7)
    box.put(1, SMALL)
    box.put(2, LARGE)
    box.set_index(1, size=len(SMALL))
    other = user.mailbox("Archive", 3)
    other.put(1, b"archived")

    # Same UIDVALIDITY again (a new session): everything stays.
    again = user.mailbox("INBOX", 7)
    assert again.get(1) == SMALL and again.get(2) == LARGE

    changed = user.mailbox("INBOX", 8)
    assert changed.get(1) is None and changed.get(2) is None
    assert changed.index() == {}
    assert value_files(cache.directory) == []
    # The old MailboxCache finds nothing either: the entries are gone, not just hidden.
    assert box.get(1) is None
    assert box.index() == {}
    # Other mailboxes are untouched.
    assert user.mailbox("Archive", 3).get(1) == b"archived"
    assert user.mailboxes() == {b"INBOX": 8, b"Archive": 3}


def test_uidvalidity_is_part_of_the_key(cache: MessageCache) -> None:
    """A session still holding the old UIDVALIDITY can neither see nor shadow the new one."""
    user = cache.for_user(UPSTREAM, "alice")
    old = user.mailbox("INBOX", 7)
    new = user.mailbox("INBOX", 8)
    old.put(1, b"old content")
    new.put(1, b"new content")
    assert new.get(1) == b"new content"
    assert old.get(1) == b"old content"


def test_uidvalidity_change_is_seen_after_a_restart(make_cache: CacheFactory) -> None:
    first = make_cache()
    first.for_user(UPSTREAM, "alice").mailbox("INBOX", 7).put(1, SMALL)
    first.close()
    second = make_cache()
    box = second.for_user(UPSTREAM, "alice").mailbox("INBOX", 9)
    assert box.get(1) is None
    assert len(second.for_user(UPSTREAM, "alice").open_files().store) == 0


def test_inbox_is_case_insensitive_other_names_are_not(cache: MessageCache) -> None:
    user = cache.for_user(UPSTREAM, "alice")
    user.mailbox("INBOX", 7).put(1, b"one")
    assert user.mailbox("inbox", 7).get(1) == b"one"
    assert user.mailbox(b"InBox", 7).get(1) == b"one"
    user.mailbox("Work", 7).put(1, b"work")
    assert user.mailbox("work", 7).get(1) is None
    assert mailbox_key("Entw&APw-rfe") == b"Entw&APw-rfe"
    assert mailbox_key("Entwürfe") == "Entwürfe".encode()


def test_mailbox_names_with_odd_bytes(cache: MessageCache) -> None:
    user = cache.for_user(UPSTREAM, "alice")
    names: list[str | bytes] = [b"\xff\xfe raw", "a/b/c", "7/9/x", "", "\udcff"]
    for n, name in enumerate(names, 1):
        user.mailbox(name, 5).put(n, b"in %r" % name)
    for n, name in enumerate(names, 1):
        box = user.mailbox(name, 5)
        assert box.get(n) == b"in %r" % name
        assert all(box.get(m) is None for m in range(1, len(names) + 1) if m != n)


def test_bad_uids_and_uidvalidities_are_refused(cache: MessageCache) -> None:
    user = cache.for_user(UPSTREAM, "alice")
    with pytest.raises(ValueError):
        user.mailbox("INBOX", 0)
    with pytest.raises(ValueError):
        user.mailbox("INBOX", 2**32)
    box = user.mailbox("INBOX", 1)
    with pytest.raises(ValueError):
        box.put(0, b"x")
    with pytest.raises(ValueError):
        box.get(2**32)


def test_messages_over_a_quarter_of_max_size_are_not_cached(make_cache: CacheFactory) -> None:
    cache = make_cache(max_size=4 * 1024 * 1024)
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    assert not box.put(1, b"x" * (1024 * 1024 + 1))
    assert box.get(1) is None
    assert box.put(2, b"x" * (1024 * 1024 - 48))


# ------------------------------------------------------------------------------------ index


def test_index_round_trip_and_partial_updates(cache: MessageCache) -> None:
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    box.update_index([IndexEntry(5, size=100, internaldate="02-Feb-2024 01:02:03 +0100"),
                      IndexEntry(3, size=30)])
    box.set_index(5, structure=b"blob-5")  # keeps size and date
    box.set_index(3, internaldate="03-Mar-2024 00:00:00 +0000")
    index = box.index()
    assert index.uids == [3, 5]
    assert list(index) == [3, 5]
    assert index[5] == IndexEntry(5, 100, "02-Feb-2024 01:02:03 +0100", b"blob-5")
    assert index[3] == IndexEntry(3, 30, "03-Mar-2024 00:00:00 +0000", None)
    assert box.index([5, 6]).uids == [5]
    assert box.index(structure=False)[5].structure is None
    assert box.uids() == [3, 5]


def test_index_of_many_messages(cache: MessageCache) -> None:
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    box.update_index(IndexEntry(uid, size=uid * 10, structure=b"s%d" % uid)
                     for uid in range(1, 5001))
    assert len(box.index()) == 5000
    some = box.index(range(1000, 3001, 2))
    assert len(some) == 1001 and some[3000].structure == b"s3000"


def test_forget_and_retain(cache: MessageCache) -> None:
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    for uid in (1, 2, 3, 4):
        box.put(uid, b"message %d" % uid)
        box.set_index(uid, size=9)
    box.forget([2])
    assert box.get(2) is None and box.uids() == [1, 3, 4]
    assert box.retain([1, 4, 99]) == [3]
    assert box.uids() == [1, 4]
    assert box.get(3) is None
    assert box.get(1) == b"message 1"


def test_index_is_per_mailbox_and_uidvalidity(cache: MessageCache) -> None:
    user = cache.for_user(UPSTREAM, "alice")
    user.mailbox("INBOX", 7).set_index(1, size=1)
    user.mailbox("Sent", 7).set_index(1, size=2)
    assert user.mailbox("INBOX", 7).index()[1].size == 1
    assert user.mailbox("Sent", 7).index()[1].size == 2
    assert user.mailbox("Sent", 8).index() == {}


# ------------------------------------------------------------------------------------ async


async def test_async_facade(cache: MessageCache) -> None:
    user = await cache.afor_user(UPSTREAM, "alice")
    box = await user.amailbox("INBOX", 7)
    assert await box.aput(1, SMALL)
    assert await box.aput(2, LARGE)
    results = await asyncio.gather(*(box.aget(uid) for uid in (1, 2, 3) * 5))
    assert results == [SMALL, LARGE, None] * 5
    assert await box.aget_many([3, 1, 2]) == {3: None, 1: SMALL, 2: LARGE}
    stream = await box.aopen(2)
    assert stream is not None
    with stream:
        parts = []
        while chunk := await box.aread(stream, 1 << 20):
            parts.append(chunk)
        assert b"".join(parts) == LARGE
    assert await box.acontains(1)
    await box.aupdate_index([IndexEntry(1, size=len(SMALL))])
    assert (await box.aindex())[1].size == len(SMALL)
    await box.aforget([1])
    assert await box.aget(1) is None


async def test_concurrent_puts_and_gets_from_many_tasks(cache: MessageCache) -> None:
    boxes = [(await cache.afor_user(UPSTREAM, f"user{n}")).mailbox("INBOX", 1)
             for n in range(4)]

    async def worker(n: int) -> None:
        box = boxes[n % 4]
        data = os.urandom(1000 + n * 997)
        assert await box.aput(n + 1, data)
        assert await box.aget(n + 1) == data

    await asyncio.gather(*(worker(n) for n in range(40)))


def test_from_config(tmp_path: Path) -> None:
    config = Config(upstream=UpstreamConfig(host="Mail.Example.org", port=993),
                    cache_dir=tmp_path / "c", cache=CacheConfig(max_size=12345678))
    with MessageCache.from_config(config) as cache:
        assert cache.directory == tmp_path / "c"
        assert cache.max_size == 12345678
        user = cache.for_user(config.upstream, "alice")
        assert user.upstream == "mail.example.org:993"
