"""A circuit breaker in front of the upstream: stop hammering a server that is down.

Closed: everything goes through. After ``failures`` consecutive failures (connection refused,
timeouts, drops) it opens: new upstream connections are refused at once, so clients get
``NO [UNAVAILABLE]`` instead of waiting for a connect timeout each. After ``cooldown`` seconds
it lets one probe through (half-open); the probe's success closes it, its failure re-opens it.
A probe that never reports (its session vanished) is replaced after another ``cooldown``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum

log = logging.getLogger(__name__)


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(self, failures: int = 5, cooldown: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures  # 0: never opens
        self.cooldown = cooldown
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._since = 0.0  # when it opened, or when the probe was let through

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """May a new upstream connection be tried now? (Half-open: one probe at a time.)"""
        if self._state is BreakerState.CLOSED:
            return True
        if self._clock() - self._since < self.cooldown:
            return False
        self._state = BreakerState.HALF_OPEN
        self._since = self._clock()
        log.info("upstream circuit breaker half-open: probing")
        return True

    def retry_after(self) -> float:
        """Seconds until a probe may go (0 when closed)."""
        if self._state is BreakerState.CLOSED:
            return 0.0
        return max(0.0, self.cooldown - (self._clock() - self._since))

    def success(self) -> None:
        if self._state is not BreakerState.CLOSED:
            log.info("upstream circuit breaker closed: the upstream answers again")
        self._state = BreakerState.CLOSED
        self._failures = 0

    def failure(self) -> None:
        self._failures += 1
        if self.threshold <= 0:
            return
        if self._state is BreakerState.HALF_OPEN or (
                self._state is BreakerState.CLOSED and self._failures >= self.threshold):
            log.warning("upstream circuit breaker open after %d failure(s); probing again in "
                        "%.0f s", self._failures, self.cooldown)
            self._state = BreakerState.OPEN
            self._since = self._clock()
