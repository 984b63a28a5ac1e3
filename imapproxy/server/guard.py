"""The abuse guard a session consults around login: connection limits (server/limits.py) and
the auth penalty (server/penalty.py), shared by every session of one ProxyApp. Sessions call
``check_login`` before asking the upstream, ``login_failed`` / ``login_ok`` after, and the app
takes and releases the connection slot around the whole session."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable

from ..config import Config
from ..errors import CommandFailed
from .limits import ConnectionLimits, is_loopback_ip
from .penalty import AuthPenalty

log = logging.getLogger(__name__)

AUTH_FAILED = "Authentication failed."


def client_ip(peer: object) -> str:
    """The address part of a peer name, IPv4-mapped IPv6 shown as IPv4 (one client, one key)."""
    if not isinstance(peer, tuple) or not peer:
        return str(peer)
    text = str(peer[0]).split("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class Guard:
    def __init__(self, config: Config) -> None:
        self.limits = ConnectionLimits(config.limits)
        self.penalty = AuthPenalty(config.auth_penalty)
        self.exempt_loopback = config.limits.exempt_loopback
        # Told "connection_refused", "login_refused", "penalty", "known_wrong_password"
        # (the metrics' guard counters).
        self.on_event: Callable[[str], None] = lambda event: None

    def _counted(self, ip: str) -> str | None:
        """The address the penalty counts, None for an exempt loopback client."""
        return None if self.exempt_loopback and is_loopback_ip(ip) else ip

    async def check_login(self, ip: str, user: bytes, password: bytes, authzid: bytes) -> None:
        """Refuse (NO [AUTHENTICATIONFAILED], after the penalty delay) a password this user
        just failed with, without asking the upstream again."""
        if self.penalty.known_wrong(user, password, authzid):
            self.on_event("known_wrong_password")
            log.info("login failed user=%s ip=%s reason=%s", _shown(user), ip,
                     "password refused moments ago (not asked upstream)")
            await self.login_failed(ip, user, password, authzid)
            raise CommandFailed(AUTH_FAILED, "AUTHENTICATIONFAILED")

    async def login_failed(self, ip: str, user: bytes, password: bytes, authzid: bytes) -> None:
        """Wait the penalty, then count the failure (the wait grows with each one)."""
        delay = self.penalty.delay(self._counted(ip), _shown(user))
        if delay > 0:
            self.on_event("penalty")
            await asyncio.sleep(delay)
        self.penalty.failed(self._counted(ip), user, password, authzid)

    def login_ok(self, ip: str, user: str) -> None:
        """Count the session against ``user``; raises NO [LIMIT] when that is one too many."""
        if not self.limits.may_log_in(user):
            log.info("login refused user=%s ip=%s reason=too many connections of the user",
                     user, ip)
            self.on_event("login_refused")
            raise CommandFailed("Too many connections for this user.", "LIMIT")
        self.penalty.succeeded(self._counted(ip), user)
        self.limits.logged_in(ip, user)


def _shown(user: bytes) -> str:
    return user.decode("utf-8", "replace")
