"""Byte-level helpers shared by the filters that rewrite messages.

Filters change a message by splicing: ``imapproxy.mime.parse_message`` gives every part as
byte offsets, a filter replaces the header lines and body of the parts it changes, and every
other byte of the message stays exactly as the upstream sent it (signatures over untouched
parts survive, and the client's cached copies of other parts still match).
"""

from __future__ import annotations

import binascii
import re
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import decode_rfc2231

from imapproxy.mime.decode import (
    CTE_78BIT,
    CTE_BASE64,
    CTE_BINARY,
    CTE_QP,
    base64_decode,
    parse_cte,
    qp_decode,
)
from imapproxy.mime.errors import MimeDecodeError
from imapproxy.mime.headers import continues, read_line, split_name
from imapproxy.mime.part import Part

CRLF = b"\r\n"


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One logical header of a part: ``raw[start:stop]`` is its lines with their newlines."""

    name: bytes  # lower-cased
    start: int
    stop: int
    value_start: int


def header_fields(raw: bytes, part: Part) -> list[HeaderField]:
    """The header fields of ``part`` in order (the empty line that ends the header excluded)."""
    out: list[HeaderField] = []
    pos, end = part.offset, part.body_offset
    while True:
        line = read_line(raw, pos, end)
        if line is None or line.content_end == line.start:
            return out
        first = line
        while continues(raw, line, end):
            nxt = read_line(raw, line.next, end)
            assert nxt is not None
            line = nxt
        name, value_start = split_name(raw, first, skip_all_lwsp=True)
        out.append(HeaderField(name.lower(), first.start, line.next, value_start))
        pos = line.next


def header_end(raw: bytes, part: Part) -> int:
    """Where a new header line may be inserted: before the empty line (or at the body when
    the header has none)."""
    fields = header_fields(raw, part)
    return fields[-1].stop if fields else part.offset


def field_value(raw: bytes, field: HeaderField) -> bytes:
    """The unfolded value (continuation newlines removed, CRs dropped)."""
    value = raw[field.value_start:field.stop]
    return re.sub(rb"\r?\n", b"", value).strip()


def to_crlf(data: bytes) -> bytes:
    """Every bare LF as CRLF (bare CRs are left alone)."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace ``raw[start:stop]`` with ``data``."""

    start: int
    stop: int
    data: bytes


def splice(raw: bytes, edits: Iterable[Edit]) -> bytes:
    """``raw`` with the (non-overlapping) edits applied; every other byte kept."""
    out: list[bytes] = []
    pos = 0
    for edit in sorted(edits, key=lambda e: (e.start, e.stop)):
        if edit.start < pos:
            raise ValueError("overlapping edits")
        out.append(raw[pos:edit.start])
        out.append(edit.data)
        pos = edit.stop
    out.append(raw[pos:])
    return b"".join(out)


def leaves(root: Part, signed: bool = True) -> Iterator[Part]:
    """Every part that holds content (not a multipart, not a message/rfc822), depth first,
    including the parts of attached messages; without those under a multipart/signed when
    ``signed`` is false."""
    stack = [root]
    while stack:
        part = stack.pop()
        if not signed and part.is_multipart and content_type(part)[1] == "signed":
            continue
        if part.children:
            stack.extend(reversed(part.children))
        elif not part.is_multipart and not part.is_message:
            yield part


def content_type(part: Part) -> tuple[str, str]:
    """(type, subtype), lower case; parts without MIME headers are text/plain."""
    c = part.content
    if c.type is None:
        return ("message", "rfc822") if part.is_message else ("text", "plain")
    return (c.type.decode("latin-1").lower(), (c.subtype or b"").decode("latin-1").lower())


def param(params: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """A parameter's value, RFC 2231 (``name*``) and RFC 2047 encodings decoded."""
    wanted = name.encode()
    for key, value in params:
        lkey = key.lower()
        if lkey == wanted:
            return decode_words(value)
        if lkey == wanted + b"*":
            text = value.decode("latin-1")
            charset, _lang, encoded = decode_rfc2231(text)
            try:
                return urllib.parse.unquote(encoded, encoding=charset or "utf-8",
                                            errors="replace")
            except LookupError:
                return urllib.parse.unquote(encoded, encoding="utf-8", errors="replace")
    return None


def filename(part: Part) -> str | None:
    """The attachment's name: Content-Disposition filename, else Content-Type name."""
    c = part.content
    return param(c.disposition_params, "filename") or param(c.params, "name")


def decode_words(value: bytes) -> str:
    """A header value as text: raw 8-bit as UTF-8 (else Windows-1252), RFC 2047 words decoded;
    never raises."""
    text = decode_text(value, "utf-8")
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError, AssertionError):
        return text


def decode_text(data: bytes, charset: str | None) -> str:
    """Bytes in a declared charset as text, tolerant of wrong or unknown charsets: the
    declared one, else UTF-8, else Windows-1252 (every byte maps to something)."""
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(_codec(candidate))
        except (LookupError, UnicodeError):
            continue
    return data.decode("cp1252", errors="replace")


def _codec(charset: str) -> str:
    name = charset.strip().strip('"').lower()
    # Mail says us-ascii/latin-1 where Windows code pages are meant (as browsers assume).
    return {"us-ascii": "ascii", "iso-8859-1": "cp1252", "latin1": "cp1252",
            "ks_c_5601-1987": "cp949", "x-unknown": "utf-8"}.get(name, name)


def part_cte(part: Part) -> int:
    """The part's transfer encoding as imapproxy.mime.decode's CTE_* constant."""
    cte = part.content.transfer_encoding
    return CTE_78BIT if cte is None else parse_cte(cte)


def body_bytes(raw: bytes, part: Part) -> bytes:
    """The part's body, decoded strictly (MimeDecodeError for broken or unknown encodings:
    callers that must not guess, like the image filter, leave such parts alone)."""
    body = raw[part.body_offset:part.end]
    cte = part_cte(part)
    if cte == CTE_BASE64:
        return base64_decode(body)
    if cte == CTE_QP:
        return qp_decode(body)
    if cte in (CTE_78BIT, CTE_BINARY):
        return body
    raise MimeDecodeError("unknown Content-Transfer-Encoding")


def body_bytes_lenient(raw: bytes, part: Part) -> bytes:
    """The part's body decoded as well as possible: never raises (for text shown to people)."""
    body = raw[part.body_offset:part.end]
    cte = part_cte(part)
    try:
        return body_bytes(raw, part)
    except MimeDecodeError:
        pass
    if cte == CTE_BASE64:
        try:
            return binascii.a2b_base64(re.sub(rb"[^A-Za-z0-9+/]", b"", body) + b"===")
        except binascii.Error:
            return b""
    if cte == CTE_QP:
        return binascii.a2b_qp(body)
    return body


def decoded_size(raw: bytes, part: Part) -> int:
    """The size of the part's decoded body; for base64 counted without decoding it."""
    if part_cte(part) != CTE_BASE64:
        return len(body_bytes_lenient(raw, part))
    body = raw[part.body_offset:part.end].translate(None, b" \t\r\n")
    padding = len(body) - len(body.rstrip(b"="))
    return max(0, (len(body) - padding) * 3 // 4)


def base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character CRLF lines (RFC 2045), without a final newline."""
    encoded = binascii.b2a_base64(data, newline=False)
    return CRLF.join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
