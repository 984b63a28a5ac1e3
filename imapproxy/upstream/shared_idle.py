"""Shared IDLE: one upstream IDLE per user and mailbox, however many clients idle on it.

A phone, a laptop and a webmail tab idling on the same INBOX used to hold three upstream
IDLEs. Now the first becomes the *leader*: its session runs the real IDLE on its own upstream
connection. The others (*followers*) send nothing upstream while they wait; when the leader
sees news (EXISTS, EXPUNGE, FETCH, VANISHED), every follower is woken and asks its own
connection (NOOP), so each client gets the news in its own sequence numbers, exactly as the
upstream reports them to that connection. When the leader's client ends its IDLE, the oldest
follower takes over and starts an upstream IDLE on its connection (which reports whatever
changed meanwhile at once).

Followers that gave their connection back (server/idle_release.py) cannot ask their own
connection: they share one *reading* of the mailbox per burst of news (``reading``), started
after the news it must cover, so ten released followers cost one short EXAMINE, not ten.
Pure coordination, no I/O: the session side is server/idle.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# Untagged responses that mean the mailbox changed: followers must look.
NEWS = frozenset({"EXISTS", "EXPUNGE", "FETCH", "VANISHED", "RECENT"})

GroupKey = tuple[str, bytes]  # (user, mailbox name)


@dataclass(eq=False)
class IdleMember:
    key: GroupKey
    news: asyncio.Event = field(default_factory=asyncio.Event)  # the leader saw changes
    lead: asyncio.Event = field(default_factory=asyncio.Event)  # this one must run the IDLE


@dataclass(eq=False)
class _Reading:
    """The latest reading of a group's mailbox, and the one under way."""

    announced: int = 0  # news announced so far (a generation number)
    covers: int = -1  # the generation the latest finished reading started at
    result: Any = None
    running: asyncio.Future[Any] | None = None


class SharedIdle:
    def __init__(self) -> None:
        self._groups: dict[GroupKey, list[IdleMember]] = {}  # oldest first; [0] leads
        self._readings: dict[GroupKey, _Reading] = {}

    def join(self, key: GroupKey) -> IdleMember:
        member = IdleMember(key)
        group = self._groups.setdefault(key, [])
        group.append(member)
        if len(group) == 1:
            member.lead.set()
            self._readings[key] = _Reading()
        return member

    def leave(self, member: IdleMember) -> None:
        group = self._groups.get(member.key, [])
        if member not in group:
            return
        was_leader = group[0] is member
        group.remove(member)
        if not group:
            del self._groups[member.key]
            del self._readings[member.key]
        elif was_leader:
            group[0].lead.set()

    def announce(self, leader: IdleMember) -> None:
        """The leader saw news: wake every follower."""
        reading = self._readings.get(leader.key)
        if reading is not None:
            reading.announced += 1
        for member in self._groups.get(leader.key, []):
            if member is not leader:
                member.news.set()

    def renew_readings(self, member: IdleMember) -> None:
        """Readings under way or done are too old for ``member`` (it just took its own)."""
        reading = self._readings.get(member.key)
        if reading is not None:
            reading.announced += 1

    async def reading(self, member: IdleMember, read: Callable[[], Awaitable[Any]]) -> Any:
        """A reading of the mailbox started after every news announced so far: the one under
        way or finished if it qualifies, else ``read()`` (run once for all who wait)."""
        state = self._readings[member.key]
        wanted = state.announced
        while state.covers < wanted:
            if state.running is None:
                state.running = asyncio.ensure_future(self._run(state, read))
            await asyncio.shield(state.running)
        return state.result

    @staticmethod
    async def _run(state: _Reading, read: Callable[[], Awaitable[Any]]) -> None:
        started = state.announced
        try:
            state.result = await read()
            state.covers = started
        finally:
            state.running = None

    @property
    def idling(self) -> int:
        """Clients idling through this registry."""
        return sum(len(group) for group in self._groups.values())

    @property
    def leaders(self) -> int:
        """Upstream IDLEs they need."""
        return len(self._groups)
