"""Upstream connections shared over time: reuse after logout, caps, back-off, breaker.

Webmail opens a session per page view. Like up-imapproxy, a logged-out session's upstream
connection is parked for ``reuse_idle_seconds`` and handed to the next login of the same user
with the same credentials, so those sessions cost no upstream connection and no LOGIN.
Credentials are compared through an HMAC with a per-process random key: the pool never holds a
password. Before parking, the connection is brought back to the authenticated state (UNSELECT,
or a failing EXAMINE when the server lacks UNSELECT: CLOSE would expunge) and its unsolicited
responses are dropped; a connection that changed its own behaviour (ENABLE, CONDSTORE) or died
is never reused.

The pool also holds the proxy-wide pieces of upstream health: the connection caps and their
queue (slots.py), one back-off per user (backoff.py) and the circuit breaker (breaker.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from ..config import UpstreamConfig
from ..errors import ImapError, UpstreamUnavailable
from ..protocol.command import Command
from ..protocol.response import StatusResponse
from ..protocol.tokens import Atom, ParenList, Token, astring_token
from .backoff import Backoff
from .breaker import BreakerState, CircuitBreaker
from .connection import UpstreamConnection
from .health import UserHealth
from .limits import UNLIMITED, UpstreamLimiter
from .shared_idle import SharedIdle
from .slots import ConnectionSlots

log = logging.getLogger(__name__)

MAX_BACKOFFS = 10_000  # per-user back-offs kept before idle ones are forgotten
RESET_TIMEOUT = 5.0  # seconds for the command that readies a connection for parking
# Arguments that switch on per-connection behaviour (RFC 7162): after them the connection is
# not what a new session expects.
_STICKY = frozenset({"CONDSTORE", "QRESYNC", "MODSEQ", "HIGHESTMODSEQ", "CHANGEDSINCE",
                     "UNCHANGEDSINCE"})

Opener = Callable[[], Awaitable[UpstreamConnection]]


def leaves_state_behind(command: Command) -> bool:
    """True for commands after which the upstream connection may not be reused."""
    return command.name == "ENABLE" or any(_mentions_sticky(a) for a in command.args)


def _mentions_sticky(token: Token) -> bool:
    if isinstance(token, Atom):
        return token.upper() in _STICKY
    if isinstance(token, ParenList):
        return any(_mentions_sticky(t) for t in token.items)
    return False


@dataclass(eq=False)
class _Lease:
    user: str  # whose slot the connection holds
    digest: bytes  # HMAC of the credentials it logged in with


@dataclass(eq=False)
class _Parked:
    conn: UpstreamConnection
    lease: _Lease
    expiry: asyncio.TimerHandle | None = None


class UpstreamPool:
    def __init__(self, config: UpstreamConfig, opener: Opener) -> None:
        self.settings = config.pool
        self._open = opener
        self._key = secrets.token_bytes(32)
        self.slots = ConnectionSlots(self.settings.max_connections,
                                     self.settings.max_connections_per_user)
        self.breaker = CircuitBreaker(self.settings.breaker_failures,
                                      self.settings.breaker_cooldown)
        self._leases: dict[UpstreamConnection, _Lease] = {}
        self._parked: list[_Parked] = []  # oldest first
        # user -> resets under way (release): a login waits for one rather than logging in
        self._resetting: dict[str, set[asyncio.Future[None]]] = {}
        self._backoffs: dict[str, Backoff] = {}
        self._discarding: set[asyncio.Task[None]] = set()
        self._closed = False  # shutting down: nothing is parked any more
        # Told "opened", "closed", "reused", "queued", "refused" (the metrics' counters).
        self.on_event: Callable[[str], None] = lambda event: None
        self.idle = SharedIdle()
        self.logins = 0  # upstream logins sent (measured figures)
        self.reuses = 0

    @classmethod
    def for_upstream(cls, config: UpstreamConfig, max_literal_size: int,
                     limiter: UpstreamLimiter = UNLIMITED) -> UpstreamPool:
        return cls(config, lambda: UpstreamConnection.open(config, max_literal_size, limiter))

    @classmethod
    def unshared(cls, config: UpstreamConfig, max_literal_size: int,
                 limiter: UpstreamLimiter = UNLIMITED) -> UpstreamPool:
        """For a session on its own (no app): nothing is parked."""
        config = replace(config, pool=replace(config.pool, reuse_idle_seconds=0.0))
        return cls.for_upstream(config, max_literal_size, limiter)

    def owner_of(self, conn: UpstreamConnection) -> str:
        """The user whose slot the connection holds (who it is logged in as)."""
        lease = self._leases.get(conn)
        return lease.user if lease is not None else ""

    @property
    def parked(self) -> int:
        return len(self._parked)

    # --- login ---------------------------------------------------------------------------

    async def login(self, user: bytes, password: bytes, authzid: bytes = b""
                    ) -> tuple[UpstreamConnection | None, StatusResponse]:
        """An authenticated connection (a parked one when the credentials match), or None and
        the upstream's refusal. Raises UpstreamUnavailable: breaker open, queue timed out,
        upstream unreachable."""
        key = (authzid or user).decode("utf-8", "backslashreplace")
        digest = self._digest(user, password, authzid)
        try:
            self._refuse_if_open()
        except UpstreamUnavailable:
            self.on_event("refused")
            raise
        reused = self._unpark(key, digest)
        while reused is None and self._resetting.get(key) and not self._closed:
            # A connection of this user is being readied for parking (one round trip):
            # cheaper to wait for it than to connect and log in (three or more).
            await asyncio.wait(set(self._resetting[key]), timeout=RESET_TIMEOUT,
                               return_when=asyncio.FIRST_COMPLETED)
            reused = self._unpark(key, digest)
        if reused is not None:
            self.reuses += 1
            self.on_event("reused")
            log.debug("upstream connection reused user=%s", key)
            return reused, StatusResponse(None, "OK", text=b"Logged in (reused connection)")
        if not self.breaker.allow():
            self.on_event("refused")
            raise UpstreamUnavailable("Upstream server unavailable; a probe is under way")
        await self._take_slot(key)
        try:
            conn = await self._open()
        except BaseException as exc:
            self.slots.give_back(key)
            if isinstance(exc, UpstreamUnavailable):
                self.breaker.failure()
            raise
        conn.health = UserHealth(self._backoff(key), self.breaker,
                                 self.settings.slow_response_seconds)
        try:
            self.logins += 1
            status = await conn.login(user, password, authzid)
        except BaseException:
            conn.close()
            self.slots.give_back(key)
            raise
        if status.status != "OK":
            conn.close()
            self.slots.give_back(key)
            return None, status
        self._leases[conn] = _Lease(key, digest)
        self.on_event("opened")
        return conn, status

    def _refuse_if_open(self) -> None:
        if self.breaker.state is not BreakerState.CLOSED and self.breaker.retry_after() > 0:
            raise UpstreamUnavailable(
                f"Upstream server unavailable; retrying in {self.breaker.retry_after():.0f} s")

    def _digest(self, user: bytes, password: bytes, authzid: bytes) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (authzid, user, password):
            mac.update(len(part).to_bytes(4, "big") + part)
        return mac.digest()

    def _backoff(self, key: str) -> Backoff:
        backoff = self._backoffs.get(key)
        if backoff is None:
            if len(self._backoffs) >= MAX_BACKOFFS:  # forget users with nothing owed
                self._backoffs = {k: b for k, b in self._backoffs.items() if b.delay() > 0}
            s = self.settings
            backoff = self._backoffs[key] = Backoff(s.throttle_initial, s.throttle_max,
                                                    s.throttle_shrink_after)
        return backoff

    async def _take_slot(self, key: str) -> None:
        """A connection slot for ``key``; parked connections in the way are closed first."""
        if self.slots.try_take(key):
            return
        blocking = [p for p in self._parked if p.lease.user == key] \
            if self.slots.user_full(key) else list(self._parked)
        if blocking:
            self._discard(blocking[0])
        self.on_event("queued")
        try:
            await self.slots.take(key, self.settings.queue_timeout)
        except UpstreamUnavailable:
            self.on_event("refused")
            raise

    # --- logout ----------------------------------------------------------------------------

    async def release(self, conn: UpstreamConnection, *, reusable: bool,
                      selected: bool) -> None:
        """The session is over: park the connection for the same user, or log it out."""
        lease = self._leases.pop(conn, None)
        if lease is None:
            await conn.logout()
            return
        user = lease.user
        resetting: asyncio.Future[None] | None = None
        try:
            if reusable and self.settings.reuse_idle_seconds > 0 and not self._closed \
                    and not self.slots.waiting and not conn.lost \
                    and self._room_to_park(user):
                # Only a connection that may be parked is waited for by logins (login()).
                resetting = asyncio.get_running_loop().create_future()
                self._resetting.setdefault(user, set()).add(resetting)
            if resetting is not None and await _reset(conn, selected) \
                    and not self._closed and self._room_to_park(user):
                self._park(conn, lease)
                lease = None
            else:
                await conn.logout()
        finally:
            if resetting is not None:
                resets = self._resetting.get(user, set())
                resets.discard(resetting)
                if not resets:
                    self._resetting.pop(user, None)
                resetting.set_result(None)
            if lease is not None:
                conn.close()
                self.slots.give_back(lease.user)
                self.on_event("closed")

    def _room_to_park(self, user: str) -> bool:
        """Parked connections count as open upstream ones: at most ``max_parked_per_user``."""
        mine = sum(1 for parked in self._parked if parked.lease.user == user)
        return mine < self.settings.max_parked_per_user

    def _park(self, conn: UpstreamConnection, lease: _Lease) -> None:
        parked = _Parked(conn, lease)
        parked.expiry = asyncio.get_running_loop().call_later(
            self.settings.reuse_idle_seconds, self._discard, parked)
        self._parked.append(parked)

    def _unpark(self, key: str, digest: bytes) -> UpstreamConnection | None:
        """The most recently parked live connection of ``key`` with the same credentials."""
        for parked in reversed(list(self._parked)):
            if parked.lease.user != key or not hmac.compare_digest(parked.lease.digest, digest):
                continue
            self._parked.remove(parked)
            if parked.expiry is not None:
                parked.expiry.cancel()
            if not _drain(parked.conn):
                self._discard(parked, parked_now=False)
                continue
            self._leases[parked.conn] = parked.lease
            return parked.conn
        return None

    def forget(self, user: str) -> int:
        """Log out every parked connection of ``user`` (``imapproxy kick``); how many."""
        mine = [parked for parked in self._parked if parked.lease.user == user]
        for parked in mine:
            self._discard(parked)
        return len(mine)

    def _discard(self, parked: _Parked, parked_now: bool = True) -> None:
        """Log a parked connection out in the background; its slot is freed once closed."""
        if parked_now and parked in self._parked:
            self._parked.remove(parked)
        if parked.expiry is not None:
            parked.expiry.cancel()

        async def close() -> None:
            try:
                await parked.conn.logout()
            finally:
                parked.conn.close()
                self.slots.give_back(parked.lease.user)
                self.on_event("closed")

        task = asyncio.ensure_future(close())
        self._discarding.add(task)
        task.add_done_callback(self._discarding.discard)

    async def close(self) -> None:
        """Server shutdown: log every parked connection out; park nothing after."""
        self._closed = True
        for parked in list(self._parked):
            self._discard(parked)
        if self._discarding:
            await asyncio.wait(set(self._discarding), timeout=RESET_TIMEOUT + 1)


async def _reset(conn: UpstreamConnection, selected: bool) -> bool:
    """Bring the connection back to the plain authenticated state; False if that failed."""
    if not selected:
        command, wanted = Command("", "NOOP"), "OK"
    elif "UNSELECT" in conn.capabilities:
        command, wanted = Command("", "UNSELECT"), "OK"
    else:  # a failed EXAMINE leaves no mailbox selected (RFC 3501 6.3.1), CLOSE would expunge
        name = b"imapproxy-no-such-mailbox-" + secrets.token_hex(8).encode()
        command, wanted = Command("", "EXAMINE", (astring_token(name),)), "NO"
    try:
        status = await asyncio.wait_for(conn.simple(command), RESET_TIMEOUT)
    except (TimeoutError, ImapError):
        return False
    return status.status == wanted and _drain(conn)


def _drain(conn: UpstreamConnection) -> bool:
    """Drop unsolicited responses; False if the connection is dead or being closed (BYE)."""
    for item in conn.pending():
        if isinstance(item.response, StatusResponse) and item.response.status == "BYE":
            return False
    return not conn.lost
