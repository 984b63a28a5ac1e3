"""IDLE through the shared upstream IDLE (upstream/shared_idle.py), for one session.

The client gets ``+ idling`` at once. While this session leads, its upstream connection runs
the real IDLE (re-issued every ``idle_renew_seconds``, or NOOP polling every
``idle_poll_interval`` when the upstream has no IDLE) and every response is relayed and
announced to the followers. A follower first keeps its connection quiet and answers news with
one NOOP on it; after ``idle_release_after`` seconds it gives the connection back
(server/idle_release.py) and is told news from one shared reading of the mailbox, in its own
sequence numbers (server/idle_view.py). At ``DONE`` (or to lead) it gets a connection again,
reconciled, before the tagged answer. Anything but DONE is answered BAD (RFC 2177).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

from ..errors import ImapError, UpstreamLost
from ..protocol.command import Command
from ..protocol.framing import Frame, FramerEvent
from ..protocol.response import Continuation, DataResponse, StatusResponse, is_final
from ..upstream.connection import Received, UpstreamConnection
from ..upstream.shared_idle import NEWS, IdleMember, SharedIdle
from .answers import status_line
from .idle_release import give_back, read_elsewhere, take_again, tell
from .idle_view import MailboxState, style_of

if TYPE_CHECKING:
    from .session import Session

ClientEvent = asyncio.Future[FramerEvent | None]


async def shared_idle(session: Session, command: Command, registry: SharedIdle,
                      user: str) -> None:
    assert session.mailbox is not None
    upstream = session._upstream()
    if upstream.lost:
        raise UpstreamLost("Upstream server connection lost")
    member = registry.join((user, session.mailbox.name))
    client: ClientEvent = asyncio.ensure_future(
        session.next_event(session.config.limits.idle_timeout))
    session.write(b"+ idling\r\n")
    await session.drain()
    follower = _Follower(session, member, registry)
    answered = False
    try:
        while not client.done():
            if member.lead.is_set():
                if await follower.take_connection():
                    # Changes since the old leader left were read by this connection before
                    # its IDLE: its IDLE will not report them, so the followers must look.
                    registry.announce(member)
                answered = await _lead(session, session._upstream(), command, member,
                                       registry, client)
                break
            await follower.wait(client)
    finally:
        registry.leave(member)
        if not client.done():
            client.cancel()
    if answered:
        return
    event = client.result()
    if event is not None:
        await follower.take_connection()
    _answer_end(session, command, event)


def _answer_end(session: Session, command: Command, event: FramerEvent | None) -> None:
    if event is None:
        session._closing = True  # the client went away
    elif isinstance(event, Frame) and event.data.strip().upper() == b"DONE":
        session.write(status_line(command.tag, "OK", "Idle completed."))
    else:
        session.write(status_line(command.tag, "BAD", "Expected DONE."))


class _Follower:
    """One following session: holding its connection, or released with what it was told."""

    def __init__(self, session: Session, member: IdleMember, registry: SharedIdle) -> None:
        self.session = session
        self.member = member
        self.registry = registry
        self.style = style_of(session.enabled)
        self.told: MailboxState | None = None  # set while released
        loop = asyncio.get_running_loop()
        self.release_at = loop.time() + session.pool.settings.idle_release_after

    async def wait(self, client: ClientEvent) -> None:
        """Wait for the client, news, leadership, a lost upstream or the time to release."""
        upstream = self.session.upstream
        news = asyncio.ensure_future(self.member.news.wait())
        lead = asyncio.ensure_future(self.member.lead.wait())
        waits: set[asyncio.Future[Any]] = {client, news, lead}
        timeout: float | None = None
        if upstream is not None:
            waits.add(asyncio.ensure_future(upstream.wait_closed()))
            if self.session.credentials is not None:
                timeout = max(0.0, self.release_at - asyncio.get_running_loop().time())
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in waits - {client}:
                fut.cancel()
        if client.done() or self.member.lead.is_set():
            return
        if upstream is not None and upstream.lost:
            raise UpstreamLost("Upstream server connection lost")
        if self.member.news.is_set():
            self.member.news.clear()
            await self._news(upstream)
        elif not done and upstream is not None:
            self.told = await give_back(self.session, self.style)
            self.registry.renew_readings(self.member)

    async def _news(self, upstream: UpstreamConnection | None) -> None:
        session = self.session
        if upstream is not None:  # still holding: its own connection reports the news
            async for item in upstream.execute(Command("", "NOOP")):
                if not is_final(item.response):
                    session.relay(item)
        else:
            assert self.told is not None
            now = await self.registry.reading(
                self.member, lambda: read_elsewhere(session, self.style))
            self.told = tell(session, self.told, now, self.style)
        await session.drain()

    async def take_connection(self) -> bool:
        """Released: get a connection again, the client told what it has not been told.
        False when the connection was kept all along."""
        if self.told is None:
            return False
        told, self.told = self.told, None
        await take_again(self.session, told, self.style)
        await self.session.drain()
        return True


class _Round(Enum):
    ENDED = "ended"  # the client ended the IDLE (or went away)
    REFUSED = "refused"  # the upstream refused the IDLE; its answer went to the client
    RENEW = "renew"  # time to re-issue the upstream IDLE


async def _lead(session: Session, upstream: UpstreamConnection, command: Command,
                member: IdleMember, registry: SharedIdle, client: ClientEvent) -> bool:
    """Run the upstream IDLE (or NOOP polling) until the client ends its own; relay and
    announce news. True when the upstream refused the IDLE and that answer went to the
    client."""
    settings = session.pool.settings

    def relay(item: Received) -> None:
        session.relay(item)
        if isinstance(item.response, DataResponse) and item.response.name in NEWS:
            registry.announce(member)

    if "IDLE" not in upstream.capabilities:
        await poll_for_news(upstream, relay, session.drain, client,
                            settings.idle_poll_interval)
        return False
    while True:
        outcome = await _idle_round(session, upstream, command, relay, client,
                                    settings.idle_renew_seconds)
        if outcome is not _Round.RENEW:
            return outcome is _Round.REFUSED


async def poll_for_news(upstream: UpstreamConnection, relay: Callable[[Received], None],
                        drain: Callable[[], Awaitable[None]], client: ClientEvent,
                        interval: float) -> None:
    """No IDLE upstream: a NOOP every ``interval`` seconds until the client speaks (0: no
    polling, the client is told at its next command)."""
    while not client.done():
        await asyncio.wait({client}, timeout=interval or None)
        if client.done():
            return
        async for item in upstream.execute(Command("", "NOOP")):
            if not is_final(item.response):
                relay(item)
        await drain()


async def _idle_round(session: Session, upstream: UpstreamConnection, command: Command,
                      relay: Callable[[Received], None], client: ClientEvent,
                      renew_after: float) -> _Round:
    """One upstream IDLE, ended by the client or after ``renew_after`` seconds."""
    responses = upstream.execute(command, timeout=None, limited=False).__aiter__()
    next_response = asyncio.ensure_future(responses.__anext__())
    renew: asyncio.Future[Any] = asyncio.ensure_future(asyncio.sleep(renew_after)) \
        if renew_after > 0 else asyncio.get_running_loop().create_future()  # 0: never
    done_sent = finished = False
    try:
        while True:
            waits: set[asyncio.Future[Any]] = {next_response}
            if not done_sent:
                waits |= {client, renew}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if next_response.done():
                try:
                    item = next_response.result()
                except StopAsyncIteration:
                    finished = True
                    return _Round.ENDED
                response = item.response
                if is_final(response):
                    finished = True
                    if isinstance(response, StatusResponse) and response.status != "OK" \
                            and not done_sent:
                        session.relay(item, command.tag)  # the upstream refused the IDLE
                        return _Round.REFUSED
                    return _Round.ENDED if client.done() else _Round.RENEW
                if not isinstance(response, Continuation):
                    relay(item)
                    await session.drain()
                next_response = asyncio.ensure_future(responses.__anext__())
            if (client.done() or renew.done()) and not done_sent:
                upstream.send_line(b"DONE")
                done_sent = True
    finally:
        renew.cancel()
        if not done_sent and not finished:
            with contextlib.suppress(ImapError):
                upstream.send_line(b"DONE")
        if not next_response.done():
            next_response.cancel()
