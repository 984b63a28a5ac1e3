"""Auth penalty, like Dovecot's auth_penalty: each failed login makes the next failure from
the same address or for the same user wait longer (0, 2, 4, 8 ... capped), and a password
already refused for a user is refused locally for a while, so brute force never reaches the
upstream more than once per distinct password. Passwords are kept only as salted SHA-256
digests with a per-process salt, never in clear."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..hardening_config import AuthPenaltyConfig


@dataclass
class _Failures:
    count: int
    last: float


class AuthPenalty:
    def __init__(self, config: AuthPenaltyConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._salt = secrets.token_bytes(16)
        self._failures: dict[str, _Failures] = {}  # "ip:1.2.3.4" / "user:bob" -> count
        self._refused: dict[bytes, float] = {}  # digest -> expiry

    def _digest(self, user: bytes, password: bytes, authzid: bytes) -> bytes:
        h = hashlib.sha256(self._salt)
        for part in (user, authzid, password):
            h.update(len(part).to_bytes(4, "big") + part)
        return h.digest()

    def _count(self, key: str, now: float) -> int:
        entry = self._failures.get(key)
        if entry is None or now - entry.last > self.config.forget_after:
            self._failures.pop(key, None)
            return 0
        return entry.count

    def delay(self, ip: str | None, user: str) -> float:
        """Seconds to wait before answering the next failure of this address or user
        (``ip`` None: not counted per address)."""
        now = self.clock()
        previous = self._count("user:" + user, now)
        if ip is not None:
            previous = max(previous, self._count("ip:" + ip, now))
        if previous == 0:
            return 0.0
        return float(min(self.config.max_delay, self.config.initial_delay * 2 ** (previous - 1)))

    def known_wrong(self, user: bytes, password: bytes, authzid: bytes = b"") -> bool:
        """True when this exact password was refused for this user a moment ago."""
        digest = self._digest(user, password, authzid)
        expiry = self._refused.get(digest)
        if expiry is None:
            return False
        if expiry < self.clock():
            del self._refused[digest]
            return False
        return True

    def failed(self, ip: str | None, user: bytes, password: bytes,
               authzid: bytes = b"") -> None:
        now = self.clock()
        shown = user.decode("utf-8", "replace")
        keys = ["user:" + shown] if ip is None else ["ip:" + ip, "user:" + shown]
        for key in keys:
            count = self._count(key, now)
            self._failures[key] = _Failures(count + 1, now)
        if self.config.failure_cache_ttl > 0:
            self._refused[self._digest(user, password, authzid)] = \
                now + self.config.failure_cache_ttl
        self._prune(now)

    def succeeded(self, ip: str | None, user: str) -> None:
        if ip is not None:
            self._failures.pop("ip:" + ip, None)
        self._failures.pop("user:" + user, None)

    def _prune(self, now: float) -> None:
        """Bound memory under a flood of distinct users/passwords: drop expired entries."""
        if len(self._refused) > 10_000:
            self._refused = {k: v for k, v in self._refused.items() if v >= now}
        if len(self._failures) > 10_000:
            self._failures = {k: v for k, v in self._failures.items()
                              if now - v.last <= self.config.forget_after}
