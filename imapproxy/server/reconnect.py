"""Surviving an upstream that drops mid-command, the way Dovecot's imapc does: an idempotent
read (FETCH, SEARCH, STATUS, LIST, LSUB, SELECT, EXAMINE) is run again, once, on a fresh
upstream connection: logged in with the session's credentials (held in memory only, for this
purpose), the extensions the client enabled switched on again, and the selected mailbox
selected again. Nothing else is ever retried: an APPEND, COPY, MOVE, EXPUNGE or STORE the
upstream may or may not have carried out ends the session with ``* BYE`` instead, so the
client never sees OK for something that was not confirmed.

The mailbox must be the one the client knows: same UIDVALIDITY, and every message the
client knows still at its sequence number (new ones at the end are announced with EXISTS).
Otherwise the session ends with BYE and the client resynchronises on its own: the proxy
cannot tell it what was expunged while no connection was there to hear it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ImapError, SessionEnded, UpstreamLost
from ..protocol.command import Command
from ..protocol.response import DataResponse, StatusResponse, is_final
from ..protocol.tokens import astring_token
from ..upstream.connection import UpstreamConnection
from .mailbox import SelectedMailbox, all_uids_command, uids_from_search

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

RETRYABLE = frozenset({"FETCH", "SEARCH", "STATUS", "LIST", "LSUB", "SELECT", "EXAMINE"})
# Commands whose untagged answers a client may see twice without harm (the same FETCH, LIST
# or STATUS data again); a SEARCH is retried only if none of its answer went out yet.
REPEATABLE = RETRYABLE - {"SEARCH"}


@dataclass(frozen=True)
class Credentials:
    """What the session logged in with; only kept to log in again after a drop."""

    user: bytes
    password: bytes = b""
    authzid: bytes = b""

    def __repr__(self) -> str:  # never shown, even in a traceback
        return f"Credentials(user={self.user!r})"


async def run_with_retry(session: Session, command: Command,
                         handler: Callable[[Command], Awaitable[object]]) -> None:
    """Run the handler; if the upstream drops under an idempotent read, reconnect and run
    it once more. UpstreamLost escapes for everything else (the session ends with BYE)."""
    sent = session.bytes_out
    try:
        await handler(command)
        return
    except UpstreamLost:
        if not _retryable(session, command, answered=session.bytes_out > sent):
            raise
    log.info("upstream lost during %s user=%s; reconnecting to run it again",
             command.full_name, session.user)
    await reconnect(session)
    await handler(command)


def _retryable(session: Session, command: Command, *, answered: bool) -> bool:
    if session.credentials is None or command.name not in RETRYABLE:
        return False
    return command.name in REPEATABLE or not answered


async def reconnect(session: Session) -> None:
    """Replace the session's lost upstream with a fresh one in the same state."""
    credentials = session.credentials
    assert credentials is not None
    old = session.upstream
    if old is not None:  # gives its pool slot back; stays the session's (lost) until replaced
        await session.pool.release(old, reusable=False, selected=False)
    try:
        upstream, _ = await session.pool.login(credentials.user, credentials.password,
                                               credentials.authzid)
    except ImapError as exc:
        raise UpstreamLost("Upstream server connection lost") from exc
    if upstream is None:
        raise UpstreamLost("Upstream server refused to log in again")
    try:
        if session.enabled:
            await _expect_ok(upstream, Command("", "ENABLE", session.enabled))
        if session.mailbox is not None:
            uids = await _reselect(upstream, session.mailbox)
            if len(uids) > len(session.mailbox.uids):  # new mail meanwhile: tell the client
                session.write(b"* %d EXISTS\r\n" % len(uids))
                session.mailbox.exists = len(uids)
                session.mailbox.uids = uids
    except ImapError:
        await session.pool.release(upstream, reusable=False, selected=False)
        raise
    session.upstream = upstream
    if session.metrics is not None:
        upstream.on_round_trip = session.metrics.round_trip
    log.info("upstream reconnected user=%s", session.user)


async def _expect_ok(upstream: UpstreamConnection, command: Command) -> StatusResponse:
    final: StatusResponse | None = None
    async for item in upstream.execute(command):
        if is_final(item.response):
            assert isinstance(item.response, StatusResponse)
            final = item.response
    if final is None or final.status != "OK":
        raise UpstreamLost(f"Upstream server refused {command.name} after reconnecting")
    return final


async def _reselect(upstream: UpstreamConnection, known: SelectedMailbox) -> list[int]:
    """SELECT / EXAMINE the mailbox again; it must be the one the client knows. Returns
    the number of messages now, after checking that every message the client knows is still
    at its place (only additions at the end are allowed: the caller announces them)."""
    fresh = SelectedMailbox(known.name, read_only=known.read_only)
    command = Command("", "EXAMINE" if known.read_only else "SELECT",
                      (astring_token(known.name),))
    async for item in upstream.execute(command):
        fresh.observe(item.response)
        if is_final(item.response) and isinstance(item.response, StatusResponse) and \
                item.response.status != "OK":
            raise SessionEnded("Mailbox no longer available after reconnecting")
    if fresh.uidvalidity != known.uidvalidity:
        raise SessionEnded("Mailbox UIDVALIDITY changed while reconnecting; please resync")
    uids = await _all_uids(upstream)
    # Sequence numbers must still mean what the client thinks. A message count alone would
    # miss an expunge plus an append, so every UID must be known, and be where it was.
    if not known.uids_complete or uids is None or uids[:len(known.uids)] != known.uids:
        raise SessionEnded("Mailbox changed while reconnecting; please resync")
    return uids


async def _all_uids(upstream: UpstreamConnection) -> list[int] | None:
    uids: list[int] | None = None
    async for item in upstream.execute(all_uids_command(upstream)):
        response = item.response
        if isinstance(response, DataResponse) and response.name in ("SEARCH", "ESEARCH"):
            uids = uids_from_search(response)
    return uids
