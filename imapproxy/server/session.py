"""One client session: reads commands through the framer, answers locally or relays upstream.

The upstream is the authority for mailbox state: each session has its own upstream connection,
so sequence numbers, EXISTS/EXPUNGE and flags the client sees are the upstream's own, relayed
in order. The proxy answers locally only what is its own business: capabilities, ID, TLS,
authentication, LOGOUT, and commands refused by state or by the capability allowlist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from enum import Enum
from typing import Any

from .. import __version__
from ..cache import CacheIsolationError, MailboxCache, MessageCache, UserCache
from ..config import Config, ListenerConfig
from ..errors import (
    BadCommand,
    CommandFailed,
    ImapError,
    SessionEnded,
    UpstreamLost,
    UpstreamUnavailable,
)
from ..observability.metrics import Metrics
from ..protocol.command import Command, parse_command
from ..protocol.errors import ProtocolError
from ..protocol.fetch import parse_fetch_items
from ..protocol.framing import Frame, Framer, FramerEvent, NeedContinuation, Rejected
from ..protocol.nonsync import check_append
from ..protocol.response import (
    Continuation,
    DataResponse,
    StatusResponse,
    fetch_attributes,
    is_final,
    number_value,
    serialize_response,
)
from ..protocol.tokens import Atom, ParenList, Token, is_nil, string_value
from ..upstream.connection import Received, UpstreamConnection
from ..upstream.limits import UNLIMITED, UpstreamLimiter
from ..upstream.pool import UpstreamPool, leaves_state_behind
from .answers import error_answer, status_line
from .capabilities import (
    ENABLEABLE,
    authenticated_capabilities,
    preauth_capabilities,
)
from .fetch import ContentFetch
from .filter_hooks import Filtering, SessionHooks
from .guard import Guard, client_ip
from .idle import shared_idle
from .mailbox import (
    SELECT_STATE,
    FreshState,
    SelectedMailbox,
    all_uids_command,
    changes_messages,
    select_state_command,
    uids_from_search,
)
from .reconnect import Credentials, run_with_retry

log = logging.getLogger(__name__)

# Output is gathered and handed to the transport once per answer, or per this many bytes.
OUTPUT_BATCH = 256 * 1024


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"


NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})
ANY = NOT_AUTH | AUTH

# Command -> (states it is valid in, upstream capability it needs or None). Data, not code.
COMMANDS: dict[str, tuple[frozenset[State], str | None]] = {
    "CAPABILITY": (ANY, None), "NOOP": (ANY, None), "LOGOUT": (ANY, None), "ID": (ANY, None),
    "STARTTLS": (NOT_AUTH, None), "LOGIN": (NOT_AUTH, None), "AUTHENTICATE": (NOT_AUTH, None),
    "SELECT": (AUTH, None), "EXAMINE": (AUTH, None), "CREATE": (AUTH, None),
    "DELETE": (AUTH, None), "RENAME": (AUTH, None), "SUBSCRIBE": (AUTH, None),
    "UNSUBSCRIBE": (AUTH, None), "LIST": (AUTH, None), "LSUB": (AUTH, None),
    "STATUS": (AUTH, None), "APPEND": (AUTH, None), "NAMESPACE": (AUTH, "NAMESPACE"),
    "ENABLE": (AUTH, "ENABLE"), "IDLE": (AUTH, "IDLE"),
    "CHECK": (SELECTED, None), "CLOSE": (SELECTED, None), "EXPUNGE": (SELECTED, None),
    "SEARCH": (SELECTED, None), "FETCH": (SELECTED, None), "STORE": (SELECTED, None),
    "COPY": (SELECTED, None), "MOVE": (SELECTED, "MOVE"), "UNSELECT": (SELECTED, "UNSELECT"),
}
# Commands with a UID form, and the capability the UID form needs beyond the plain one.
UID_FORMS: dict[str, str | None] = {
    "FETCH": None, "STORE": None, "SEARCH": None, "COPY": None, "MOVE": "MOVE",
    "EXPUNGE": "UIDPLUS",
}


def is_loopback(peer: object) -> bool:
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback  # an IPv4 client of a dual-stack listener
    return address.is_loopback


class Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 config: Config, listener: ListenerConfig, tls: ssl.SSLContext | None,
                 cache: MessageCache | None = None,
                 limiter: UpstreamLimiter = UNLIMITED, metrics: Metrics | None = None,
                 pool: UpstreamPool | None = None,
                 filtering: Filtering | None = None, *, guard: Guard | None = None,
                 peer: object = None) -> None:
        self.reader = reader
        self.writer = writer
        self.config = config
        self.listener = listener
        self.tls_context = tls
        self.tls_active = listener.tls == "implicit"
        # The real client: from the PROXY protocol header when a load balancer sent one.
        self.peer = peer if peer is not None else writer.get_extra_info("peername")
        self.guard = guard or Guard(config)
        self.bytes_in = self.bytes_out = 0
        self.busy = False  # running a command other than IDLE (shutdown lets it finish)
        self._bye: str | None = None  # the reason to give at shutdown, once
        self.credentials: Credentials | None = None  # to log in again after a drop
        self.enabled: tuple[Token, ...] = ()  # what ENABLE switched on upstream
        self.state = State.NOT_AUTHENTICATED
        self.upstream: UpstreamConnection | None = None
        self.user = ""
        self.client_id: dict[str, str] = {}
        self.mailbox: SelectedMailbox | None = None
        self.cache = cache
        self.limiter = limiter
        self.pool = pool or UpstreamPool.unshared(config.upstream,
                                                  config.limits.max_literal_size, limiter)
        self.reusable = True  # may the upstream connection serve another session afterwards
        self.user_cache: UserCache | None = None
        self.mailbox_cache: MailboxCache | None = None
        self._prefetch: asyncio.Future[int] | None = None
        self._ahead: ContentFetch | None = None  # the engine of the running prefetch
        self._prefetched: set[int] = set()  # UIDs prefetched in this mailbox, not read yet
        self.framer = self._new_framer()
        self.started = time.monotonic()
        self.started_at = time.time()
        self.metrics = metrics
        self._answering: tuple[bytes, str] | None = None  # (b"tag ", command) for metrics
        self._closing = False
        self.hooks = SessionHooks(self, filtering)  # filter chain, fixups, quirks
        self._out: list[bytes] = []  # written, not yet handed to the transport (flush)
        self._out_size = 0

    def _new_framer(self) -> Framer:
        limits = self.config.limits
        return Framer(max_line_length=limits.max_line_length,
                      max_literal_size=limits.max_literal_size)

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        log.info("session start peer=%s", _peer_text(self.peer))
        if self.metrics is not None:
            self.metrics.session_started()
        try:
            self.write(status_line(None, "OK", "imapproxy ready.",
                                   "CAPABILITY " + " ".join(self.capabilities())))
            while not self._closing:
                event = await self.next_event()
                if event is None:
                    break
                await self.handle_event(event)
                await self.drain()
        except SessionEnded as exc:
            self._try_write(error_answer(None, exc))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            await self._finish()

    def shutdown(self, reason: str, *, force: bool = False) -> None:
        """Server shutdown: a session between commands (or in IDLE) is told ``* BYE`` and
        closed now; one running a command finishes it first, unless ``force`` (the grace
        period is over: the upstream is cut too, so nothing waits on it). Its upstream
        connection is not kept for reuse (a kicked user's login must not outlive the kick)."""
        self._closing = True
        self.reusable = False
        self._bye = self._bye or reason
        if self.busy and not force:
            return
        self._say_bye()
        self._try_write(b"")
        self.writer.close()
        if force and self.upstream is not None:
            self.upstream.close()

    def _say_bye(self) -> None:
        if self._bye is not None:
            self._try_write(status_line(None, "BYE", self._bye))
            self._bye = None

    async def _finish(self) -> None:
        self._say_bye()
        if self._prefetch is not None:
            self.reusable &= self._prefetch.done()  # else a command was cut off mid-way
            self._prefetch.cancel()
        if self.metrics is not None:
            self.metrics.session_ended()
        if self.upstream is not None:
            upstream, self.upstream = self.upstream, None
            await self.pool.release(upstream, reusable=self.reusable,
                                    selected=self.state is State.SELECTED)
        self._try_write(b"")
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5.0)
        except (TimeoutError, ConnectionError, ssl.SSLError):
            pass
        log.info("session end peer=%s user=%s in=%d out=%d seconds=%.1f",
                 _peer_text(self.peer), self.user or "-", self.bytes_in, self.bytes_out,
                 time.monotonic() - self.started)

    async def next_event(self, timeout: float | None = None) -> FramerEvent | None:
        """The next framer event, reading more bytes as needed; None at end of input."""
        if timeout is None:
            limits = self.config.limits
            timeout = (limits.preauth_timeout if self.state is State.NOT_AUTHENTICATED
                       else limits.idle_timeout)
        while True:
            event = self.framer.next_event()
            if event is not None:
                return event
            data = await self._read(timeout)
            if not data:
                return None
            self.framer.receive_data(data)

    async def _read(self, timeout: float) -> bytes:
        self.flush()  # whatever waits for the client's answer (a "+", IDLE news) goes first
        read = asyncio.ensure_future(self.reader.read(65536))
        waits: set[asyncio.Future[Any]] = {read}
        lost: asyncio.Future[None] | None = None
        watched = self.upstream
        if self.upstream is not None and not (self.upstream.lost and self._serves_degraded()):
            lost = asyncio.ensure_future(self.upstream.wait_closed())
            waits.add(lost)
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if lost is not None:
                lost.cancel()
        if read in done:
            data: bytes = read.result()
            self.bytes_in += len(data)
            return data
        read.cancel()
        if lost is not None and lost in done:
            if watched is not self.upstream:  # given back meanwhile (shared IDLE): not ours
                return await self._read(timeout)
            if self.upstream is not None:
                for item in self.upstream.pending():
                    self.relay(item)
            if self._serves_degraded():
                log.warning("upstream lost user=%s: serving cached reads only", self.user)
                return await self._read(timeout)
            raise UpstreamLost("Upstream server connection lost")
        raise SessionEnded("Disconnected for inactivity.")

    async def handle_event(self, event: FramerEvent) -> None:
        if isinstance(event, NeedContinuation):
            self.write(b"+ Ready for literal data\r\n")
        elif isinstance(event, Rejected):
            text = f"{event.reason.capitalize()}."
            if event.code == "TOOBIG":
                self.write(status_line(event.tag, "NO", text, "TOOBIG"))
            else:
                self.write(status_line(event.tag, "BAD", text))
        elif event.data.strip():
            try:
                command = parse_command(event.data,
                                        max_depth=self.config.limits.max_nesting_depth)
            except ProtocolError as exc:
                self.write(status_line(exc.tag, "BAD", f"Error in IMAP command: {exc}"))
                return
            if self.metrics is not None:
                self._answering = (command.tag.encode() + b" ", command.full_name)
            try:
                await self.dispatch(command)
            except SessionEnded:
                raise
            except ImapError as exc:
                self.write(error_answer(command.tag, exc))
            except ProtocolError as exc:  # an argument of the wrong kind, met by a handler
                self.write(status_line(command.tag, "BAD", f"Error in IMAP command: {exc}"))

    # --- dispatch ----------------------------------------------------------------------------

    async def dispatch(self, command: Command) -> None:
        spec = COMMANDS.get(command.name)
        needed = spec[1] if spec else None
        if command.uid:
            if command.name not in UID_FORMS:
                raise BadCommand(f"Unknown command UID {command.name}")
            needed = needed or UID_FORMS[command.name]
        if spec is None or (needed is not None and not self._upstream_has(needed)):
            raise BadCommand(f"Unknown command {command.full_name}")
        if self.state not in spec[0]:
            raise BadCommand(f"Command {command.full_name} not allowed in the "
                             f"{self.state.value} state")
        if command.name == "APPEND":
            check_append(command)
        if leaves_state_behind(command):
            self.reusable = False
        self.busy = command.name != "IDLE"
        if self.mailbox is not None and command.name != "FETCH":
            self.mailbox.fresh = None  # state read with the SELECT answers only a FETCH next
        try:
            await self._settle_prefetch()
            command = await self.hooks.rewrite(command)
            handler: Callable[[Command], Awaitable[object]] | None = \
                self.hooks.handler(command)
            if handler is None:
                handler = self._local_handlers().get(command.name, self.forward)
            await run_with_retry(self, command, handler)
        except UpstreamLost as exc:
            if not self._serves_degraded():
                raise
            raise UpstreamUnavailable("Upstream server unavailable; only cached messages "
                                      "can be read") from exc
        finally:
            self.busy = False

    def _serves_degraded(self) -> bool:
        """Once the upstream is gone, a session with a cached mailbox selected stays, serving
        cached content (``[upstream] degraded_reads``); other commands get NO [UNAVAILABLE]."""
        return self.config.upstream.pool.degraded_reads and self.mailbox_cache is not None

    def _upstream_has(self, capability: str) -> bool:
        return self.upstream is None or capability in self.upstream.capabilities

    def _local_handlers(self) -> dict[str, Callable[[Command], Awaitable[None]]]:
        return {
            "CAPABILITY": self.cmd_capability, "NOOP": self.cmd_noop, "LOGOUT": self.cmd_logout,
            "ID": self.cmd_id, "STARTTLS": self.cmd_starttls, "LOGIN": self.cmd_login,
            "AUTHENTICATE": self.cmd_authenticate, "ENABLE": self.cmd_enable,
            "IDLE": self.cmd_idle, "SELECT": self.cmd_select, "EXAMINE": self.cmd_select,
            "FETCH": self.cmd_fetch,
        }

    def capabilities(self) -> list[str]:
        if self.upstream is not None:
            return authenticated_capabilities(self.upstream.capabilities)
        return preauth_capabilities(
            starttls=self.tls_context is not None and not self.tls_active,
            login_allowed=self.plaintext_auth_allowed())

    def plaintext_auth_allowed(self) -> bool:
        return self.tls_active or self.listener.allow_plaintext_auth or is_loopback(self.peer)

    # --- commands answered by the proxy ------------------------------------------------------

    async def cmd_capability(self, command: Command) -> None:
        _no_args(command)
        self.write(b"* CAPABILITY " + " ".join(self.capabilities()).encode() + b"\r\n")
        self.write(status_line(command.tag, "OK", "Capability completed."))

    async def cmd_noop(self, command: Command) -> None:
        _no_args(command)
        if self.upstream is None or (self.upstream.lost and self._serves_degraded()):
            self.write(status_line(command.tag, "OK", "NOOP completed."))
        else:
            await self.forward(command)

    async def cmd_logout(self, command: Command) -> None:
        _no_args(command)
        self.write(b"* BYE Logging out\r\n")
        self.write(status_line(command.tag, "OK", "Logout completed."))
        self._closing = True

    async def cmd_id(self, command: Command) -> None:
        if len(command.args) != 1:
            raise BadCommand("ID needs one argument")
        arg = command.args[0]
        if isinstance(arg, ParenList):
            values = [string_value(t).decode("utf-8", "replace") if not is_nil(t) else ""
                      for t in arg.items]
            if len(values) % 2 or len(values) > 60:
                raise BadCommand("ID takes field/value pairs")
            self.client_id = {k.lower(): v for k, v in zip(values[::2], values[1::2])}
        elif not is_nil(arg):
            raise BadCommand("ID takes a list or NIL")
        self.write(f'* ID ("name" "imapproxy" "version" "{__version__}")\r\n'.encode())
        self.write(status_line(command.tag, "OK", "ID completed."))

    async def cmd_starttls(self, command: Command) -> None:
        _no_args(command)
        if self.tls_context is None or self.tls_active:
            raise BadCommand("STARTTLS not available")
        self.write(status_line(command.tag, "OK", "Begin TLS negotiation now."))
        await self.drain()
        # Anything the client pipelined after STARTTLS in plaintext is dropped (RFC 3501 6.2.1)
        self.framer = self._new_framer()
        await self.writer.start_tls(self.tls_context)
        self.tls_active = True

    async def cmd_login(self, command: Command) -> None:
        if len(command.args) != 2:
            raise BadCommand("LOGIN needs a user name and a password")
        self._require_plaintext_ok()
        user, password = (string_value(a) for a in command.args)
        await self.authenticate(command.tag, user, password)

    async def cmd_authenticate(self, command: Command) -> None:
        if not command.args or len(command.args) > 2 or not isinstance(command.args[0], Atom):
            raise BadCommand("AUTHENTICATE needs a mechanism")
        if command.args[0].upper() != "PLAIN":
            raise CommandFailed("Unsupported authentication mechanism")
        self._require_plaintext_ok()
        if len(command.args) == 2:
            response = string_value(command.args[1])
        else:
            self.write(b"+ \r\n")
            await self.drain()
            event = await self.next_event()
            if not isinstance(event, Frame):
                raise SessionEnded("Authentication aborted") if event is None \
                    else BadCommand("Authentication response too long")
            response = event.data.rstrip(b"\r\n")
        if response == b"*":
            raise BadCommand("Authentication cancelled")
        try:
            decoded = b"" if response == b"=" else base64.b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            raise BadCommand("Invalid base64 in authentication response") from None
        parts = decoded.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            raise BadCommand("Invalid PLAIN authentication response")
        authzid, user, password = parts
        await self.authenticate(command.tag, user, password, authzid)

    def _require_plaintext_ok(self) -> None:
        if not self.plaintext_auth_allowed():
            raise CommandFailed("Plaintext authentication is disabled; use STARTTLS first.",
                                "PRIVACYREQUIRED")

    async def authenticate(self, tag: str, user: bytes, password: bytes,
                           authzid: bytes = b"") -> None:
        shown = user.decode("utf-8", "replace")
        ip = client_ip(self.peer)
        await self.guard.check_login(ip, user, password, authzid)
        upstream, status = await self.pool.login(user, password, authzid)
        if self.metrics is not None:
            self.metrics.login(upstream is not None)
        if upstream is None:
            log.info("login failed user=%s peer=%s reason=%s", shown, _peer_text(self.peer),
                     status.text.decode("utf-8", "replace"))
            await self.guard.login_failed(ip, user, password, authzid)
            code = status.code or "AUTHENTICATIONFAILED"
            self.write(status_line(tag, "NO", status.text.decode("utf-8", "replace")
                                   or "Authentication failed.", code))
            return
        try:
            self.guard.login_ok(ip, shown)
        except ImapError:
            await self.pool.release(upstream, reusable=True, selected=False)
            raise
        self.upstream = upstream
        self.credentials = Credentials(user, password, authzid)
        self.hooks.after_login(upstream)
        if self.metrics is not None:  # (connection events are counted by the pool)
            upstream.on_round_trip = self.metrics.round_trip
        # Whose mailbox this is: the authorization identity when a master user logs in for
        # someone (imapc_master_user, docs/migration-dsync.md); the master is logged.
        self.user = (authzid or user).decode("utf-8", "replace")
        self.state = State.AUTHENTICATED
        if self.cache is not None:
            try:
                self.user_cache = await self.cache.afor_user(self.config.upstream,
                                                             authzid or user)
            except CacheIsolationError:
                log.exception("cache refused for user=%s; serving uncached", shown)
        log.info("login ok user=%s peer=%s%s", self.user, _peer_text(self.peer),
                 f" master={shown}" if authzid and authzid != user else "")
        self.write(status_line(tag, "OK", "Logged in",
                               "CAPABILITY " + " ".join(self.capabilities())))

    async def cmd_enable(self, command: Command) -> None:
        offered = set(self.capabilities()) & ENABLEABLE
        wanted = tuple(a for a in command.args
                       if isinstance(a, Atom) and a.upper() in offered)
        if not command.args:
            raise BadCommand("ENABLE needs capability names")
        if not wanted:
            self.write(b"* ENABLED\r\n")
            self.write(status_line(command.tag, "OK", "Enabled."))
            return
        final = await self.forward(replace(command, args=wanted))
        if final is not None and final.status == "OK":
            self.enabled += wanted

    async def cmd_idle(self, command: Command) -> None:
        _no_args(command)
        upstream = self._upstream()
        if self.pool.settings.shared_idle and self.mailbox is not None:
            await shared_idle(self, command, self.pool.idle, self.pool.owner_of(upstream))
            return
        responses = upstream.execute(command, timeout=None, limited=False).__aiter__()
        next_response = asyncio.ensure_future(responses.__anext__())
        client: asyncio.Future[FramerEvent | None] | None = None
        idling = done_sent = False
        bad_end = False
        try:
            while True:
                if idling and not done_sent and client is None:
                    client = asyncio.ensure_future(
                        self.next_event(self.config.limits.idle_timeout))
                waits = {f for f in (next_response, client) if f is not None}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if next_response.done():
                    try:
                        item = next_response.result()
                    except StopAsyncIteration:
                        return
                    if isinstance(item.response, Continuation) and not idling:
                        idling = True
                        self.write(b"+ idling\r\n")
                    elif is_final(item.response):
                        if bad_end:
                            self.write(status_line(command.tag, "BAD", "Expected DONE."))
                        else:
                            self.relay(item, command.tag)
                        return
                    else:
                        self.relay(item)
                    await self.drain()
                    next_response = asyncio.ensure_future(responses.__anext__())
                if client is not None and client.done():
                    event = client.result()
                    client = None
                    if event is None:
                        self._closing = True
                    elif not (isinstance(event, Frame)
                              and event.data.strip().upper() == b"DONE"):
                        bad_end = True
                    upstream.send_line(b"DONE")
                    done_sent = True
        finally:
            if idling and not done_sent:
                # Leaving early (timeout, lost client): end the upstream IDLE too, or the
                # upstream ignores every later command (LOGOUT included).
                with contextlib.suppress(ImapError):
                    upstream.send_line(b"DONE")
            for fut in (next_response, client):
                if fut is not None and not fut.done():
                    fut.cancel()

    # --- relaying ----------------------------------------------------------------------------

    def _upstream(self) -> UpstreamConnection:
        if self.upstream is None:
            raise BadCommand("Not authenticated")
        return self.upstream

    async def cmd_select(self, command: Command) -> None:
        """SELECT / EXAMINE, relayed; the answer tells which mailbox content is keyed by.
        With a cache and an upstream that has ESEARCH, ``UID SEARCH RETURN (ALL) ALL`` goes
        in the same round trip, so content FETCHes need no upstream round trip from the
        start (see server/mailbox.py)."""
        if not command.args:
            raise BadCommand(f"{command.name} needs a mailbox name")
        upstream = self._upstream()
        box = SelectedMailbox(string_value(command.args[0]),
                              read_only=command.name == "EXAMINE")
        self.mailbox = self.mailbox_cache = None
        self._prefetched.clear()  # UIDs of another mailbox
        # Pipelined behind the SELECT, in its round trip: every UID (so content FETCHes need
        # no upstream), and the newest messages' state (mailbox.py FreshState).
        search = (all_uids_command(upstream) if self.user_cache is not None
                  and "ESEARCH" in upstream.capabilities else None)
        # Not with CONDSTORE/QRESYNC on (ENABLE, or SELECT parameters): MODSEQ would come
        # along, and the client's FETCH must get it as the upstream tells it.
        plain = not self.enabled and len(command.args) == 1 and self.reusable
        state = select_state_command(
            self.user_cache.last_exists.get(box.name)
            if self.user_cache is not None and plain else None,
            self.config.upstream.select_state_count)
        follow = [c for c in (search, state) if c is not None]
        fresh = FreshState(frozenset(SELECT_STATE)) if state is not None else None
        found: list[int] | None = None
        changed = stale = False
        answering = True  # the SELECT's own answer (it ends before the follow-ups start)
        async for item in upstream.execute(command, then=follow):
            response = item.response
            if answering:
                box.observe(response)
                if is_final(response):
                    answering = False
                    self.relay(item, command.tag)
                    self.flush()  # the client has its answer; the follow-ups are ours
                    self._track_state(command, response)
                    if response.status == "OK":
                        self.mailbox = box
                else:
                    self.relay(item)
                continue
            # The follow-ups may be answered in any order: told apart by what they answer.
            items = fetch_attributes(response)
            if is_final(response):
                continue
            if search is not None and isinstance(response, DataResponse) \
                    and response.name in ("SEARCH", "ESEARCH"):
                found = uids_from_search(response)
            elif fresh is not None and items is not None and fresh.names <= items.keys() \
                    and isinstance(response, DataResponse) and response.number \
                    and (uid := number_value(items.pop("UID"))):
                if len(fresh.rows) < 4 * self.config.upstream.select_state_count:
                    fresh.rows[response.number] = (uid, items)
                else:  # a flood of new mail since the last SELECT: not kept, not used
                    stale = True
            else:  # news after the SELECT: the client's, the box follows; the state read
                changed |= changes_messages(response)  # with it may be older: not used
                stale = True
                self.relay(item)
        if self.mailbox is None:
            return
        if found is not None and not changed:
            box.adopt_uids(found)
        if fresh is not None and not stale and fresh.rows:
            for seq, (uid, _) in sorted(fresh.rows.items()):
                box.learn(seq, uid)
            box.fresh = fresh
        if self.user_cache is not None and box.uidvalidity is not None:
            if box.exists is not None:
                self.user_cache.last_exists[box.name] = box.exists
            self.mailbox_cache = await self.user_cache.amailbox(box.name, box.uidvalidity)

    async def cmd_fetch(self, command: Command) -> None:
        """Content items are computed by the proxy (server/fetch.py); state-only FETCHes
        are relayed as they are."""
        try:
            request = parse_fetch_items(command.args)
        except ProtocolError as exc:
            raise BadCommand(f"Error in FETCH: {exc}") from None
        fresh = self.mailbox.fresh if self.mailbox is not None else None
        if self.mailbox is not None:
            self.mailbox.fresh = None  # answers this FETCH or none (ContentFetch.run)
        if not (request.has_content or self.hooks.size_from_bytes(request)) \
                or self.mailbox is None:
            await self.forward(command)
            return
        upstream = self._upstream()
        engine = ContentFetch(upstream, self.mailbox_cache, self.mailbox, self.relay,
                              self.hooks.fetch_writer(self.write), self.drain,
                              self.config.upstream.prefetch_count,
                              await self.hooks.content(), self.hooks.render_hook)
        engine.uid_by_sequence = "fetch-without-uid" in self.hooks.quirks
        engine.fresh = fresh
        started = time.monotonic()
        # None: answered with no upstream round trip (known UIDs, or state read with SELECT)
        final = None if await engine.run_local(command, request) \
            else await engine.run(command, request)
        if final is None:  # worded as Dovecot words it, with the proxy's own time
            took = time.monotonic() - started
            self.write(status_line(command.tag, "OK", f"Fetch completed ({took:.3f} + 0.000 secs)."))
        else:
            self.write(serialize_response(replace(final, tag=command.tag)))
        hits = engine.from_cache & self._prefetched
        if hits and self.metrics is not None:
            self.metrics.prefetch_hits(len(hits))
        self._prefetched -= hits
        if engine.next_prefetch is not None:
            ahead = ContentFetch(upstream, self.mailbox_cache, self.mailbox, upstream.carry,
                                 self.write, self.drain, filtered=engine.filtered)
            self._ahead = ahead
            self._prefetch = asyncio.ensure_future(ahead.prefetch(*engine.next_prefetch))

    async def _settle_prefetch(self) -> None:
        """Let a running prefetch finish before the next command: its commands and the
        client's must not interleave (a SELECT in between would key bodies wrongly)."""
        task, self._prefetch = self._prefetch, None
        if task is None:
            return
        try:
            fetched = await task
            log.debug("prefetched %d bodies", fetched)
            if self._ahead is not None:
                self._prefetched.update(self._ahead.prefetched)
                if self.metrics is not None:
                    self.metrics.prefetched_bodies(len(self._ahead.prefetched))
        except ImapError as exc:
            log.info("prefetch stopped: %s", exc.text)
        except Exception:  # prefetching is an optimisation: its failure must not end a session
            log.exception("prefetch failed")

    async def forward(self, command: Command) -> StatusResponse | None:
        """Run the command upstream, relaying every response; the tagged one gets our tag."""
        upstream = self._upstream()
        final: StatusResponse | None = None
        async for item in upstream.execute(command):
            if is_final(item.response):
                final = item.response
                self.relay(item, command.tag)
            else:
                self.relay(item)
                if self.writer.transport.get_write_buffer_size() > 1 << 20:
                    await self.drain()
        if final is not None:
            self._track_state(command, final)
        return final

    def _track_state(self, command: Command, final: StatusResponse) -> None:
        if command.name in ("SELECT", "EXAMINE"):
            self.state = State.SELECTED if final.status == "OK" else State.AUTHENTICATED
        elif command.name in ("CLOSE", "UNSELECT") and final.status == "OK":
            self.state = State.AUTHENTICATED
            self.mailbox = self.mailbox_cache = None

    def relay(self, item: Received, tag: str | None = None) -> None:
        """Pass one upstream response on, byte for byte unless it must change: the tag, and
        capability lists (filtered through the allowlist)."""
        response = item.response
        if self.mailbox is not None:
            self.mailbox.observe(response)
        shown = self.hooks.on_relay(item)
        if shown is None:
            return
        item, response = shown, shown.response
        if isinstance(response, DataResponse) and response.name == "CAPABILITY":
            self.write(b"* CAPABILITY " + " ".join(self.capabilities()).encode() + b"\r\n")
            return
        if isinstance(response, StatusResponse):
            if response.code == "CAPABILITY":
                response = replace(response,
                                   code_data=" ".join(self.capabilities()).encode())
            if tag is not None:
                response = replace(response, tag=tag)
            if response is not item.response:
                self.write(serialize_response(response))
                return
        self.write(item.raw)

    # --- output ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.bytes_out += len(data)
        if self._answering is not None and data.startswith(self._answering[0]):
            self._count_answer(data)
        if len(data) >= OUTPUT_BATCH:
            self.flush()
            self.writer.write(data)
            return
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= OUTPUT_BATCH:
            self.flush()

    def flush(self) -> None:
        """Hand what was written to the transport: one send for a whole answer, not one per
        line (a send costs tens of microseconds; a SELECT answer is a dozen lines)."""
        if self._out:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out.clear()
            self._out_size = 0
            self.writer.write(data)

    async def drain(self) -> None:
        """Flush, then wait until the transport's buffer is low (the client reads)."""
        self.flush()
        await self.writer.drain()

    def _count_answer(self, line: bytes) -> None:
        """The tagged answer of the command being run: counted by name and status."""
        assert self._answering is not None and self.metrics is not None
        prefix, name = self._answering
        self._answering = None
        status = line[len(prefix):len(prefix) + 3].rstrip().decode("ascii", "replace").upper()
        self.metrics.command(name, status if status in ("OK", "NO", "BAD") else "other")

    def describe(self) -> dict[str, Any]:
        """What ``imapproxy who`` shows of this session."""
        return {
            "user": self.user or None,
            "peer": _peer_text(self.peer),
            "state": self.state.value,
            "mailbox": self.mailbox.name.decode("utf-8", "replace")
            if self.mailbox is not None else None,
            "client": self.client_id.get("name"),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
        }

    def _try_write(self, data: bytes) -> None:
        try:
            if not self.writer.is_closing():
                self.flush()
                if data:
                    self.writer.write(data)
        except (ConnectionError, RuntimeError):
            pass


def _no_args(command: Command) -> None:
    if command.args:
        raise BadCommand(f"{command.name} takes no arguments")


def _peer_text(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
