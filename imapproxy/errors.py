"""The error hierarchy. Each class maps to one IMAP answer; server/answers.py is the one place
that turns them into bytes.

- ``BadCommand``  -> ``tag BAD`` (the client sent something malformed or out of state)
- ``CommandFailed`` -> ``tag NO [CODE]`` (well-formed, but it did not work)
- ``SessionEnded`` -> ``* BYE`` and the connection closes
"""

from __future__ import annotations


class ImapError(Exception):
    status = "NO"

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class BadCommand(ImapError):
    status = "BAD"


class CommandFailed(ImapError):
    status = "NO"


class SessionEnded(ImapError):
    status = "BYE"


class UpstreamUnavailable(CommandFailed):
    """The upstream could not be reached or timed out; the session may go on."""

    def __init__(self, text: str) -> None:
        super().__init__(text, code="UNAVAILABLE")


class UpstreamLost(SessionEnded):
    """The upstream connection dropped mid-session: the session cannot go on."""
