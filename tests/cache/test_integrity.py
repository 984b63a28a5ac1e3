"""A corrupt, truncated, missing or half-written entry is a miss, never served."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from imapproxy.cache import MessageCache

from .conftest import UPSTREAM, value_files

LARGE = os.urandom(300_000)
SMALL = os.urandom(20_000)
REPO = Path(__file__).resolve().parents[2]


def stored(cache: MessageCache) -> Path:
    [path] = value_files(cache.directory)
    return path


def put_large(cache: MessageCache) -> None:
    assert cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7).put(1, LARGE)


def get(cache: MessageCache) -> bytes | None:
    return cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7).get(1)


@pytest.mark.parametrize("offset", [0, 150_000, 299_999, 300_000, 300_010, 300_047])
def test_a_flipped_byte_is_a_miss(cache: MessageCache, offset: int) -> None:
    """Anywhere: in the message, in the trailer's magic, length or digest."""
    put_large(cache)
    path = stored(cache)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    assert get(cache) is None
    # Dropped, so the next fetch from upstream can replace it; counted.
    assert value_files(cache.directory) == []
    stats = cache.stats()
    assert (stats.corrupt, stats.misses, stats.hits) == (1, 1, 0)
    put_large(cache)
    assert get(cache) == LARGE


@pytest.mark.parametrize("keep", [0, 10, 47, 48, 150_000, 300_047])
def test_a_truncated_file_is_a_miss(cache: MessageCache, keep: int) -> None:
    put_large(cache)
    path = stored(cache)
    with path.open("r+b") as f:
        f.truncate(keep)
    assert get(cache) is None
    assert cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7).open(1) is None


def test_an_appended_byte_is_a_miss(cache: MessageCache) -> None:
    put_large(cache)
    with stored(cache).open("ab") as f:
        f.write(b"\n")
    assert get(cache) is None


def test_a_missing_file_is_a_miss(cache: MessageCache) -> None:
    put_large(cache)
    stored(cache).unlink()
    assert get(cache) is None
    assert cache.stats().misses == 1


def test_open_verifies_before_handing_out_a_byte(cache: MessageCache) -> None:
    put_large(cache)
    path = stored(cache)
    data = bytearray(path.read_bytes())
    data[299_999] ^= 0xFF  # the very last byte of the message
    path.write_bytes(bytes(data))
    assert cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7).open(1) is None


def test_a_corrupt_small_entry_in_sqlite_is_a_miss(cache: MessageCache) -> None:
    user = cache.for_user(UPSTREAM, "alice")
    box = user.mailbox("INBOX", 7)
    box.put(1, SMALL)
    box.put(2, SMALL)
    user.close()
    db = user.path / "messages" / "cache.db"
    con = sqlite3.connect(db)
    [(value,)] = con.execute("SELECT value FROM Cache WHERE key = ?", (b"7/1/INBOX",))
    flipped = bytearray(value)
    flipped[1000] ^= 0x20
    with con:
        con.execute("UPDATE Cache SET value = ? WHERE key = ?", (bytes(flipped), b"7/1/INBOX"))
        con.execute("UPDATE Cache SET value = ? WHERE key = ?", (value[:-1], b"7/2/INBOX"))
    con.close()
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    assert box.get(1) is None
    assert box.open(2) is None
    assert cache.stats().corrupt == 2


def test_swapped_entries_do_not_verify(cache: MessageCache) -> None:
    """The digest covers the key: UID 1's bytes under UID 2 are rejected."""
    user = cache.for_user(UPSTREAM, "alice")
    box = user.mailbox("INBOX", 7)
    box.put(1, b"one" * 20_000)
    box.put(2, b"two" * 20_000)
    user.close()
    con = sqlite3.connect(user.path / "messages" / "cache.db")
    rows = dict(con.execute("SELECT key, filename FROM Cache").fetchall())
    with con:
        con.execute("UPDATE Cache SET filename = ? WHERE key = ?",
                    (rows[b"7/1/INBOX"], b"7/2/INBOX"))
    con.close()
    box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
    assert box.get(2) is None
    # Dropping the bad entry removed the file both rows named: a miss, never wrong bytes.
    assert box.get(1) in (None, b"one" * 20_000)


WRITER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from imapproxy.cache import MessageCache
    cache = MessageCache(Path(sys.argv[1]))
    box = cache.for_user("imap.example.org:993", "alice").mailbox("INBOX", 7)
    data = [bytes([n]) * (3 * 1024 * 1024 + n) for n in range(1, 9)]
    print("ready", flush=True)
    while True:
        for n, payload in enumerate(data, 1):
            box.put(n, payload)
""")


@pytest.mark.parametrize("delay", [0.05, 0.13, 0.29, 0.41, 0.67])
def test_sigkill_during_writes_never_leaves_a_servable_torn_entry(
    cache_dir: Path, delay: float
) -> None:
    """Kill a writer at arbitrary moments; afterwards every entry is complete or absent."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(cache_dir)], env=env,
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with MessageCache(cache_dir) as cache:
        box = cache.for_user(UPSTREAM, "alice").mailbox("INBOX", 7)
        for n in range(1, 9):
            data = box.get(n)
            assert data is None or data == bytes([n]) * (3 * 1024 * 1024 + n)


def test_torn_value_file_as_after_a_crash(cache: MessageCache) -> None:
    """What power loss after the database commit could leave: the file's tail is zeros."""
    put_large(cache)
    path = stored(cache)
    data = path.read_bytes()
    path.write_bytes(data[:100_000] + bytes(len(data) - 100_000))
    assert get(cache) is None
