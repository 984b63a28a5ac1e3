"""The shared upstream limits: a sliding-window command rate and a cap on commands in flight."""

from __future__ import annotations

import asyncio
import time

from imapproxy.upstream.limits import UpstreamLimiter


async def test_rate_limit_holds_in_every_window() -> None:
    limiter = UpstreamLimiter(rate_limit=100)
    stamps: list[float] = []

    async def one() -> None:
        async with limiter.command():
            stamps.append(time.monotonic())

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(130))), 10)
    stamps.sort()
    assert len(stamps) == 130
    # No 1-second window ever holds more than 100 commands.
    assert all(later - first >= 0.99 for first, later in zip(stamps, stamps[100:]))


async def test_concurrency_cap_is_never_exceeded() -> None:
    limiter = UpstreamLimiter(max_concurrent=3)
    running = peak = 0

    async def one() -> None:
        nonlocal running, peak
        async with limiter.command():
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.001)
            running -= 1

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(40))), 10)
    assert peak == 3


async def test_no_limits_means_no_waiting_objects() -> None:
    limiter = UpstreamLimiter()
    async with limiter.command():
        pass
    assert limiter._throttler is None and limiter._slots is None
