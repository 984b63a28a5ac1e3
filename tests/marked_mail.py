"""Mail that says whose it is: every message of a user carries that user's unique marker in
its headers, its text, a quoted-printable part and a base64 attachment (so BINARY's decoded
bytes show it too). A byte stream that contains another user's marker has leaked mail.

``MarkerScanner`` checks a stream as it arrives (markers cut between two reads are found).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable

from tests.integration.conftest import RawClient


def new_marker() -> bytes:
    """A marker no other user's mail (and no generated junk) can contain by chance."""
    return f"XMARK{secrets.token_hex(10)}".encode()


def marked_message(marker: bytes, index: int) -> bytes:
    """Message ``index`` of the owner of ``marker``: multipart, one text part, one
    quoted-printable part and one base64 attachment, each naming the marker."""
    m = marker
    attachment = base64.encodebytes(b"attached " + m + b" number %d\n" % index * 3)
    return b"\r\n".join([
        b"From: Owner <" + m + b"@example.org>",
        b"To: someone@example.org",
        b"Subject: message %d of " % index + m,
        b"Message-ID: <%d." % index + m + b"@example.org>",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="b-' + m + b'"',
        b"",
        b"--b-" + m,
        b"Content-Type: text/plain; charset=us-ascii",
        b"",
        b"plain text of message %d: " % index + m,
        b"--b-" + m,
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: quoted-printable",
        b"",
        b"caf=C3=A9 " + m + b" =",
        b"soft break",
        b"--b-" + m,
        b'Content-Type: application/octet-stream; name="' + m + b'.bin"',
        b"Content-Transfer-Encoding: base64",
        b"",
        attachment.replace(b"\n", b"\r\n").rstrip(b"\r\n"),
        b"--b-" + m + b"--",
        b"",
    ])


class MarkerScanner:
    """Watches one session's received bytes for any of ``forbidden`` markers (and notes
    whether it saw ``own``, the session user's marker: proof its mail was read at all)."""

    def __init__(self, forbidden: Iterable[bytes], own: bytes | None = None) -> None:
        self.forbidden = tuple(forbidden)
        self.own = own
        self.saw_own = False
        self._keep = max((len(m) for m in (*self.forbidden, own or b"")), default=1) - 1
        self._tail = b""
        self.received = 0
        self.leaks: list[bytes] = []

    def feed(self, data: bytes) -> None:
        window = self._tail + data
        self.received += len(data)
        for marker in self.forbidden:
            at = window.find(marker)
            if at >= 0:
                self.leaks.append(window[max(0, at - 80):at + len(marker) + 80])
        if self.own is not None and not self.saw_own:
            self.saw_own = self.own in window
        self._tail = window[-self._keep:] if self._keep else b""


class ScannedClient(RawClient):
    """A RawClient whose every received byte goes through a MarkerScanner."""

    def __init__(self, host: str, port: int, scanner: MarkerScanner, timeout: float) -> None:
        self.scanner = scanner
        super().__init__(host, port, timeout=timeout)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.scanner.feed(data)
        if not data:
            return False
        self.buf += data
        return True
