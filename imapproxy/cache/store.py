"""MessageCache -> UserCache -> MailboxCache: message bytes and the per-mailbox index on disk.

Layout under the cache directory (``Config.cache_dir``)::

    users/                       0700
      <id>/                      0700, one per (upstream, user); id = BLAKE2b(upstream, user)
        owner.json               0600, {"upstream": ..., "user": ...}: checked on every open
        index.sqlite3            0600, see index.py
        messages/                0700, a diskcache.Cache (LRU), its files 0600
      .trash-<random>/           a user directory being removed by purge

A user cache only ever opens its own directory, and the directory name is derived from the
(upstream, user) pair, never from raw names, so no lookup of one user can reach another user's
bytes, whatever the mailbox name and UID. As a second line, every stored value's digest covers
the user cache's id and the entry's key (entry.py): bytes copied or linked to another place
never verify there.

Errors of the store (disk full, a corrupt database, a lock timeout) never propagate to the
caller: a failed read is a miss, a failed write is logged and skipped. The upstream is always
there to fetch from again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import diskcache  # type: ignore[import-untyped]

from imapproxy.cache._fs import (
    PrivateDisk,
    private_dir,
    private_file,
    write_private,
)
from imapproxy.cache.entry import (
    TRAILER_SIZE,
    MessageStream,
    SealedReader,
    check_file,
    open_blob,
    read_file,
    seal,
)
from imapproxy.cache.index import IndexDB, IndexEntry, MailboxIndex
from imapproxy.cache.inflight import InFlight
from imapproxy.cache.memory import MemoryLRU
from imapproxy.config import CacheConfig, Config, UpstreamConfig

log = logging.getLogger("imapproxy.cache")

T = TypeVar("T")

USERS_DIR = "users"
OWNER_FILE = "owner.json"
INDEX_FILE = "index.sqlite3"
MESSAGES_DIR = "messages"
DISKCACHE_DB = "cache.db"  # diskcache.core.DBNAME

#: Entries of at least this many stored bytes get a file of their own (diskcache's default);
#: smaller ones live in the SQLite database.
MIN_FILE_SIZE = 32 * 1024
#: Messages larger than max_size / MAX_ENTRY_FRACTION are not cached.
MAX_ENTRY_FRACTION = 4
#: Eviction brings the total down to this fraction of max_size, so it runs in batches.
EVICT_TO = 0.9
#: User caches kept open after their last user (session) let go of them.
KEEP_OPEN = 16
OWNER_CHECK_SECONDS = 1.0
HOT_READS_BATCH = 512
HOT_READS_SECONDS = 30.0
# Messages up to this size are also kept in the hot tier (in memory) once read or stored;
# bigger ones are streamed from their file anyway (server/fetch.py STREAM_THRESHOLD).
HOT_ENTRY_MAX = 1024 * 1024
#: SQLite busy timeout (seconds) of the message store; a timeout is a miss / a skipped put.
DB_TIMEOUT = 10.0

_STORE_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout, ValueError, EOFError)


def upstream_id(upstream: UpstreamConfig) -> str:
    """The upstream part of a user cache's identity: ``host:port`` (host lower-cased,
    IPv6 in brackets). The security mode is not part of it: the same server holds the same
    mail whether reached over TLS or not."""
    host = upstream.host.lower()
    return f"[{host}]:{upstream.port}" if ":" in host else f"{host}:{upstream.port}"


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


def _as_text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def user_cache_id(upstream: str, user: str | bytes) -> str:
    """The directory name of the cache of ``user`` on ``upstream`` (32 hex digits)."""
    h = hashlib.blake2b(digest_size=16, person=b"imapproxy.user1")
    for part in (upstream.encode("utf-8", "surrogateescape"), _as_bytes(user)):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def mailbox_key(name: str | bytes) -> bytes:
    """The canonical form of a mailbox name: its bytes, with INBOX in any case as ``INBOX``
    (RFC 3501 5.1: INBOX is case-insensitive). Wire bytes (modified UTF-7 or UTF-8) and
    ``str`` give the same key when the ``str`` is the UTF-8 decoding of the bytes."""
    raw = _as_bytes(name)
    return b"INBOX" if raw.upper() == b"INBOX" else raw


class CacheIsolationError(Exception):
    """A user cache directory's owner.json names another (upstream, user): refuse to use it."""


# ------------------------------------------------------------------------------------ stats


@dataclass(frozen=True)
class UserStats:
    id: str
    upstream: str | None  # None when owner.json is missing or unreadable
    user: str | None
    entries: int  # cached messages
    bytes: int  # on disk: message store + index
    index_entries: int
    hits: int
    misses: int
    corrupt: int


@dataclass(frozen=True)
class CacheStats:
    directory: Path
    max_size: int
    users: tuple[UserStats, ...]

    @property
    def entries(self) -> int:
        return sum(u.entries for u in self.users)

    @property
    def bytes(self) -> int:
        return sum(u.bytes for u in self.users)

    @property
    def index_entries(self) -> int:
        return sum(u.index_entries for u in self.users)

    @property
    def hits(self) -> int:
        return sum(u.hits for u in self.users)

    @property
    def misses(self) -> int:
        return sum(u.misses for u in self.users)

    @property
    def corrupt(self) -> int:
        return sum(u.corrupt for u in self.users)

    @property
    def hit_ratio(self) -> float | None:
        lookups = self.hits + self.misses
        return None if lookups == 0 else self.hits / lookups


