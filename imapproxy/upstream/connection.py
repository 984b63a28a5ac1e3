"""One connection to the upstream IMAP server.

aioimaplib opens it (TCP, implicit TLS, greeting, first CAPABILITY); then this module takes the
transport over and speaks IMAP through the project's own sans-I/O codec. Why, in short (see
docs/upstream.md): aioimaplib's response reader deletes every ``"* "`` inside a line (which
corrupts message data), drops untagged responses that arrive outside NOOP, routes them to
commands by guessing from their name, only sends literals for APPEND, and recurses once per
line (a large FETCH overflows the stack). A proxy must relay every byte and every unsolicited
EXISTS/EXPUNGE faithfully, so only the connection set-up is delegated.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import cast

import aioimaplib  # type: ignore[import-untyped]

from ..config import UpstreamConfig
from ..errors import UpstreamLost, UpstreamUnavailable
from ..protocol.command import Command, command_chunks
from ..protocol.errors import ProtocolError
from ..protocol.framing import Frame, Framer
from ..protocol.nonsync import may_send_nonsync
from ..protocol.response import Continuation, Response, StatusResponse, is_final, parse_response
from ..protocol.tokens import Atom, Literal, ParenList, Token, astring_token
from .health import NO_HEALTH, THROTTLE_RETRIES, UpstreamHealth
from .limits import UNLIMITED, UpstreamLimiter

log = logging.getLogger(__name__)

LITERAL_MINUS_MAX = 4096


@dataclass(frozen=True, slots=True)
class Received:
    """One upstream response: its exact bytes, and its parsed form (None if unparseable)."""

    raw: bytes
    response: Response | None

    def is_tagged(self, tag: str) -> bool:
        return isinstance(self.response, StatusResponse) and self.response.tag == tag


class _Lost:
    pass


_LOST = _Lost()


# Bytes of responses queued but not taken: above HIGH the upstream socket is not read until
# the queue is back under LOW. A client that asks for a huge relayed answer and stops reading
# then holds the upstream (TCP pushes back on it), not the proxy's memory.
QUEUE_HIGH = 8 * 1024 * 1024
QUEUE_LOW = 1024 * 1024


class _ResponseReader(asyncio.Protocol):
    """Feeds upstream bytes through the framer into a queue of Received."""

    def __init__(self, max_literal_size: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[Received | _Lost] = asyncio.Queue()
        self.queued_bytes = 0
        self.paused = False
        self.closed = asyncio.Event()
        self._framer = Framer(
            max_line_length=1024 * 1024, max_literal_size=max_literal_size, server_side=False
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._framer.receive_data(data)
        while (event := self._framer.next_event()) is not None:
            if not isinstance(event, Frame):
                log.warning("upstream response refused: %s", event)
                continue
            try:
                parsed: Response | None = parse_response(event.data)
            except ProtocolError as exc:
                log.warning("unparseable upstream response (%s), relayed as is", exc)
                parsed = None
            self.queue.put_nowait(Received(event.data, parsed))
            self.queued_bytes += len(event.data)
        if self.queued_bytes > QUEUE_HIGH and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def take(self) -> Received | _Lost:
        """The next queued item (the queue must not be empty)."""
        return self._taken(self.queue.get_nowait())

    async def next_item(self, timeout: float | None) -> Received | _Lost:
        if not self.queue.empty():  # most responses are queued already: no wait_for task
            return self.take()
        return self._taken(await asyncio.wait_for(self.queue.get(), timeout))

    def _taken(self, item: Received | _Lost) -> Received | _Lost:
        """Account for an item leaving the queue; resume reading once it has drained."""
        if isinstance(item, Received):
            self.queued_bytes -= len(item.raw)
            if self.paused and self.queued_bytes < QUEUE_LOW and self.transport is not None:
                self.paused = False
                self.transport.resume_reading()
        return item

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self.queue.put_nowait(_LOST)


def tls_context(config: UpstreamConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if config.ca_file is not None:
        ctx.load_verify_locations(cafile=str(config.ca_file))
    if config.insecure_skip_verify:
        log.warning("upstream TLS certificate verification is OFF (insecure; tests only)")
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class UpstreamConnection:
    """An authenticated-or-not IMAP connection to the upstream; one command at a time."""

    # Told (command name, seconds from sending to the tagged answer) of each command: metrics.
    on_round_trip: Callable[[str, float], None] | None = None

    def __init__(self, config: UpstreamConfig, reader: _ResponseReader, caps: frozenset[str],
                 preauth: bool, limiter: UpstreamLimiter = UNLIMITED) -> None:
        self.config = config
        self.limiter = limiter
        self._reader = reader
        self.capabilities = caps
        self.preauth = preauth
        self._lock = asyncio.Lock()
        self._tag_counter = 0
        self._broken = False
        self._carried: list[Received] = []
        self.health: UpstreamHealth = NO_HEALTH  # set by the pool once logged in

    # --- set-up ------------------------------------------------------------------------------

    @classmethod
    async def open(cls, config: UpstreamConfig, max_literal_size: int = 1 << 31,
                   limiter: UpstreamLimiter = UNLIMITED) -> UpstreamConnection:
        """Connect and read the greeting; STARTTLS when configured. Raises UpstreamUnavailable."""
        where = f"{config.host}:{config.port}"
        lost = asyncio.Event()
        client = aioimaplib.IMAP4(
            host=config.host, port=config.port, timeout=config.connect_timeout,
            conn_lost_cb=lambda exc: lost.set(),
            ssl_context=tls_context(config) if config.security == "implicit" else None)
        # aioimaplib waits for the greeting and its own CAPABILITY without noticing a closed
        # connection, and a stalled CAPABILITY cannot be cancelled from outside: race the
        # greeting against connection loss and our own timeout, then tear everything down.
        hello = asyncio.ensure_future(client.wait_hello_from_server())
        closed = asyncio.ensure_future(lost.wait())
        await asyncio.wait({hello, closed}, timeout=config.connect_timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        failure: str | None = None
        if not hello.done():
            failure = "connection closed" if lost.is_set() else "no greeting in time"
        elif hello.cancelled() or hello.exception() is not None:
            exc = None if hello.cancelled() else hello.exception()
            failure = (str(exc) or type(exc).__name__) if exc is not None else "cancelled"
        elif lost.is_set():
            failure = "connection closed"
        if failure is not None:
            _abort(client, hello)
            raise UpstreamUnavailable(f"upstream {where} unreachable: {failure}")
        protocol = client.protocol
        transport = cast(asyncio.Transport, protocol.transport)
        reader = _ResponseReader(max_literal_size)
        transport.set_protocol(reader)
        reader.connection_made(transport)
        caps = frozenset(c.upper() for c in protocol.capabilities) - {"CAPABILITY"}
        conn = cls(config, reader, caps, preauth=protocol.state == aioimaplib.AUTH,
                   limiter=limiter)
        if config.security == "starttls":
            await conn._starttls()
        return conn

    async def _starttls(self) -> None:
        if "STARTTLS" not in self.capabilities:
            self.close()
            raise UpstreamUnavailable("upstream does not offer STARTTLS")
        status = await self.simple(Command("", "STARTTLS"))
        if status.status != "OK":
            self.close()
            raise UpstreamUnavailable("upstream refused STARTTLS")
        transport = self._reader.transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        try:
            new_transport = await loop.start_tls(
                transport, self._reader, tls_context(self.config),
                server_hostname=self.config.host, ssl_handshake_timeout=self.config.connect_timeout)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            self.close()
            raise UpstreamUnavailable(f"upstream TLS failed: {exc}") from exc
        assert new_transport is not None
        self._reader.transport = new_transport
        await self.refresh_capabilities()

    async def refresh_capabilities(self) -> None:
        caps: set[str] = set()
        async for item in self.execute(Command("", "CAPABILITY")):
            r = item.response
            if r is not None and not isinstance(r, (StatusResponse, Continuation)) \
                    and r.name == "CAPABILITY":
                caps.update(a.upper() for a in r.args if isinstance(a, Atom))
        if caps:
            self.capabilities = frozenset(caps)

    async def login(self, user: bytes, password: bytes, authzid: bytes = b"") -> StatusResponse:
        """Authenticate with the client's credentials; returns the upstream's tagged answer."""
        if "AUTH=PLAIN" in self.capabilities:
            initial = base64.b64encode(authzid + b"\0" + user + b"\0" + password).decode()
            if "SASL-IR" in self.capabilities:
                status = await self.simple(Command("", "AUTHENTICATE",
                                                   (Atom("PLAIN"), Atom(initial))))
            else:
                status = await self._authenticate_plain(initial)
        elif authzid and authzid != user:
            return StatusResponse(None, "NO", "AUTHORIZATIONFAILED",
                                  text=b"Upstream cannot authorize as another user")
        elif "LOGINDISABLED" in self.capabilities:
            return StatusResponse(None, "NO", "PRIVACYREQUIRED",
                                  text=b"Upstream refuses plaintext login")
        else:
            status = await self.simple(Command("", "LOGIN",
                                               (astring_token(user), astring_token(password))))
        if status.status == "OK":
            if status.code == "CAPABILITY" and status.code_data:
                self.capabilities = frozenset(status.code_data.decode("latin-1").upper().split())
            else:
                await self.refresh_capabilities()
        return status

    async def _authenticate_plain(self, initial: str) -> StatusResponse:
        final: StatusResponse | None = None
        async for item in self.execute(Command("", "AUTHENTICATE", (Atom("PLAIN"),))):
            if isinstance(item.response, Continuation):
                self.send_line(initial.encode())
            elif is_final(item.response):
                final = item.response
        assert final is not None
        return final

    # --- commands ----------------------------------------------------------------------------

    @property
    def lost(self) -> bool:
        return self._reader.closed.is_set() or self._broken

    async def wait_closed(self) -> None:
        await self._reader.closed.wait()

    def _new_tag(self) -> str:
        self._tag_counter += 1
        return f"U{self._tag_counter}"

    async def simple(self, command: Command) -> StatusResponse:
        """Run a command for its tagged status alone (untagged responses are discarded)."""
        final: StatusResponse | None = None
        async for item in self.execute(command):
            if is_final(item.response):
                final = item.response
        assert final is not None
        return final

    async def execute(self, command: Command, *, timeout: float | None = -1.0,
                      limited: bool = True, then: Command | Sequence[Command] = ()
                      ) -> AsyncIterator[Received]:
        """Send ``command`` under a fresh tag and yield every response up to its tagged one.

        Untagged responses that arrived between commands come first, in order. Continuations
        not consumed by literals are yielded (IDLE, AUTHENTICATE). The last item is the tagged
        status. ``timeout`` (seconds without any response) defaults to the command timeout;
        None waits forever (IDLE). ``limited``: counts against the upstream's shared rate and
        concurrency limits (IDLE does not: it would hold a slot for half an hour).
        ``then``: more commands sent right behind the first, in the same round trip
        (pipelined; only those before the first with a synchronising literal are sent). Their
        responses follow the first's tagged one (when it changes state, as SELECT does; the
        server may run the others at once and answer them in any order: Dovecot does), and
        every tagged answer is yielded, the last one last.
        Raises UpstreamLost / UpstreamUnavailable.
        """
        if timeout == -1.0:
            timeout = self.config.command_timeout
        async with self._lock, (self.limiter.command() if limited else UNLIMITED.command()):
            if self.lost:
                raise UpstreamLost("upstream connection lost")
            while self._carried:
                yield self._carried.pop(0)
            for attempt in range(THROTTLE_RETRIES + 1):
                await self.health.pause()
                tags = [self._new_tag()]
                chunks = command_chunks(self._adapt_literals(command.with_tag(tags[0])))
                for extra in [then] if isinstance(then, Command) else then:
                    if len(chunks) > 1:
                        break
                    tag = self._new_tag()
                    extra_chunks = command_chunks(self._adapt_literals(extra.with_tag(tag)))
                    if len(extra_chunks) > 1:
                        break
                    tags.append(tag)
                    chunks = [chunks[0] + extra_chunks[0]]
                sent = time.monotonic()
                self._write(chunks[0])
                for chunk in chunks[1:]:
                    while True:
                        item = await self._receive(timeout)
                        if _stale(item, tags):
                            continue
                        if isinstance(item.response, Continuation):
                            break
                        yield item
                        if item.is_tagged(tags[0]):
                            return  # the literal was refused
                    self._write(chunk)
                first = True
                unanswered = set(tags)  # pipelined ones may be answered in any order
                while True:
                    item = await self._receive(timeout)
                    if first:
                        self.health.responded(time.monotonic() - sent)
                        first = False
                    if _stale(item, tags):
                        continue
                    if isinstance(item.response, StatusResponse):
                        unanswered.discard(item.response.tag or "")
                        if not unanswered:
                            if self.on_round_trip is not None:
                                self.on_round_trip(command.name, time.monotonic() - sent)
                            break
                    yield item
                if not _throttled(item.response):
                    break
                self.health.throttled()
                if attempt == THROTTLE_RETRIES or len(tags) > 1 or len(chunks) > 1:
                    break  # given up, or not safely repeatable: the client gets the NO
                log.info("upstream throttled %s; retrying after back-off", command.name)
            yield item

    def carry(self, item: Received) -> None:
        """Keep an unsolicited response met by a background command (prefetch) for the
        client: it is yielded first by the next command."""
        self._carried.append(item)

    def send_line(self, line: bytes) -> None:
        """A raw line inside a running command (``DONE`` for IDLE, SASL responses)."""
        self._write(line + b"\r\n")

    def pending(self) -> list[Received]:
        """Unsolicited responses received while no command ran (taken off the queue)."""
        items, self._carried = self._carried, []
        while not self._reader.queue.empty():
            item = self._reader.take()
            if isinstance(item, _Lost):
                self._reader.queue.put_nowait(item)
                break
            items.append(item)
        return items

    async def _receive(self, timeout: float | None) -> Received:
        try:
            item = await self._reader.next_item(timeout)
        except TimeoutError:
            self.health.failed()
            self._broken = True
            self.close()
            raise UpstreamUnavailable("upstream did not answer in time") from None
        if isinstance(item, _Lost):
            self._reader.queue.put_nowait(item)  # every later reader sees it too
            self.health.failed()
            raise UpstreamLost("upstream connection lost")
        return item

    def _write(self, data: bytes) -> None:
        transport = self._reader.transport
        if transport is None or transport.is_closing():
            raise UpstreamLost("upstream connection lost")
        transport.write(data)

    def _adapt_literals(self, command: Command) -> Command:
        """Use non-synchronising literals where the upstream allows them (saves round trips)."""
        safe = may_send_nonsync(command)  # else the server may read literal data as commands
        plus = safe and "LITERAL+" in self.capabilities
        minus = safe and "LITERAL-" in self.capabilities

        def adapt(token: Token) -> Token:
            if isinstance(token, Literal):
                nonsync = plus or (minus and len(token.value) <= LITERAL_MINUS_MAX)
                return Literal(token.value, token.binary, nonsync)
            if isinstance(token, ParenList):
                return ParenList(tuple(adapt(t) for t in token.items))
            return token

        return Command(command.tag, command.name, tuple(adapt(a) for a in command.args),
                       command.uid)

    async def logout(self) -> None:
        if not self.lost:
            try:
                await asyncio.wait_for(self.simple(Command("", "LOGOUT")), 5.0)
            except (TimeoutError, UpstreamLost, UpstreamUnavailable):
                pass
        self.close()

    def close(self) -> None:
        transport = self._reader.transport
        if transport is not None and not transport.is_closing():
            transport.close()


def _throttled(response: Response | None) -> bool:
    return isinstance(response, StatusResponse) and response.status == "NO" \
        and response.code == "THROTTLED"


def _stale(item: Received, tags: list[str]) -> bool:
    """A tagged answer to an earlier command (one abandoned mid-way): never the current one's."""
    response = item.response
    if isinstance(response, StatusResponse) and response.tag is not None \
            and response.tag not in tags:
        log.warning("dropping a late answer to upstream command %s", response.tag)
        return True
    return False


def _abort(client: aioimaplib.IMAP4, hello: asyncio.Future[None]) -> None:
    """Stop every task aioimaplib started for this client, and close its socket."""
    tasks = [hello, getattr(client, "_client_task", None),
             *getattr(client.protocol, "tasks", ())]
    for task in tasks:
        if task is not None and not task.done():
            task.cancel()
        if task is not None:  # retrieve the outcome, so asyncio logs no "never retrieved"
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
    transport = getattr(client.protocol, "transport", None)
    if transport is not None:
        transport.close()
