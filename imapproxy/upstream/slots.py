"""Caps on open upstream connections, per user and in total, with a fair waiting queue.

A slot is held for as long as an upstream connection is open (parked ones included). Logins
beyond a cap wait in FIFO order: a freed slot goes to the oldest waiter it fits (a waiter held
back only by its own user's cap does not block others), so nobody starves and the caps are
never exceeded. A waiter that times out gets ``NO [UNAVAILABLE]``.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

from ..errors import UpstreamUnavailable


@dataclass(eq=False)
class _Waiter:
    user: str
    granted: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class ConnectionSlots:
    def __init__(self, total: int = 0, per_user: int = 0) -> None:
        self.total = total  # 0: no cap
        self.per_user = per_user
        self.open_total = 0
        self.peak_total = 0  # the most ever held at once (a measured figure)
        self._by_user: collections.Counter[str] = collections.Counter()
        self._waiters: collections.deque[_Waiter] = collections.deque()

    def held_by(self, user: str) -> int:
        return self._by_user[user]

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.granted.done())

    def total_full(self) -> bool:
        return 0 < self.total <= self.open_total

    def user_full(self, user: str) -> bool:
        return 0 < self.per_user <= self._by_user[user]

    def try_take(self, user: str) -> bool:
        """Take a slot at once if one is free and no earlier waiter could use it."""
        if self.total_full() or self.user_full(user) \
                or any(w.user == user for w in self._waiters):
            return False  # (waiters that fit are granted at once: the others wait on their user)
        self._take(user)
        return True

    async def take(self, user: str, timeout: float) -> None:
        """Take a slot, waiting in line up to ``timeout`` seconds. Raises UpstreamUnavailable."""
        if self.try_take(user):
            return
        waiter = _Waiter(user)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.granted), timeout)
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            if _granted(waiter):
                self.give_back(user)  # granted just as the login was abandoned
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        if _granted(waiter):
            return
        waiter.granted.cancel()
        raise UpstreamUnavailable(
            "Too many upstream connections; none was freed in time, try again later")

    def give_back(self, user: str) -> None:
        """A connection closed: its slot goes to the first waiter it fits."""
        self.open_total -= 1
        self._by_user[user] -= 1
        if self._by_user[user] <= 0:
            del self._by_user[user]
        self._grant()

    def _take(self, user: str) -> None:
        self.open_total += 1
        self._by_user[user] += 1
        self.peak_total = max(self.peak_total, self.open_total)

    def _grant(self) -> None:
        for waiter in list(self._waiters):
            if waiter.granted.done():
                self._waiters.remove(waiter)
                continue
            if self.total_full():
                return  # first come, first served for the total cap
            if self.user_full(waiter.user):
                continue  # held back by its own user's cap only: let the next one go
            self._waiters.remove(waiter)
            self._take(waiter.user)
            waiter.granted.set_result(None)


def _granted(waiter: _Waiter) -> bool:
    return waiter.granted.done() and not waiter.granted.cancelled()
