"""Errors of BINARY fetches, with the response codes Dovecot answers them with."""

from __future__ import annotations

from imapproxy.errors import CommandFailed


class MimeDecodeError(CommandFailed):
    """A BINARY fetch that Dovecot refuses: the whole FETCH command fails."""


class UnknownCte(MimeDecodeError):
    """A part's Content-Transfer-Encoding is not 7bit/8bit/binary/quoted-printable/base64
    (or is folded): ``NO [UNKNOWN-CTE]``."""

    def __init__(self) -> None:
        super().__init__("Unknown Content-Transfer-Encoding.", code="UNKNOWN-CTE")


class InvalidMimeData(MimeDecodeError):
    """Quoted-printable or base64 that cannot be decoded: ``NO [PARSE]``."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("Invalid data in MIME part", code="PARSE")
        self.detail = detail


class TruncatedMimeData(InvalidMimeData):
    """Encoded data that ends too early (a dangling ``=`` or a partial base64 group). Dovecot
    logs a read error and drops the connection without an answer; a proxy answers NO."""
