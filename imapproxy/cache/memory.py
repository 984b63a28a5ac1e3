"""A byte-bounded, thread-safe LRU of (bytes, bytes) values.

Two users: the hot tier of the message cache (verified bytes of recently read small
messages, with their parsed structure once known, so a warm FETCH needs no SQLite, file read
or digest; store.py) and the filtered variants that must never reach the disk
(filtering/content.py). Values are immutable per key (a message's bytes at one UIDVALIDITY
and UID never change), so a copy here can be stale only by being deleted upstream, which the
callers drop with :meth:`discard`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class MemoryLRU(Generic[K]):
    """``key -> (data, extra)`` up to ``max_bytes`` of both, least recently used dropped
    first. A value over ``max_entry`` bytes (default: a quarter of the bound) is not kept."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024, max_entry: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_entry = max_bytes // 4 if max_entry is None else min(max_entry, max_bytes)
        self.size = 0
        self._items: OrderedDict[K, tuple[bytes, bytes]] = OrderedDict()
        self._lock = threading.Lock()  # the cache's thread pool and the event loop share it

    def get(self, key: K) -> tuple[bytes, bytes] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def get_many(self, keys: Iterable[K]) -> dict[K, tuple[bytes, bytes]]:
        """The values of the ``keys`` present, each made most recently used."""
        out: dict[K, tuple[bytes, bytes]] = {}
        with self._lock:
            items = self._items
            for key in keys:
                found = items.get(key)
                if found is not None:
                    items.move_to_end(key)
                    out[key] = found
        return out

    def put(self, key: K, data: bytes, extra: bytes = b"") -> None:
        cost = len(data) + len(extra)
        if cost > self.max_entry:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size -= len(old[0]) + len(old[1])
            self._items[key] = (data, extra)
            self.size += cost
            while self.size > self.max_bytes:
                _, (d, e) = self._items.popitem(last=False)
                self.size -= len(d) + len(e)

    def set_extra(self, key: K, extra: bytes) -> None:
        """Attach ``extra`` to the value of ``key``, if it is present (else nothing)."""
        with self._lock:
            found = self._items.get(key)
            if found is None or found[1] == extra:
                return
            if len(found[0]) + len(extra) > self.max_entry:
                self._items.pop(key)
                self.size -= len(found[0]) + len(found[1])
                return
            self._items[key] = (found[0], extra)
            self.size += len(extra) - len(found[1])
            while self.size > self.max_bytes:
                _, (d, e) = self._items.popitem(last=False)
                self.size -= len(d) + len(e)

    def discard(self, keys: Iterable[K]) -> None:
        with self._lock:
            for key in keys:
                old = self._items.pop(key, None)
                if old is not None:
                    self.size -= len(old[0]) + len(old[1])

    def discard_where(self, predicate: Callable[[K], bool]) -> None:
        """Drop every key ``predicate`` is true of (a purged user's entries: rare, O(n))."""
        with self._lock:
            doomed = [key for key in self._items if predicate(key)]
        self.discard(doomed)

    def __len__(self) -> int:
        return len(self._items)
