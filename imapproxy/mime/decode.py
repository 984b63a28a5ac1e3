"""Content-Transfer-Encoding decoders with Dovecot's strictness (lib-mail/qp-decoder.c,
lib/base64.c as used by istream-base64-decoder.c, message-decoder.c's CTE names).

Quoted-printable: ``=XY`` (hex in either case), soft line breaks ``=`` + blanks + [CR]LF,
trailing blanks of a line dropped, line breaks become CRLF; a bad ``=``, a CR not followed by
LF or a run of more than 76 blanks inside a line is invalid; a dangling ``=`` at the end is
truncation. Base64: blanks (space, tab, CR, LF) ignored, anything else outside the alphabet
is invalid, data after the padding is invalid, a partial last group is truncation.
"""

from __future__ import annotations

import binascii
import re

from .errors import InvalidMimeData, TruncatedMimeData
from .rfc822 import Rfc822Parser

CTE_78BIT = 1
CTE_BINARY = 2
CTE_QP = 3
CTE_BASE64 = 4
CTE_UNKNOWN = 0

_CTE_NAMES = {b"7bit": CTE_78BIT, b"8bit": CTE_78BIT, b"binary": CTE_BINARY,
              b"quoted-printable": CTE_QP, b"base64": CTE_BASE64}


def parse_cte(value: bytes) -> int:
    """message_decoder_parse_cte on one (unfolded) header value."""
    parser = Rfc822Parser(value)
    parser.skip_lwsp()
    token = bytearray()
    if parser.parse_mime_token(token) == 1:
        parser.skip_lwsp()
        if parser.peek() != 0x3B:  # only ";" (parameters) may follow
            return CTE_UNKNOWN
    return _CTE_NAMES.get(bytes(token).lower(), CTE_UNKNOWN)


# --- quoted-printable ------------------------------------------------------------------------

_QP_BAD_EQUALS = re.compile(rb"=(?![0-9A-Fa-f]{2})")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_QP_LONG_BLANKS = re.compile(rb"[ \t]{77,}(?=[^ \t])")
_QP_SOFT_BREAK = re.compile(rb"=[ \t]*\Z")
_QP_HALF_ESCAPE = re.compile(rb"=[0-9A-Fa-f]")


def _qp_unescape(match: re.Match[bytes]) -> bytes:
    return bytes((int(match.group(1), 16),))


def qp_decode(data: bytes) -> bytes:
    """Decode a quoted-printable body; InvalidMimeData / TruncatedMimeData as Dovecot."""
    out = bytearray()
    pos, end = 0, len(data)
    while pos < end:
        lf = data.find(b"\n", pos)
        if lf < 0:
            line, newline, pos = data[pos:], False, end
        else:
            line, newline, pos = data[pos:lf], True, lf + 1
            if line.endswith(b"\r"):
                line = line[:-1]
        truncated = False
        if not newline and line.endswith(b"\r"):
            line, truncated = line[:-1], True  # a CR at the very end
        if b"\r" in line:
            raise InvalidMimeData("CR not followed by LF")
        if _QP_LONG_BLANKS.search(line):
            raise InvalidMimeData("Too much whitespace")
        soft = _QP_SOFT_BREAK.search(line)
        body = line if soft is None else line[:soft.start()]
        bad = _QP_BAD_EQUALS.search(body) if b"=" in body else None
        if bad is not None:
            if newline or soft is not None or truncated or \
                    not _QP_HALF_ESCAPE.fullmatch(body, bad.start()):
                raise InvalidMimeData("'=' not followed by two hex digits")
            truncated = True  # "=X" at the very end
        if soft is not None and not newline:
            truncated = True
        if truncated:
            raise TruncatedMimeData("quoted-printable data ends prematurely")
        if soft is None:
            body = body.rstrip(b" \t")  # trailing blanks go (escaped ones stay)
        if b"=" in body:
            body = _QP_ESCAPE.sub(_qp_unescape, body)
        out += body
        if newline and soft is None:
            out += b"\r\n"
    return bytes(out)


# --- base64 ----------------------------------------------------------------------------------

_B64_BLANKS = b" \t\r\n"
_B64_NOT_ALPHABET = re.compile(rb"[^A-Za-z0-9+/]")


def base64_decode(data: bytes) -> bytes:
    """Decode a base64 body; InvalidMimeData / TruncatedMimeData as Dovecot."""
    compact = data.translate(None, _B64_BLANKS)
    bad = _B64_NOT_ALPHABET.search(compact)
    if bad is None:
        if len(compact) % 4:
            raise TruncatedMimeData("base64 data ends prematurely")
        return binascii.a2b_base64(compact)
    k = bad.start()
    rest = compact[k:]
    group = k % 4
    if rest[0] != 0x3D or group < 2:
        raise InvalidMimeData("invalid base64 character")
    if group == 2:
        if rest == b"=":
            raise TruncatedMimeData("base64 data ends prematurely")
        if rest != b"==":
            raise InvalidMimeData("invalid base64 padding")
        return binascii.a2b_base64(compact[:k] + b"==")
    if rest != b"=":
        raise InvalidMimeData("data after base64 padding")
    return binascii.a2b_base64(compact[:k] + b"=")
