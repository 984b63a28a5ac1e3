"""Back-off after upstream throttling, like Dovecot imapc's ``throttle:INIT:MAX:SHRINK``.

A server that answers ``[THROTTLED]`` (or answers slowly) is overloaded: sending the next
command at once makes it worse. The pause starts at ``initial``, doubles on each throttle up to
``maximum``, and halves for every ``shrink_after`` seconds that pass without one (so a burst is
forgotten quickly). Pure arithmetic over an injectable clock: unit-tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Backoff:
    def __init__(self, initial: float = 0.05, maximum: float = 16.0, shrink_after: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.initial = initial
        self.maximum = max(initial, maximum)
        self.shrink_after = shrink_after
        self._clock = clock
        self._delay = 0.0
        self._since = 0.0  # when _delay last changed

    def throttled(self) -> float:
        """The upstream asked us to slow down: double the pause (at least ``initial``)."""
        self._delay = min(self.maximum, max(self.initial, self.delay() * 2))
        self._since = self._clock()
        return self._delay

    def delay(self) -> float:
        """The pause owed before the next command, after shrinking for the quiet time."""
        if self._delay <= 0 or self.shrink_after <= 0:
            return self._delay
        periods = int((self._clock() - self._since) / self.shrink_after)
        if periods > 0:
            self._delay = self._delay / 2 ** min(periods, 64)
            self._since += periods * self.shrink_after
            if self._delay < self.initial:
                self._delay = 0.0
        return self._delay