# ---------------------------------------------------------------------------- user files


class _UserFiles:
    """The open databases of one user directory: the diskcache store and the index."""

    def __init__(self, path: Path, max_size: int) -> None:
        self.path = path
        private_dir(path)
        messages = path / MESSAGES_DIR
        private_dir(messages)
        private_file(messages / DISKCACHE_DB)
        self.store: Any = diskcache.Cache(
            str(messages),
            timeout=DB_TIMEOUT,
            disk=PrivateDisk,
            eviction_policy="least-recently-used",
            size_limit=max_size,  # a backstop; MessageCache evicts across users first
            tag_index=True,  # tag = mailbox: a UIDVALIDITY change evicts by tag
            disk_min_file_size=MIN_FILE_SIZE,
            statistics=False,  # our own counters (a corrupt entry is a miss, not a hit)
        )
        self.index = IndexDB(path / INDEX_FILE)

    def volume(self) -> int:
        return int(self.store.volume()) + self.index.size()

    def entries(self) -> int:
        return len(self.store)

    def lru_candidates(self, limit: int) -> list[tuple[float, int, bytes]]:
        """The least recently used entries: (access time, estimated bytes, key)."""
        con = sqlite3.connect(self.path / MESSAGES_DIR / DISKCACHE_DB, timeout=DB_TIMEOUT)
        try:
            rows = con.execute(
                "SELECT access_time, size + COALESCE(length(value), 0) + 100, key"
                " FROM Cache WHERE raw = 1 ORDER BY access_time LIMIT ?", (limit,)).fetchall()
        finally:
            con.close()
        return [(float(t), int(n), bytes(key)) for t, n, key in rows]

    def wipe(self) -> None:
        self.store.clear()
        self.index.wipe()

    def close(self) -> None:
        with contextlib.suppress(*_STORE_ERRORS):
            self.index.close()
        with contextlib.suppress(*_STORE_ERRORS):
            self.store.close()


