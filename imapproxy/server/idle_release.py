"""A shared-IDLE follower without an upstream connection: giving it back, reading the mailbox
without it, and getting one again at DONE (or to lead).

Giving back: the connection's view is read (``UID FETCH 1:* (FLAGS)``) and every response of
that reading is relayed, so what the client was told is exactly the reading (unsolicited
FETCH FLAGS are allowed at any time, RFC 3501 7.4.2); then the connection is parked or logged
out by the pool. Getting one again: a parked connection or a new login with the credentials
the session keeps for reconnects, ENABLE again, SELECT / EXAMINE the same mailbox quietly, the
same UIDVALIDITY or ``* BYE``, and whatever the client was not told yet is told
(server/idle_view.py), so its sequence numbers are the new connection's own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import ImapError, SessionEnded
from ..protocol.command import Command
from ..upstream.connection import UpstreamConnection
from .idle_view import MailboxState, NewsStyle, news_lines, read_state, select_quietly
from .reconnect import _expect_ok

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)


def wants_modseq(upstream: UpstreamConnection, style: NewsStyle) -> bool:
    return style.condstore and "CONDSTORE" in upstream.capabilities


async def give_back(session: Session, style: NewsStyle) -> MailboxState:
    """Tell the client the connection's whole view, then hand the connection to the pool."""
    upstream = session.upstream
    assert upstream is not None and session.mailbox is not None
    told = await read_state(upstream, session.mailbox.uidvalidity,
                            wants_modseq(upstream, style), session.relay)
    told.flag_list = session.mailbox.flags_line  # from its SELECT, or relayed since
    await session.drain()
    session.upstream = None
    await session.pool.release(upstream, reusable=session.reusable, selected=True)
    log.debug("idle follower released its upstream connection user=%s", session.user)
    return told


async def read_elsewhere(session: Session, style: NewsStyle) -> MailboxState:
    """The mailbox as it is now, read on a short-lived connection (EXAMINE: read-only, so no
    \\Recent is taken from anyone)."""
    assert session.mailbox is not None
    upstream = await _login(session)
    modseq = wants_modseq(upstream, style)
    reusable = False
    try:
        selected = await select_quietly(upstream, session.mailbox.name, read_only=True)
        state = await read_state(upstream, selected.uidvalidity, modseq)
        state.flag_list = selected.flags_line
        reusable = not modseq  # MODSEQ switched CONDSTORE on for good (RFC 7162)
        return state
    finally:
        await session.pool.release(upstream, reusable=reusable, selected=True)


def tell(session: Session, told: MailboxState, now: MailboxState, style: NewsStyle
         ) -> MailboxState:
    """Write what changed from ``told`` to ``now``; ``now`` is what the client knows then."""
    assert session.mailbox is not None
    if now.uidvalidity != told.uidvalidity:
        raise SessionEnded("Mailbox UIDVALIDITY changed; please resync")
    if now.flag_list is None:  # not read this time: what the client was told stands
        now.flag_list = told.flag_list
    for line in news_lines(told, now, style):
        session.write(line)
    if now.flag_list is not None:
        session.mailbox.flags_line = now.flag_list
    session.mailbox.exists = len(now.uids)
    session.mailbox.uids = list(now.uids)
    return now


async def take_again(session: Session, told: MailboxState, style: NewsStyle) -> None:
    """A connection for the session again, in the client's mailbox, the client told what
    changed meanwhile."""
    box = session.mailbox
    assert box is not None
    upstream = await _login(session)
    try:
        if session.enabled:
            await _expect_ok(upstream, Command("", "ENABLE", session.enabled))
        selected = await select_quietly(upstream, box.name, box.read_only)
        if selected.uidvalidity != told.uidvalidity:
            raise SessionEnded("Mailbox UIDVALIDITY changed; please resync")
        now = await read_state(upstream, selected.uidvalidity, wants_modseq(upstream, style))
        now.flag_list = selected.flags_line
    except BaseException:
        await session.pool.release(upstream, reusable=False, selected=True)
        raise
    tell(session, told, now, style)
    session.hooks.after_login(upstream)
    if session.metrics is not None:
        upstream.on_round_trip = session.metrics.round_trip
    session.upstream = upstream
    log.debug("idle follower took an upstream connection again user=%s", session.user)


async def _login(session: Session) -> UpstreamConnection:
    credentials = session.credentials
    if credentials is None:
        raise SessionEnded("Upstream connection cannot be opened again")
    try:
        upstream, _ = await session.pool.login(credentials.user, credentials.password,
                                               credentials.authzid)
    except ImapError as exc:
        raise SessionEnded(f"Upstream server unavailable: {exc.text}") from exc
    if upstream is None:
        raise SessionEnded("Upstream server refused to log in again")
    return upstream
