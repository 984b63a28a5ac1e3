"""Graceful shutdown (SIGTERM): the listeners are already closed; every session is told
``* BYE`` with the reason, sessions between commands close at once, and those running a
command get ``grace`` seconds to finish it before they are cut."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Set as AbstractSet
from typing import Protocol


class Stoppable(Protocol):
    def shutdown(self, reason: str, *, force: bool = False) -> None: ...


async def drain_sessions(sessions: AbstractSet[Stoppable], reason: str, grace: float) -> int:
    """Stop every session; returns how many had to be cut at the end of the grace period."""
    for session in list(sessions):
        session.shutdown(reason)
    deadline = time.monotonic() + grace
    while sessions and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    late = list(sessions)
    for session in late:
        session.shutdown(reason, force=True)
    return len(late)
