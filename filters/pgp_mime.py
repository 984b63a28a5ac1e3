"""Byte-level MIME pieces the PGP filter needs: header fields, CRLF, transfer decoding, and the
messages it builds (the explanation of a failure, the PGP/MIME form of an APPEND).

Built on bytes rather than Python's email package so untouched parts keep their exact bytes
(signatures stay verifiable and sizes stay what the sender made).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from imapproxy.mime.decode import base64_decode, qp_decode

RESULT_HEADER = b"X-Imapproxy-PGP"
_RESULT_LOWER = RESULT_HEADER.lower()

Field = tuple[bytes, bytes]  # (lower-case name, the whole field with its CRLF)

_NEWLINE = re.compile(rb"\r?\n")


def crlf(data: bytes) -> bytes:
    """Every line end as CRLF (IMAP and RFC 3156 canonical form)."""
    return _NEWLINE.sub(b"\r\n", data)


def split_entity(entity: bytes) -> tuple[bytes, bytes]:
    """(header block without the blank line, body) of a CRLF entity."""
    if entity.startswith(b"\r\n"):
        return b"", entity[2:]
    head, sep, body = entity.partition(b"\r\n\r\n")
    if not sep:
        return (entity if entity.endswith(b"\r\n") else entity + b"\r\n"), b""
    return head + b"\r\n", body


def header_fields(block: bytes) -> list[Field]:
    """The fields of a CRLF header block, continuation lines kept with their field."""
    fields: list[Field] = []
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            name, text = fields[-1]
            fields[-1] = (name, text + line)
        elif line.strip():
            name = line.split(b":", 1)[0].strip().lower() if b":" in line else b""
            fields.append((name, line if line.endswith(b"\r\n") else line + b"\r\n"))
    return fields


def is_content_field(name: bytes) -> bool:
    return name.startswith(b"content-")


def without_result_headers(fields: Iterable[Field]) -> list[Field]:
    """Drop any result header the message already has: a sender must not forge one."""
    return [(name, text) for name, text in fields if name != _RESULT_LOWER]


def field_value(fields: Iterable[Field], name: bytes) -> bytes:
    for field_name, text in fields:
        if field_name == name:
            return b" ".join(text.split(b":", 1)[1].split())
    return b""


def result_field(phrase: str) -> bytes:
    """One result header field; non-ASCII user ids are RFC 2047 encoded."""
    try:
        value = phrase.encode("ascii")
    except UnicodeEncodeError:
        value = b"=?utf-8?b?" + base64.b64encode(phrase.encode()) + b"?="
    return RESULT_HEADER + b": " + value + b"\r\n"


def decode_transfer(body: bytes, encoding: bytes | None) -> bytes:
    """A part body with its Content-Transfer-Encoding undone (7bit/8bit/binary as they are)."""
    name = (encoding or b"").strip().lower()
    if name == b"base64":
        return base64_decode(body)
    if name == b"quoted-printable":
        return qp_decode(body)
    return body


def text_transfer_encoding(text: bytes) -> bytes:
    """The encoding a rewritten text body is sent in: 7bit/8bit when its lines allow it."""
    if b"\0" in text or any(len(line) > 998 for line in text.split(b"\r\n")):
        return b"base64"
    return b"7bit" if text.isascii() else b"8bit"


def encode_transfer(text: bytes, encoding: bytes) -> bytes:
    if encoding == b"base64":
        return base64.encodebytes(text).replace(b"\n", b"\r\n")
    return text


def boundary_for(content: bytes) -> bytes:
    """A boundary derived from what it encloses: the same message always gives the same
    output (the filter contract; sizes and sections must not change between fetches), and
    content practically never holds a line with its own hash."""
    return b"=_imapproxy_pgp_" + hashlib.sha256(content).hexdigest()[:24].encode()


def failure_message(
    original: bytes, fields: list[Field], phrase: str, explanation: str
) -> bytes:
    """A readable multipart/mixed message saying why the message could not be decrypted, with
    the original attached as message/rfc822. Keeps the original's non-Content headers so the
    client still shows sender, subject and date."""
    boundary = boundary_for(original)
    head = b"".join(text for name, text in without_result_headers(fields)
                    if not is_content_field(name) and name != b"mime-version")
    text = crlf(explanation.encode("utf-8")).rstrip(b"\r\n") + b"\r\n"
    return (
        head
        + result_field(phrase)
        + b"MIME-Version: 1.0\r\n"
        + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n'
        + b"\r\nThis is a multi-part message in MIME format.\r\n"
        + b"\r\n--" + boundary + b"\r\n"
        + b"Content-Type: text/plain; charset=utf-8\r\n"
        + b"Content-Transfer-Encoding: " + text_transfer_encoding(text) + b"\r\n"
        + b"\r\n" + text
        + b"\r\n--" + boundary + b"\r\n"
        + b"Content-Type: message/rfc822\r\n"
        + b'Content-Disposition: attachment; filename="original.eml"\r\n'
        + b"\r\n" + crlf(original).rstrip(b"\r\n") + b"\r\n"
        + b"\r\n--" + boundary + b"--\r\n"
    )


def pgp_mime_encrypted(outer: list[Field], armored: bytes) -> bytes:
    """An RFC 3156 multipart/encrypted message: ``outer`` header fields, then the version part
    and the armored data."""
    boundary = boundary_for(armored)
    return (
        b"".join(text for _, text in outer)
        + b"MIME-Version: 1.0\r\n"
        + b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";\r\n'
        + b' boundary="' + boundary + b'"\r\n'
        + b"\r\nThis is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
        + b"\r\n--" + boundary + b"\r\n"
        + b"Content-Type: application/pgp-encrypted\r\n"
        + b"Content-Description: PGP/MIME version identification\r\n"
        + b"\r\nVersion: 1\r\n"
        + b"\r\n--" + boundary + b"\r\n"
        + b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n'
        + b"Content-Description: OpenPGP encrypted message\r\n"
        + b'Content-Disposition: inline; filename="encrypted.asc"\r\n'
        + b"\r\n" + crlf(armored).rstrip(b"\r\n") + b"\r\n"
        + b"\r\n--" + boundary + b"--\r\n"
    )
