"""Back-off for servers that say ``[THROTTLED]`` (Gmail, Exchange, Dovecot with
imapc throttling): wait 50 ms, doubling to 16 s while they keep saying it, and shrink the
wait again after each command that went through (like Dovecot's ``throttle:50:16000:80``)."""

from __future__ import annotations

INITIAL = 0.05
MAXIMUM = 16.0


class Backoff:
    def __init__(self, initial: float = INITIAL, maximum: float = MAXIMUM,
                 max_retries: int = 12) -> None:
        self.initial = initial
        self.maximum = maximum
        self.max_retries = max_retries
        self._next = initial

    def throttled(self) -> float:
        """Seconds to wait now; the wait after that is twice as long (up to the maximum)."""
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def succeeded(self) -> None:
        self._next = max(self.initial, self._next / 2)


def is_throttled(code: str | None, text: bytes) -> bool:
    return code == "THROTTLED" or b"[THROTTLED]" in text.upper()
