"""Filtered message bytes for the content engine, cached under the chain's identity.

The raw upstream bytes stay in the message cache as always. The filtered variant of a
message is kept:

- on disk, in the same user cache, as a mailbox of its own whose key is the real mailbox
  key, a NUL (never part of an IMAP name) and the chain identity: same UIDVALIDITY rule,
  same LRU, same integrity checks, and its index holds the filtered structure;
- or, when a filter of the chain says ``cache_output = False`` (decrypted plaintext), only
  in a bounded in-memory LRU shared by the process (``MemoryVariants``), never on disk.

A message the chain leaves as it was (the common case: no PGP, no large image) is stored as
``UNCHANGED`` with its structure, not as a second copy: its raw bytes are served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

from ..cache import IndexEntry, MailboxCache, UserCache
from ..cache.memory import MemoryLRU
from ..cache.store import mailbox_key
from ..mime.render import structure_blob
from .api import FilterContext
from .chain import FilterChain

UNCHANGED = b""  # stored for a message the chain left as it was (the raw bytes are served)
RawBodies = Callable[[list[int]], Awaitable[dict[int, bytes]]]
MemoryKey = tuple[str, bytes, int, int, str]  # user key, mailbox, UIDVALIDITY, UID, chain


def variant_mailbox(name: bytes, identity: str) -> bytes:
    """The cache mailbox that holds ``name``'s messages as filtered by chain ``identity``."""
    return mailbox_key(name) + b"\0filtered:" + identity.encode("ascii")


class MemoryVariants(MemoryLRU[MemoryKey]):
    """Filtered bytes (and their structure) that must never reach the disk, least recently
    used dropped first beyond ``max_bytes``."""


class FilteredContent:
    """The filtered messages of one selected mailbox, for one chain."""

    def __init__(self, chain: FilterChain, context: FilterContext, user_key: str,
                 uidvalidity: int, memory: MemoryVariants,
                 disk: MailboxCache | None = None) -> None:
        self.chain = chain
        self.context = context
        self.disk = disk if chain.cache_output else None
        self.memory = memory
        self._key = (user_key, context.mailbox.encode("utf-8", "surrogateescape"), uidvalidity)
        self._structures: dict[int, bytes] = {}

    @classmethod
    async def open(cls, chain: FilterChain, context: FilterContext, user_key: str,
                   uidvalidity: int, memory: MemoryVariants,
                   user_cache: UserCache | None) -> FilteredContent:
        disk = None
        if user_cache is not None and chain.cache_output:
            name = variant_mailbox(context.mailbox.encode("utf-8", "surrogateescape"),
                                   chain.identity)
            disk = await user_cache.amailbox(name, uidvalidity)
        return cls(chain, context, user_key, uidvalidity, memory, disk)

    def _memory_key(self, uid: int) -> MemoryKey:
        return (*self._key, uid, self.chain.identity)

    async def bodies(self, uids: list[int], raw_bodies: RawBodies) -> dict[int, bytes]:
        """Filtered bytes of ``uids``: cached, else filtered now from the raw bytes
        ``raw_bodies`` gives (the cache or the upstream)."""
        self._structures = {}  # only this call's: structures() follows for the same uids
        found: dict[int, bytes] = {}
        unchanged: list[int] = []  # the chain left these alone: their raw bytes are served
        for uid, data, structure in await self._cached(uids):
            if data == UNCHANGED:
                unchanged.append(uid)
            else:
                found[uid] = data
            if structure:
                self._structures[uid] = structure
        missing = [uid for uid in uids if uid not in found and uid not in unchanged]
        if not missing and not unchanged:
            return found
        raw = await raw_bodies(missing + unchanged)
        found.update({uid: raw[uid] for uid in unchanged if uid in raw})
        fresh = {uid: raw[uid] for uid in missing if uid in raw}
        if not fresh:
            return found
        # Filters are CPU work (decryption, image recoding): off the event loop.
        made, structures = await asyncio.to_thread(self._filter, fresh)
        self._structures.update(structures)
        # What is stored: UNCHANGED for output equal to the input (no second copy); an
        # output emptied by a filter cannot be told from UNCHANGED, so it is not stored.
        kept = {uid: UNCHANGED if data is fresh[uid] or data == fresh[uid] else data
                for uid, data in made.items() if data or not fresh[uid]}
        if self.disk is not None:
            for uid, data in kept.items():
                await self.disk.aput(uid, data)
            await self.disk.aupdate_index(
                IndexEntry(uid, size=len(made[uid]), internaldate=None,
                           structure=structures[uid]) for uid in kept)
        else:
            for uid, data in kept.items():
                self.memory.put(self._memory_key(uid), data, structures[uid])
        found.update(made)
        return found

    async def unchanged(self, uids: list[int]) -> list[int]:
        """Those of ``uids`` known to be left as they were by the chain: their upstream bytes
        (streamed from the cache when large) are what the client sees."""
        return [uid for uid, data, _ in await self._cached(uids) if data == UNCHANGED]

    async def _cached(self, uids: list[int]) -> list[tuple[int, bytes, bytes]]:
        """(uid, stored variant or UNCHANGED, structure if at hand) of the cached ones."""
        if self.disk is not None:
            return [(uid, data, b"") for uid, data in (await self.disk.aget_many(uids)).items()
                    if data is not None]
        out = []
        for uid in uids:
            hit = self.memory.get(self._memory_key(uid)) if self.chain else None
            if hit is not None:
                out.append((uid, *hit))
        return out

    def _filter(self, raw: dict[int, bytes]) -> tuple[dict[int, bytes], dict[int, bytes]]:
        made = {uid: self.chain.apply(data, replace(self.context, uid=uid))
                for uid, data in raw.items()}
        return made, {uid: structure_blob(data) for uid, data in made.items()}

    async def structures(self, bodies: dict[int, bytes]) -> dict[int, bytes]:
        """The part tree of each filtered message: known from filtering or the variant's
        index, else parsed now."""
        known = {uid: self._structures[uid] for uid in bodies if uid in self._structures}
        rest = [uid for uid in bodies if uid not in known]
        if self.disk is not None and rest:
            index = await self.disk.aindex(rest)
            known.update({uid: e.structure for uid, e in index.items() if e.structure})
        for uid, raw in bodies.items():
            if uid not in known:
                known[uid] = structure_blob(raw)
        return known
