"""The one exception the codec raises for bad input; anything else escaping it is a bug."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Input that is not valid IMAP. ``tag`` is the command tag when it could be read."""

    def __init__(self, message: str, tag: str | None = None) -> None:
        super().__init__(message)
        self.tag = tag
