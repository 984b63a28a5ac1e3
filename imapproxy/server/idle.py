"""IDLE through the shared upstream IDLE (upstream/shared_idle.py), for one session.

The client gets ``+ idling`` at once. While this session leads, its upstream connection runs
the real IDLE and every response is relayed (and announced to the followers). While it
follows, its connection stays quiet until the leader announces news; then one NOOP on its own
connection brings this client's own EXISTS/EXPUNGE/FETCH, in its own sequence numbers.
``DONE`` (or anything else, answered BAD, as RFC 2177 wants) ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from ..errors import ImapError, UpstreamLost
from ..protocol.command import Command
from ..protocol.framing import Frame, FramerEvent
from ..protocol.response import Continuation, DataResponse, StatusResponse, is_final
from ..upstream.connection import UpstreamConnection
from ..upstream.shared_idle import NEWS, IdleMember, SharedIdle
from .answers import status_line

if TYPE_CHECKING:
    from .session import Session


async def shared_idle(session: Session, command: Command, registry: SharedIdle,
                      user: str) -> None:
    assert session.mailbox is not None
    upstream = session._upstream()
    if upstream.lost:
        raise UpstreamLost("Upstream server connection lost")
    member = registry.join((user, session.mailbox.name))
    client: asyncio.Future[FramerEvent | None] = asyncio.ensure_future(
        session.next_event(session.config.limits.idle_timeout))
    session.write(b"+ idling\r\n")
    await session.writer.drain()
    answered = False
    try:
        while not client.done():
            if member.lead.is_set():
                answered = await _lead(session, upstream, command, member, registry, client)
                break
            await _follow(session, upstream, member, client)
    finally:
        registry.leave(member)
        if not client.done():
            client.cancel()
    if not answered:
        _answer_end(session, command, client.result())


def _answer_end(session: Session, command: Command, event: FramerEvent | None) -> None:
    if event is None:
        session._closing = True  # the client went away
    elif isinstance(event, Frame) and event.data.strip().upper() == b"DONE":
        session.write(status_line(command.tag, "OK", "Idle completed."))
    else:
        session.write(status_line(command.tag, "BAD", "Expected DONE."))


async def _follow(session: Session, upstream: UpstreamConnection, member: IdleMember,
                  client: asyncio.Future[FramerEvent | None]) -> None:
    """Wait for the client, news, leadership or a lost upstream; answer news with a NOOP."""
    news = asyncio.ensure_future(member.news.wait())
    lead = asyncio.ensure_future(member.lead.wait())
    lost = asyncio.ensure_future(upstream.wait_closed())
    waits: set[asyncio.Future[Any]] = {client, news, lead, lost}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in (news, lead, lost):
            fut.cancel()
    if client.done():
        return
    if lost.done() and not lost.cancelled():
        raise UpstreamLost("Upstream server connection lost")
    if member.news.is_set():
        member.news.clear()
        async for item in upstream.execute(Command("", "NOOP")):
            if not is_final(item.response):
                session.relay(item)
        await session.writer.drain()


async def _lead(session: Session, upstream: UpstreamConnection, command: Command,
                member: IdleMember, registry: SharedIdle,
                client: asyncio.Future[FramerEvent | None]) -> bool:
    """Run the upstream IDLE until the client ends its own; relay and announce news.
    True when the upstream refused the IDLE and that answer went to the client."""
    responses = upstream.execute(command, timeout=None, limited=False).__aiter__()
    next_response = asyncio.ensure_future(responses.__anext__())
    done_sent = finished = False
    try:
        while True:
            waits: set[asyncio.Future[Any]] = {next_response}
            if not done_sent:
                waits.add(client)
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if next_response.done():
                try:
                    item = next_response.result()
                except StopAsyncIteration:
                    finished = True
                    return False
                response = item.response
                if is_final(response):
                    finished = True
                    if isinstance(response, StatusResponse) and response.status != "OK" \
                            and not done_sent:
                        session.relay(item, command.tag)  # the upstream refused the IDLE
                        return True
                    return False
                if not isinstance(response, Continuation):
                    session.relay(item)
                    if isinstance(response, DataResponse) and response.name in NEWS:
                        registry.announce(member)
                    await session.writer.drain()
                next_response = asyncio.ensure_future(responses.__anext__())
            if client.done() and not done_sent:
                upstream.send_line(b"DONE")
                done_sent = True
    finally:
        if not done_sent and not finished:
            with contextlib.suppress(ImapError):
                upstream.send_line(b"DONE")
        if not next_response.done():
            next_response.cancel()
