"""Single-flight body fetches: one upstream fetch per message, however many sessions ask.

Ten sessions of one user opening the same uncached 20 MB message at once would otherwise
each fetch it and each hold it in memory. The first session to ask claims the message; the
others wait for that fetch to end and then read the message from the cache (streamed, for a
large one). Claims live in memory, per user cache, on the proxy's one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class InFlight:
    """Keys of the messages being fetched right now, each with the future its fetch ends."""

    def __init__(self) -> None:
        self._pending: dict[bytes, asyncio.Future[None]] = {}

    def claim(self, keys: Iterable[bytes]) -> tuple[list[bytes], list[asyncio.Future[None]]]:
        """Claim the keys nobody is fetching (the caller must :meth:`release` them, also
        on failure); returns them and the futures of the others, to wait for."""
        mine: list[bytes] = []
        theirs: list[asyncio.Future[None]] = []
        for key in keys:
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = asyncio.get_running_loop().create_future()
                mine.append(key)
            elif pending not in theirs:
                theirs.append(pending)
        return mine, theirs

    def waiting(self, keys: Iterable[bytes]) -> list[asyncio.Future[None]]:
        """The futures of the keys another fetch holds."""
        found = {id(f): f for f in (self._pending.get(k) for k in keys) if f is not None}
        return list(found.values())

    def release(self, keys: Iterable[bytes]) -> None:
        for key in keys:
            pending = self._pending.pop(key, None)
            if pending is not None and not pending.done():
                pending.set_result(None)


async def wait_all(futures: list[asyncio.Future[None]]) -> None:
    """Wait for other sessions' fetches; their failures are theirs (the waiter reads the
    cache afterwards and fetches itself what is still missing). Cancelling the waiter
    never cancels the fetch it waits for."""
    if futures:
        await asyncio.wait([asyncio.shield(f) for f in futures])