def _read_owner(path: Path) -> tuple[str, str] | None:
    try:
        data = json.loads((path / OWNER_FILE).read_text(encoding="utf-8"))
        upstream, user = data["upstream"], data["user"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(upstream, str) or not isinstance(user, str):
        return None
    return upstream, user


def _write_owner(path: Path, upstream: str, user: bytes) -> None:
    data = {"version": 1, "upstream": upstream, "user": _as_text(user)}
    write_private(path / OWNER_FILE, json.dumps(data, sort_keys=True).encode("utf-8"))


# ---------------------------------------------------------------------------- MessageCache


class MessageCache:
    """The message cache of one proxy process (one process per cache directory).

    ``for_user`` gives the cache of one (upstream, user); everything below it is isolated
    from other users. The ``a*`` methods run the blocking work in the cache's own small
    thread pool (``io_threads``), never on the event loop. Close it at shutdown (it is a
    context manager too)."""

    def __init__(self, directory: Path, config: CacheConfig | None = None, *,
                 io_threads: int = 4) -> None:
        self.directory = Path(directory)
        self.config = config or CacheConfig()
        self.max_size = self.config.max_size
        self.max_entry_size = max(0, self.max_size // MAX_ENTRY_FRACTION - TRAILER_SIZE)
        if not self.directory.is_dir():
            self.directory.mkdir(mode=0o700, parents=True)
        self.users_dir = self.directory / USERS_DIR
        private_dir(self.users_dir)
        self._lock = threading.RLock()
        self._open: weakref.WeakValueDictionary[str, UserCache] = weakref.WeakValueDictionary()
        self._recent: collections.OrderedDict[str, UserCache] = collections.OrderedDict()
        self._volumes: dict[str, int] | None = None  # user id -> bytes; None: not scanned
        self._evicting = threading.Lock()
        self.evictions = 0  # message entries evicted by this process (for metrics)
        # (user cache id, entry key) -> (verified bytes, structure blob or b""): see memory.py
        self.hot: MemoryLRU[tuple[str, bytes]] = MemoryLRU(self.config.hot_size, HOT_ENTRY_MAX)
        # Reads the hot tier answered, still to be told to the disk LRU (note_hot_reads).
        # user id -> (user, entry keys read, mailboxes used, hits not counted yet)
        self._hot_reads: dict[str, tuple[UserCache, set[bytes], set[bytes], list[int]]] = {}
        self._hot_reads_count = 0
        self._hot_reads_since = time.monotonic()
        self._hot_lock = threading.Lock()  # its own: the event loop takes it on every hit
        self._executor = ThreadPoolExecutor(io_threads, thread_name_prefix="imapproxy-cache")
        self._closed = False
        self._remove_trash()

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> MessageCache:
        return cls(config.cache_dir, config.cache, **kwargs)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush counters and close every open database; the async API stops working."""
        self.flush_hot_reads()
        with self._lock:
            self._closed = True
            users = list(self._open.values())
            self._recent.clear()
        for user in users:
            user.close()
        self._executor.shutdown(wait=True)

    # --------------------------------------------------------------------------- users

    def for_user(self, upstream: UpstreamConfig | str, user: str | bytes) -> UserCache:
        """The cache of ``user`` (the name the upstream authenticated; call this only after
        the upstream accepted the login) on ``upstream`` (an UpstreamConfig, or a string
        from :func:`upstream_id`). Opens (creates) the user's directory."""
        up = upstream_id(upstream) if isinstance(upstream, UpstreamConfig) else upstream
        user_b = _as_bytes(user)
        cache_id = user_cache_id(up, user_b)
        with self._lock:
            if self._closed:
                raise RuntimeError("the MessageCache is closed")
            found = self._open.get(cache_id)
            if found is None:
                found = UserCache(self, cache_id, up, user_b)
                self._open[cache_id] = found
            self._recent[cache_id] = found
            self._recent.move_to_end(cache_id)
            while len(self._recent) > KEEP_OPEN:
                _, dropped = self._recent.popitem(last=False)
                dropped.flush()
        try:
            found.open_files()  # outside the lock: creates files, may take milliseconds
        except _STORE_ERRORS:
            log.warning("cannot open the cache of a user; tried again on use", exc_info=True)
        return found

    async def afor_user(self, upstream: UpstreamConfig | str, user: str | bytes) -> UserCache:
        return await self.run(self.for_user, upstream, user)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in the cache's thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def _user_dirs(self) -> list[Path]:
        try:
            return sorted(p for p in self.users_dir.iterdir()
                          if p.is_dir() and not p.name.startswith("."))
        except FileNotFoundError:
            return []

    # --------------------------------------------------------------- size and eviction

    def _measure(self, path: Path) -> int:
        """Bytes of a user directory as volume() counts them, without opening it as a cache."""
        total = 0
        for db, extra in ((path / MESSAGES_DIR / DISKCACHE_DB, True), (path / INDEX_FILE, False)):
            if not db.exists():
                continue
            try:
                con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True,
                                      timeout=DB_TIMEOUT)
                try:
                    (pages,) = con.execute("PRAGMA page_count").fetchone()
                    (page_size,) = con.execute("PRAGMA page_size").fetchone()
                    total += int(pages) * int(page_size)
                    if extra:
                        row = con.execute(
                            "SELECT value FROM Settings WHERE key = 'size'").fetchone()
                        total += int(row[0]) if row else 0
                finally:
                    con.close()
            except sqlite3.Error:
                continue
        return total

    def _scan_volumes(self) -> dict[str, int]:
        with self._lock:
            if self._volumes is not None:
                return self._volumes
        volumes = {path.name: self._measure(path) for path in self._user_dirs()}
        with self._lock:
            if self._volumes is None:
                self._volumes = volumes
            return self._volumes

    def total_size(self) -> int:
        """Bytes on disk, all users (as last measured)."""
        volumes = self._scan_volumes()
        with self._lock:
            return sum(volumes.values())

    def _note_size(self, cache_id: str, volume: int) -> None:
        volumes = self._scan_volumes()
        with self._lock:
            volumes[cache_id] = volume
            total = sum(volumes.values())
        if total > self.max_size:
            self.evict(int(self.max_size * EVICT_TO))

    def evict(self, target: int) -> int:
        """Evict least recently used entries, across all users, until the total is at most
        ``target`` bytes. Message entries go by their last access (diskcache's LRU
        access_time); a mailbox's index rows go together, by the mailbox's last use.
        Returns the number of message entries evicted. Runs in the calling thread; a call
        while another eviction runs returns 0 at once."""
        if not self._evicting.acquire(blocking=False):
            return 0
        try:
            evicted = self._evict(target)
            self.evictions += evicted
            return evicted
        finally:
            self._evicting.release()

    def note_hot_reads(self, user: UserCache, mailbox: bytes, keys: Iterable[bytes],
                       hits: int = 0) -> None:
        """Reads answered from memory count as uses for the disk LRU too (else a message
        read all day from memory would be the first evicted from disk). Recorded here and
        written in one batch per user by :meth:`flush_hot_reads`: in the thread pool every
        HOT_READS_BATCH reads or HOT_READS_SECONDS, and before any store, eviction or stats.
        ``hits`` are counted there too: the event loop never waits on a SQLite lock."""
        with self._hot_lock:
            _, pending, boxes, counted = self._hot_reads.setdefault(
                user.id, (user, set(), set(), [0]))
            before = len(pending)
            pending.update(keys)
            boxes.add(mailbox)
            counted[0] += hits
            self._hot_reads_count += len(pending) - before
            due = self._hot_reads_count >= HOT_READS_BATCH \
                or time.monotonic() - self._hot_reads_since > HOT_READS_SECONDS
            if due:
                self._hot_reads_count = 0
                self._hot_reads_since = time.monotonic()
        if due and not self._closed:
            with contextlib.suppress(RuntimeError):  # shut down meanwhile
                self._executor.submit(self.flush_hot_reads)

    def flush_hot_reads(self) -> None:
        if not self._hot_reads:
            return
        with self._hot_lock:
            pending, self._hot_reads = self._hot_reads, {}
        for user, keys, boxes, counted in pending.values():
            files = user.files_if_open()
            if files is None:
                continue
            with contextlib.suppress(*_STORE_ERRORS):
                files.index.count("hits", counted[0], flush=False)
                if keys:
                    with files.store.transact():
                        _mark_used(files.store, "key", [sqlite3.Binary(k) for k in keys])
                for box in boxes:
                    files.index.touch_mailbox(box)
                files.index.flush()  # the hits counted on the event loop

    def _evict(self, target: int) -> int:
        self.flush_hot_reads()
        evicted = 0
        for _ in range(100):  # each round frees what the oldest candidates hold
            volumes = self._scan_volumes()
            with self._lock:
                excess = sum(volumes.values()) - target
                ids = [cid for cid, size in volumes.items() if size > 0]
            if excess <= 0:
                break
            files: dict[str, _UserFiles] = {}
            temporary: list[_UserFiles] = []
            candidates: list[tuple[float, int, str, str, bytes]] = []
            try:
                for cid in ids:
                    user_files = self._files_for(cid, temporary)
                    if user_files is None:
                        continue
                    files[cid] = user_files
                    for when, size, key in user_files.lru_candidates(256):
                        candidates.append((when, size, cid, "message", key))
                    for usage in user_files.index.usage():
                        candidates.append((usage.last_used, usage.bytes, cid, "index",
                                           usage.name))
                if not candidates:
                    break
                candidates.sort(key=lambda c: c[0])
                freed = 0
                for _when, size, cid, kind, key in candidates:
                    if freed >= excess:
                        break
                    if kind == "message":
                        with contextlib.suppress(*_STORE_ERRORS):
                            if files[cid].store.delete(key):
                                evicted += 1
                                files[cid].index.count("evicted")
                    else:
                        with contextlib.suppress(*_STORE_ERRORS):
                            files[cid].index.drop_rows(key)
                    freed += size
                for cid, user_files in files.items():
                    with contextlib.suppress(*_STORE_ERRORS):
                        volume = user_files.volume()
                        with self._lock:
                            volumes[cid] = volume
            finally:
                for user_files in temporary:
                    user_files.close()
        if evicted:
            log.debug("evicted %d cached messages (target %d bytes)", evicted, target)
        return evicted

    def _files_for(self, cache_id: str, temporary: list[_UserFiles]) -> _UserFiles | None:
        """The open files of a user cache, or (added to ``temporary``) freshly opened ones."""
        with self._lock:
            user = self._open.get(cache_id)
        if user is not None:
            opened = user.files_if_open()
            if opened is not None:
                return opened
        path = self.users_dir / cache_id
        if not path.is_dir():
            with self._lock:
                if self._volumes is not None:
                    self._volumes.pop(cache_id, None)
            return None
        try:
            user_files = _UserFiles(path, self.max_size)
        except _STORE_ERRORS:
            log.warning("cannot open the user cache %s for eviction", path, exc_info=True)
            return None
        temporary.append(user_files)
        return user_files

    # ----------------------------------------------------------------- stats and purge

    def stats(self) -> CacheStats:
        """Entries, bytes and hit/miss counters, per user and in total (counters of open
        user caches are flushed first)."""
        self.flush_hot_reads()
        with self._lock:
            open_users = list(self._open.values())
        for user in open_users:
            user.flush()
        users = []
        for path in self._user_dirs():
            owner = _read_owner(path)
            temporary: list[_UserFiles] = []
            try:
                files = self._files_for(path.name, temporary)
                if files is None:
                    continue
                counters = files.index.counters()
                users.append(UserStats(
                    id=path.name,
                    upstream=owner[0] if owner else None,
                    user=owner[1] if owner else None,
                    entries=files.entries(),
                    bytes=files.volume(),
                    index_entries=files.index.row_count(),
                    hits=counters["hits"],
                    misses=counters["misses"],
                    corrupt=counters["corrupt"],
                ))
            except _STORE_ERRORS:
                log.warning("cannot read the user cache %s", path, exc_info=True)
            finally:
                for user_files in temporary:
                    user_files.close()
        return CacheStats(self.directory, self.max_size, tuple(users))

    def purge(self, user: str | bytes | None = None, upstream: str | None = None) -> int:
        """Remove user caches: all of them, those of ``user`` (on any upstream, or only on
        ``upstream``, an :func:`upstream_id` string), or those of every user on ``upstream``.
        Matching uses owner.json, and with both ``user`` and ``upstream`` also the
        directory name computed from them. Returns the number of user caches removed.

        Open user caches of this process are emptied and start afresh on next use. Another
        process (a running proxy, when this is ``imapproxy cache purge``) sees its entries
        deleted, as the databases are emptied before the directory is removed."""
        user_text = None if user is None else _as_text(_as_bytes(user))
        direct = None
        if user is not None and upstream is not None:
            direct = user_cache_id(upstream, user)
        removed = 0
        for path in self._user_dirs():
            owner = _read_owner(path)
            match = path.name == direct or (
                (user_text is None or (owner is not None and owner[1] == user_text))
                and (upstream is None or (owner is not None and owner[0] == upstream))
            )
            if match:
                self._purge_dir(path)
                removed += 1
        return removed

    def _purge_dir(self, path: Path) -> None:
        with self._lock:
            user = self._open.get(path.name)
            if self._volumes is not None:
                self._volumes.pop(path.name, None)
        if user is not None:
            user.close_files()
        self.hot.discard_where(lambda key: key[0] == path.name)
        with contextlib.suppress(*_STORE_ERRORS):
            files = _UserFiles(path, self.max_size)
            try:
                files.wipe()
            finally:
                files.close()
        self.hot.discard_where(lambda key: key[0] == path.name)  # and any read meanwhile
        trash = self.users_dir / f".trash-{secrets.token_hex(8)}"
        try:
            os.rename(path, trash)
        except OSError:
            trash = path
        shutil.rmtree(trash, ignore_errors=True)

    def _remove_trash(self) -> None:
        with contextlib.suppress(OSError):
            for path in self.users_dir.iterdir():
                if path.name.startswith(".trash-"):
                    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------ UserCache


class UserCache:
    """The cache of one (upstream, user). Get it from :meth:`MessageCache.for_user`; keep it
    for the session (it is closed when no session holds it any more)."""

    def __init__(self, parent: MessageCache, cache_id: str, upstream: str, user: bytes) -> None:
        self.parent = parent
        self.id = cache_id
        self.upstream = upstream
        self.user = user
        self.path = parent.users_dir / cache_id
        self._context = cache_id.encode("ascii")
        self._lock = threading.Lock()
        self._holder: list[_UserFiles] = []  # [] or [the open files]
        self.inflight = InFlight()  # bodies being fetched by this user's sessions
        # Mailbox key -> its message count at the last SELECT (upstream select_state_count).
        self.last_exists: dict[bytes, int] = {}
        # Mailbox key -> the UIDVALIDITY this process recorded for it (mailbox()).
        self._recorded: dict[bytes, int] = {}
        self._owner_checked = time.monotonic()  # still_owned()
        weakref.finalize(self, _close_holder, self._holder)

    def __repr__(self) -> str:
        return f"UserCache({self.upstream!r}, {_as_text(self.user)!r}, id={self.id})"

    def open_files(self) -> _UserFiles:
        """The open databases; opened (and the directory created) on first use, and again
        after a purge (by this process, or by another: owner.json is gone)."""
        with self._lock:
            if self._holder:
                if (self.path / OWNER_FILE).exists():
                    return self._holder[0]
                # Purged by another process (imapproxy cache purge): start afresh.
                self._holder.pop().close()
                self._forget_memory()
            private_dir(self.path)
            owner = _read_owner(self.path)
            if owner is None:
                _write_owner(self.path, self.upstream, self.user)
            elif owner != (self.upstream, _as_text(self.user)):
                raise CacheIsolationError(
                    f"{self.path} belongs to {owner!r}, not to "
                    f"{(self.upstream, _as_text(self.user))!r}")
            files = _UserFiles(self.path, self.parent.max_size)
            self._holder.append(files)
            return files

    def still_owned(self) -> bool:
        """False once this user's cache was purged by another process (``imapproxy cache
        purge``: owner.json is gone), checked at most every OWNER_CHECK_SECONDS: answers from
        memory (hot tier, recorded UIDVALIDITY) stop then; the next disk use starts afresh."""
        now = time.monotonic()
        if now - self._owner_checked < OWNER_CHECK_SECONDS:
            return True
        self._owner_checked = now
        if self.files_if_open() is None or (self.path / OWNER_FILE).exists():
            return True
        self._forget_memory()
        return False

    def _forget_memory(self) -> None:
        """What this process keeps of the user's cache beside the files (purged)."""
        self.parent.hot.discard_where(lambda key: key[0] == self.id)
        self._recorded.clear()

    def _recorded_as(self, key: bytes, uidvalidity: int) -> bool:
        """This process recorded ``uidvalidity`` for mailbox ``key`` (and was not purged)."""
        return self._recorded.get(key) == uidvalidity and self.still_owned()

    def files_if_open(self) -> _UserFiles | None:
        with self._lock:
            return self._holder[0] if self._holder else None

    def close_files(self) -> None:
        with self._lock:
            files = self._holder.pop() if self._holder else None
            self._recorded.clear()
        if files is not None:
            files.close()

    close = close_files

    def flush(self) -> None:
        files = self.files_if_open()
        if files is not None:
            with contextlib.suppress(*_STORE_ERRORS):
                files.index.flush()

    def mailbox(self, name: str | bytes, uidvalidity: int) -> MailboxCache:
        """The cache of one mailbox at one UIDVALIDITY (from SELECT/EXAMINE/STATUS). If the
        mailbox was last seen with another UIDVALIDITY, its entries are dropped first."""
        if not 0 < uidvalidity < 2**32:
            raise ValueError(f"UIDVALIDITY out of range: {uidvalidity}")
        key = mailbox_key(name)
        if self._recorded_as(key, uidvalidity):  # as this process left it
            self.parent.note_hot_reads(self, key, ())  # its last use, for the index LRU
            return MailboxCache(self, key, uidvalidity)
        try:
            files = self.open_files()
            old = files.index.select_mailbox(key, uidvalidity)
            if old is not None:
                dropped = files.store.evict(key)
                log.info("UIDVALIDITY of a mailbox changed (%d -> %d): dropped %d cached "
                         "messages", old, uidvalidity, dropped)
            self._recorded[key] = uidvalidity
        except _STORE_ERRORS:
            log.warning("cache: cannot record UIDVALIDITY", exc_info=True)
        return MailboxCache(self, key, uidvalidity)

    async def amailbox(self, name: str | bytes, uidvalidity: int) -> MailboxCache:
        """:meth:`mailbox`; with no thread-pool trip when this process recorded the same
        UIDVALIDITY before (one cache per process and directory: nobody else changes it)."""
        if 0 < uidvalidity < 2**32 and self._recorded_as(mailbox_key(name), uidvalidity):
            return self.mailbox(name, uidvalidity)
        return await self.parent.run(self.mailbox, name, uidvalidity)

    def mailboxes(self) -> dict[bytes, int]:
        """Mailbox key -> the UIDVALIDITY last seen, for every mailbox the cache knows."""
        try:
            return self.open_files().index.mailboxes()
        except _STORE_ERRORS:
            return {}

    def _count(self, name: str, n: int = 1, *, flush: bool = True) -> None:
        files = self.files_if_open()
        if files is not None:
            with contextlib.suppress(*_STORE_ERRORS):
                files.index.count(name, n, flush=flush)

    def _after_write(self, files: _UserFiles) -> None:
        try:
            volume = files.volume()
        except _STORE_ERRORS:
            return
        self.parent._note_size(self.id, volume)


def _close_holder(holder: list[_UserFiles]) -> None:
    while holder:
        holder.pop().close()


# --------------------------------------------------------------------------- MailboxCache


class MailboxCache:
    """Cached messages and index of one mailbox at one UIDVALIDITY, for one user.

    Sync methods block (SQLite, file I/O, hashing); from asyncio use the ``a*`` variants,
    which run in the cache's thread pool."""

    def __init__(self, user: UserCache, name: bytes, uidvalidity: int) -> None:
        self.user = user
        self.name = name
        self.uidvalidity = uidvalidity
        self._touched = 0.0

    def __repr__(self) -> str:
        return f"MailboxCache({self.name!r}, uidvalidity={self.uidvalidity}, user={self.user})"

    def _key(self, uid: int) -> bytes:
        if not 0 < uid < 2**32:
            raise ValueError(f"UID out of range: {uid}")
        return b"%d/%d/%s" % (self.uidvalidity, uid, self.name)

    def _context(self, key: bytes) -> bytes:
        return self.user.id.encode("ascii") + b"\0" + key

    def _fetch(self, uid: int, files: _UserFiles | None = None
               ) -> tuple[_UserFiles, bytes, Any] | None:
        """The raw stored value (bytes, or an open file), or None (counted as a miss).
        ``files``: already opened for this operation (a batch opens them once)."""
        key = self._key(uid)
        try:
            files = files or self.user.open_files()
            value = files.store.get(key, default=None, read=True)
        except _STORE_ERRORS:
            log.warning("cache read failed; treated as a miss", exc_info=True)
            self.user._count("misses")
            return None
        if value is None:
            self.user._count("misses")
            return None
        if not isinstance(value, bytes) and not hasattr(value, "readinto"):
            self._corrupt(files, key)  # not something this cache stores
            return None
        return files, key, value

    def _corrupt(self, files: _UserFiles, key: bytes) -> None:
        log.warning("a cached message failed verification (length or digest) and was "
                    "dropped: mailbox %r, key %r", _as_text(self.name), key)
        with contextlib.suppress(*_STORE_ERRORS):
            files.store.delete(key)
        self.user._count("corrupt")
        self.user._count("misses")

    def get(self, uid: int, files: _UserFiles | None = None) -> bytes | None:
        """The message bytes, verified, or None (not cached, or dropped as corrupt). Reads
        the whole message into one bytes object; for large ones prefer :meth:`open`."""
        hot = self.in_memory([uid])
        if hot:
            return hot[uid]
        fetched = self._fetch(uid, files)
        if fetched is None:
            return None
        return self._verified(*fetched)

    def _verified(self, files: _UserFiles, key: bytes, value: Any) -> bytes | None:
        """The payload of a stored value (bytes, or an open file, closed here) once its
        length and digest check, counted as a hit; else dropped as corrupt and None."""
        try:
            if isinstance(value, bytes):
                payload = open_blob(self._context(key), value)
            else:
                with value:
                    payload = read_file(self._context(key), value)
        except _STORE_ERRORS:
            payload = None
        if payload is None:
            self._corrupt(files, key)
            return None
        self.user._count("hits")
        self.user.parent.hot.put((self.user.id, key), payload)
        return payload

    def in_memory(self, uids: Iterable[int], *, count: bool = True) -> dict[int, bytes]:
        """The bytes of those ``uids`` the hot tier holds (counted as hits unless ``count``
        is false): no I/O, so the event loop may call it."""
        hits = self._hot_entries(uids)
        if hits and count:
            self.user.parent.note_hot_reads(
                self.user, self.name, (self._key(uid) for uid in hits), len(hits))
        return {uid: data for uid, (data, _) in hits.items()}

    def structures_in_memory(self, uids: Iterable[int]) -> dict[int, bytes]:
        """The parsed structures the hot tier holds beside the bytes of ``uids``."""
        return {uid: structure for uid, (_, structure) in self._hot_entries(uids).items()
                if structure}

    def _hot_entries(self, uids: Iterable[int]) -> dict[int, tuple[bytes, bytes]]:
        if not self.user.still_owned():
            return {}
        keys = {(self.user.id, self._key(uid)): uid for uid in uids}
        return {keys[key]: value for key, value in self.user.parent.hot.get_many(keys).items()}

    get_bytes = get

    def get_many(self, uids: Iterable[int]) -> dict[int, bytes | None]:
        """:meth:`get` for several UIDs (one thread-pool trip with :meth:`aget_many`). Holds
        all of them in memory at once: meant for small messages. The entries are looked up
        with one SELECT and their LRU times set with one UPDATE per batch (``_fetch_many``),
        instead of two statements per message (the warm FETCH path: 3x faster)."""
        out: dict[int, bytes | None] = dict(self.in_memory(uids := list(uids)))
        wanted = [uid for uid in uids if uid not in out]
        if not wanted:
            return out
        try:
            files = self.user.open_files()
            with files.store.transact():
                stored = _fetch_many(files.store, [self._key(uid) for uid in wanted])
        except _STORE_ERRORS:  # one at a time then: each get fails (and counts) on its own
            log.warning("batched cache read failed; reading one by one", exc_info=True)
            return out | {uid: self.get(uid) for uid in wanted}
        for uid in wanted:
            key = self._key(uid)
            value = stored.get(key)
            if value is None:
                self.user._count("misses")
                out[uid] = None
            else:
                out[uid] = self._verified(files, key, value)
        return out

    def open(self, uid: int) -> MessageStream | None:
        """The message as a verified stream (see MessageStream), or None. For large entries
        the stream reads the value file (nothing held in memory); it has been read once to
        check its digest before this returns."""
        fetched = self._fetch(uid)
        if fetched is None:
            return None
        files, key, value = fetched
        stream: MessageStream | None = None
        try:
            if isinstance(value, bytes):
                payload = open_blob(self._context(key), value)
                if payload is not None:
                    stream = MessageStream(io.BytesIO(payload), len(payload))
            else:
                length = check_file(self._context(key), value)
                if length is None:
                    value.close()
                else:
                    stream = MessageStream(value, length)
        except _STORE_ERRORS:
            with contextlib.suppress(OSError):
                if not isinstance(value, bytes):
                    value.close()
            stream = None
        if stream is None:
            self._corrupt(files, key)
            return None
        self.user._count("hits")
        return stream

    def claim(self, uids: Iterable[int]) -> tuple[list[int], list[asyncio.Future[None]]]:
        """Single flight (see inflight.py): the UIDs this caller must fetch (and then
        :meth:`release`), and the fetches of other sessions to wait for."""
        by_key = {self._key(uid): uid for uid in uids}
        mine, theirs = self.user.inflight.claim(by_key)
        return [by_key[k] for k in mine], theirs

    def in_flight(self, uids: Iterable[int]) -> list[asyncio.Future[None]]:
        return self.user.inflight.waiting(self._key(uid) for uid in uids)

    def release(self, uids: Iterable[int]) -> None:
        self.user.inflight.release(self._key(uid) for uid in uids)

    def contains(self, uid: int) -> bool:
        """Whether bytes are cached for ``uid`` (not verified; no hit/miss counted)."""
        try:
            return self._key(uid) in self.user.open_files().store
        except _STORE_ERRORS:
            return False

    def put(self, uid: int, data: bytes | bytearray | memoryview) -> bool:
        """Cache the message bytes of ``uid`` (as the upstream sent them). Returns whether
        they were stored: messages over max_size / 4 are not, and errors are logged, not
        raised. Large messages are written to their file in chunks, without a copy."""
        size = len(memoryview(data).cast("B"))
        if size > self.user.parent.max_entry_size:
            return False
        key = self._key(uid)
        context = self._context(key)
        self.user.parent.flush_hot_reads()  # diskcache culls by its LRU inside set()
        try:
            files = self.user.open_files()
            if size + TRAILER_SIZE < MIN_FILE_SIZE:
                blob = bytes(data) if not isinstance(data, bytes) else data
                files.store.set(key, seal(context, blob), tag=self.name)
            else:
                files.store.set(key, SealedReader(context, data), read=True, tag=self.name)
        except _STORE_ERRORS:
            log.warning("cache write failed; not cached", exc_info=True)
            return False
        self.user._count("stored")
        self.user._after_write(files)
        if size <= HOT_ENTRY_MAX:
            self.user.parent.hot.put((self.user.id, key), bytes(data))
        return True

    def forget(self, uids: Iterable[int]) -> None:
        """Drop the bytes and index entries of ``uids`` (e.g. after EXPUNGE / VANISHED)."""
        wanted = list(uids)
        self.user.parent.hot.discard((self.user.id, self._key(uid)) for uid in wanted)
        try:
            files = self.user.open_files()
            for uid in wanted:
                files.store.delete(self._key(uid))
            files.index.delete(self.name, self.uidvalidity, wanted)
        except _STORE_ERRORS:
            log.warning("cache: forget failed", exc_info=True)

    def retain(self, uids: Iterable[int]) -> list[int]:
        """Keep only ``uids`` (e.g. the mailbox's UIDs after a full resync): index entries of
        other UIDs are dropped with their bytes. Returns the dropped UIDs."""
        keep = set(uids)
        try:
            gone = [uid for uid in self.user.open_files().index.uids(self.name, self.uidvalidity)
                    if uid not in keep]
        except _STORE_ERRORS:
            return []
        if gone:
            self.forget(gone)
        return gone

    # ---------------------------------------------------------------------------- index

    def _touch(self, files: _UserFiles) -> None:
        now = time.monotonic()
        if now - self._touched > 60:
            self._touched = now
            files.index.touch_mailbox(self.name)

    def index(self, uids: Iterable[int] | None = None, *, structure: bool = True) -> MailboxIndex:
        """The index entries of ``uids`` (all when None) that are known. With
        ``structure=False`` the structure blobs are not loaded (left None)."""
        try:
            files = self.user.open_files()
            self._touch(files)
            entries = files.index.entries(self.name, self.uidvalidity, uids, structure)
        except _STORE_ERRORS:
            log.warning("cache: index read failed", exc_info=True)
            return MailboxIndex()
        self._remember_structures(entries)
        return MailboxIndex(entries)

    def _remember_structures(self, entries: Iterable[IndexEntry]) -> None:
        hot = self.user.parent.hot
        for entry in entries:
            if entry.structure:
                hot.set_extra((self.user.id, self._key(entry.uid)), entry.structure)

    def uids(self) -> list[int]:
        """The UIDs the index has entries for, ascending."""
        try:
            return self.user.open_files().index.uids(self.name, self.uidvalidity)
        except _STORE_ERRORS:
            return []

    def update_index(self, entries: Iterable[IndexEntry]) -> None:
        """Insert or update index entries; a None field keeps what is stored."""
        try:
            files = self.user.open_files()
            files.index.update(self.name, self.uidvalidity, entries := list(entries))
        except _STORE_ERRORS:
            log.warning("cache: index update failed", exc_info=True)
            return
        self.user._after_write(files)
        self._remember_structures(entries)

    def set_index(self, uid: int, *, size: int | None = None, internaldate: str | None = None,
                  structure: bytes | None = None) -> None:
        self.update_index([IndexEntry(uid, size, internaldate, structure)])

    # ---------------------------------------------------------------------------- async

    async def aget(self, uid: int) -> bytes | None:
        return (await self.aget_many([uid]))[uid]

    async def aget_many(self, uids: Iterable[int]) -> dict[int, bytes | None]:
        """:meth:`get_many`; what the hot tier holds is answered without a thread-pool trip."""
        found: dict[int, bytes | None] = dict(self.in_memory(uids := list(uids)))
        rest = [uid for uid in uids if uid not in found]
        if rest:
            found.update(await self.user.parent.run(self.get_many, rest))
        return found

    async def aopen(self, uid: int) -> MessageStream | None:
        return await self.user.parent.run(self.open, uid)

    async def aread(self, stream: MessageStream, n: int = 256 * 1024) -> bytes:
        """``stream.read(n)`` in the thread pool (for file-backed streams)."""
        if not stream.is_file:
            return stream.read(n)
        return await self.user.parent.run(stream.read, n)

    async def acontains(self, uid: int) -> bool:
        return await self.user.parent.run(self.contains, uid)

    async def aput(self, uid: int, data: bytes | bytearray | memoryview) -> bool:
        return await self.user.parent.run(self.put, uid, data)

    async def aforget(self, uids: Iterable[int]) -> None:
        await self.user.parent.run(self.forget, list(uids))

    async def aindex(self, uids: Iterable[int] | None = None, *,
                     structure: bool = True) -> MailboxIndex:
        wanted = None if uids is None else list(uids)
        return await self.user.parent.run(self.index, wanted, structure=structure)

    async def aupdate_index(self, entries: Iterable[IndexEntry]) -> None:
        await self.user.parent.run(self.update_index, list(entries))


# Keys per statement of _fetch_many: under SQLite's default limit of bound variables.
_FETCH_CHUNK = 500


def _fetch_many(store: Any, keys: list[bytes]) -> dict[bytes, Any]:
    """key -> stored value (bytes, or an open file) for the keys present, like
    ``diskcache.Cache.get(key, read=True)`` of each, with that eviction policy's bookkeeping;
    in one SELECT and one UPDATE per chunk. Uses diskcache's SQL schema (``Cache`` table,
    ``EVICTION_POLICY``), stable across diskcache 5.x (pinned in pyproject.toml). Call it
    inside ``store.transact()``."""
    now = time.time()
    found: dict[bytes, Any] = {}
    for start in range(0, len(keys), _FETCH_CHUNK):
        chunk = keys[start:start + _FETCH_CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = store._sql(
            "SELECT rowid, key, mode, filename, value FROM Cache"
            f" WHERE raw = 1 AND key IN ({marks})"
            " AND (expire_time IS NULL OR expire_time > ?)",
            [sqlite3.Binary(k) for k in chunk] + [now]).fetchall()
        rowids = []
        for rowid, db_key, mode, filename, db_value in rows:
            try:
                found[bytes(db_key)] = store._disk.fetch(mode, filename, db_value, True)
            except OSError:  # deleted meanwhile (by an eviction in another process)
                continue
            rowids.append(rowid)
        _mark_used(store, "rowid", rowids)
    return found


def _mark_used(store: Any, column: str, values: list[Any]) -> None:
    """The eviction policy's bookkeeping of a read (``access_time`` for LRU) for the rows
    whose ``column`` is in ``values``. Call it inside ``store.transact()``."""
    update = diskcache.core.EVICTION_POLICY[store.eviction_policy]["get"]
    if update is None:
        return
    now = time.time()
    for start in range(0, len(values), _FETCH_CHUNK):
        chunk = values[start:start + _FETCH_CHUNK]
        store._sql(f"UPDATE Cache SET {update.format(now=now)}"
                   f" WHERE {column} IN ({','.join('?' * len(chunk))})", chunk)

