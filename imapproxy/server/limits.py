"""Connection accounting: how many sessions there are in all, per client address, per user,
and how many per address have not logged in yet. One instance per ProxyApp; sessions take a
slot when they start and give it back when they end, so the counts never drift."""

from __future__ import annotations

import ipaddress
from collections import Counter

from ..config import LimitsConfig


def is_loopback_ip(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _over(count: int, limit: int) -> bool:
    return limit > 0 and count >= limit


class ConnectionLimits:
    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self.total = 0
        self.per_ip: Counter[str] = Counter()
        self.unauthenticated: Counter[str] = Counter()
        self.per_user: Counter[str] = Counter()

    def open(self, ip: str) -> str | None:
        """Count a new connection from ``ip``; the refusal reason when one is over a limit
        (nothing counted then)."""
        if _over(self.total, self.limits.max_connections):
            return "Too many connections"
        if not (self.limits.exempt_loopback and is_loopback_ip(ip)):
            if _over(self.per_ip[ip], self.limits.max_connections_per_ip):
                return "Too many connections from your address"
            if _over(self.unauthenticated[ip], self.limits.max_unauthenticated_per_ip):
                return "Too many unauthenticated connections from your address"
        self.total += 1
        self.per_ip[ip] += 1
        self.unauthenticated[ip] += 1
        return None

    def may_log_in(self, user: str) -> bool:
        return not _over(self.per_user[user], self.limits.max_connections_per_user)

    def logged_in(self, ip: str, user: str) -> None:
        _decrement(self.unauthenticated, ip)
        self.per_user[user] += 1

    def close(self, ip: str, user: str | None) -> None:
        """The connection from ``ip`` ended (``user``: who it was logged in as, if anyone)."""
        self.total -= 1
        _decrement(self.per_ip, ip)
        if user is None:
            _decrement(self.unauthenticated, ip)
        else:
            _decrement(self.per_user, user)


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
