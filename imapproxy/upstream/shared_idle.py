"""Shared IDLE: one upstream IDLE per user and mailbox, however many clients idle on it.

A phone, a laptop and a webmail tab idling on the same INBOX used to hold three upstream
IDLEs. Now the first becomes the *leader*: its session runs the real IDLE on its own upstream
connection. The others (*followers*) send nothing upstream while they wait; when the leader
sees news (EXISTS, EXPUNGE, FETCH, VANISHED), every follower is woken and asks its own
connection (NOOP), so each client gets the news in its own sequence numbers, exactly as the
upstream reports them to that connection. When the leader's client ends its IDLE, the oldest
follower takes over and starts an upstream IDLE on its connection (which reports whatever
changed meanwhile at once). Pure coordination, no I/O: the session side is server/idle.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

# Untagged responses that mean the mailbox changed: followers must look.
NEWS = frozenset({"EXISTS", "EXPUNGE", "FETCH", "VANISHED", "RECENT"})

GroupKey = tuple[str, bytes]  # (user, mailbox name)


@dataclass(eq=False)
class IdleMember:
    key: GroupKey
    news: asyncio.Event = field(default_factory=asyncio.Event)  # the leader saw changes
    lead: asyncio.Event = field(default_factory=asyncio.Event)  # this one must run the IDLE


class SharedIdle:
    def __init__(self) -> None:
        self._groups: dict[GroupKey, list[IdleMember]] = {}  # oldest first; [0] leads

    def join(self, key: GroupKey) -> IdleMember:
        member = IdleMember(key)
        group = self._groups.setdefault(key, [])
        group.append(member)
        if len(group) == 1:
            member.lead.set()
        return member

    def leave(self, member: IdleMember) -> None:
        group = self._groups.get(member.key, [])
        if member not in group:
            return
        was_leader = group[0] is member
        group.remove(member)
        if not group:
            del self._groups[member.key]
        elif was_leader:
            group[0].lead.set()

    def announce(self, leader: IdleMember) -> None:
        """The leader saw news: wake every follower."""
        for member in self._groups.get(leader.key, []):
            if member is not leader:
                member.news.set()

    @property
    def idling(self) -> int:
        """Clients idling through this registry."""
        return sum(len(group) for group in self._groups.values())

    @property
    def leaders(self) -> int:
        """Upstream IDLEs they need."""
        return len(self._groups)
