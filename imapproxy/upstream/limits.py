"""Bounds on what all sessions together ask of one upstream: a command rate (asyncio-throttle)
and a number of commands in flight, so the proxy never floods a server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from asyncio_throttle.throttler import Throttler

from ..config import UpstreamConfig


class UpstreamLimiter:
    """Shared by every connection to one upstream. ``async with limiter.command():`` around
    each command; with both settings at 0 it costs nothing."""

    def __init__(self, rate_limit: float = 0.0, max_concurrent: int = 0) -> None:
        self._throttler: Throttler | None = None
        if rate_limit >= 1:
            self._throttler = Throttler(rate_limit=int(rate_limit), period=1.0)
        elif rate_limit > 0:
            self._throttler = Throttler(rate_limit=1, period=1.0 / rate_limit)
        self._slots = asyncio.Semaphore(max_concurrent) if max_concurrent > 0 else None

    @classmethod
    def from_config(cls, config: UpstreamConfig) -> UpstreamLimiter:
        return cls(config.rate_limit, config.max_concurrent_commands)

    @contextlib.asynccontextmanager
    async def command(self) -> AsyncIterator[None]:
        if self._slots is not None:
            await self._slots.acquire()
        try:
            if self._throttler is not None:
                await self._throttler.acquire()  # type: ignore[no-untyped-call]
            yield
        finally:
            if self._slots is not None:
                self._slots.release()


UNLIMITED = UpstreamLimiter()
