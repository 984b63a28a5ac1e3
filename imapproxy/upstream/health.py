"""What an upstream connection reports about the server's health, and the pause it owes.

Every command goes through ``pause()`` first (the back-off after throttling) and reports how
long the first response took, ``[THROTTLED]`` answers, and failures (timeouts, drops). The
base class does nothing: a connection without a pool behaves exactly as before.
"""

from __future__ import annotations

import asyncio

from .backoff import Backoff
from .breaker import CircuitBreaker

THROTTLE_RETRIES = 5  # a [THROTTLED] command is re-sent this many times before the NO is passed on


class UpstreamHealth:
    async def pause(self) -> None:
        """Wait out the back-off owed before the next command."""

    def responded(self, seconds: float) -> None:
        """The upstream answered a command; its first response took ``seconds``."""

    def throttled(self) -> None:
        """The upstream answered ``NO [THROTTLED]``."""

    def failed(self) -> None:
        """The upstream timed out or dropped the connection."""


NO_HEALTH = UpstreamHealth()


class UserHealth(UpstreamHealth):
    """One user's back-off (servers throttle per user) and the proxy-wide breaker."""

    def __init__(self, backoff: Backoff, breaker: CircuitBreaker, slow_after: float) -> None:
        self.backoff = backoff
        self.breaker = breaker
        self.slow_after = slow_after  # 0: response time is not judged

    async def pause(self) -> None:
        delay = self.backoff.delay()
        if delay > 0:
            await asyncio.sleep(delay)

    def responded(self, seconds: float) -> None:
        self.breaker.success()
        if 0 < self.slow_after < seconds:
            self.backoff.throttled()

    def throttled(self) -> None:
        self.backoff.throttled()

    def failed(self) -> None:
        self.breaker.failure()
