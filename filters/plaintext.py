"""plaintext: every message becomes one small text/plain part, for very slow links.

The top-level header is kept byte for byte except its Content-* fields (MIME-Version stays);
the body is the message's text: the text/plain part (decoded from its transfer encoding and
charset, tolerant of wrong ones), HTML converted to readable text when there is no plain
alternative, attached messages as a From/Date/Subject summary and their text, and every
attachment or non-text part as one line ``[attachment: name.pdf, application/pdf, 1.2 MB]``.
The result is UTF-8, 7bit when it is all ASCII with short lines, quoted-printable otherwise.
A message that already is one text/plain part is left alone. See docs/plaintext.md.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from typing import Any

from imapproxy.filtering.api import FilterContext
from imapproxy.mime import parse_message
from imapproxy.mime.part import Part

from ._html_text import html_to_text
from ._mime_splice import (
    CRLF,
    body_bytes_lenient,
    content_type,
    decode_text,
    decode_words,
    decoded_size,
    field_value,
    filename,
    header_fields,
    param,
    to_crlf,
)

MAX_LINE = 998  # RFC 5322 line limit: longer lines force quoted-printable
SUMMARY_HEADERS = (b"from", b"date", b"subject")


class PlaintextFilter:
    """The MessageFilter (imapproxy/filtering/api.py) that flattens messages to text."""

    name = "plaintext"
    version = "1"
    cache_output = True

    def fingerprint(self) -> str:
        return "no-settings"

    def apply(self, raw: bytes, context: FilterContext) -> bytes | None:
        root = parse_message(raw)
        if not root.is_multipart and not root.is_message \
                and content_type(root) == ("text", "plain"):
            return None
        text = "\n\n".join(block for block in _Renderer(raw).render(root) if block)
        cte, body = _encode_body(text)
        return _header(raw, root, cte) + CRLF + body


def make_filter(settings: Mapping[str, Any]) -> PlaintextFilter:
    """The FilterFactory of the ``imapproxy.filters`` entry point ``plaintext``."""
    if settings:
        raise ValueError(f"plaintext: unknown setting(s): {', '.join(sorted(settings))}")
    return PlaintextFilter()


class _Renderer:
    """The text blocks of a part tree, in reading order."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def render(self, part: Part) -> list[str]:
        if part.is_multipart:
            return self._multipart(part)
        if part.is_message:
            return self._message(part.children[0]) if part.children else []
        kind, subtype = content_type(part)
        attachment = (part.content.disposition or b"").lower() == b"attachment"
        if kind == "text" and subtype in ("plain", "html") and not attachment:
            text = self._text(part)
            return [html_to_text(text) if subtype == "html" else text]
        return [self.attachment_line(part)]

    def _multipart(self, part: Part) -> list[str]:
        if not part.children:  # no usable boundary: Dovecot shows the body as text too
            return [self._text(part)]
        if content_type(part)[1] == "alternative":
            return self.render(_preferred_alternative(part.children))
        blocks: list[str] = []
        for child in part.children:
            blocks.extend(self.render(child))
        return blocks

    def _message(self, message: Part) -> list[str]:
        """An attached message: a short header summary, then its own text."""
        lines = ["-------- Attached message --------"]
        for field in header_fields(self.raw, message):
            if field.name in SUMMARY_HEADERS:
                name = self.raw[field.start:field.start + len(field.name)].decode("latin-1")
                lines.append(f"{name}: {decode_words(field_value(self.raw, field))}")
        return ["\n".join(lines), *self.render(message)]

    def _text(self, part: Part) -> str:
        data = body_bytes_lenient(self.raw, part)
        text = decode_text(data, param(part.content.params, "charset"))
        return text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")

    def attachment_line(self, part: Part) -> str:
        kind, subtype = content_type(part)
        size = _human_size(decoded_size(self.raw, part))
        name = _one_line(filename(part) or "")
        type_ = f"{kind}/{subtype}" if subtype else kind or "application/octet-stream"
        return f"[attachment: {name + ', ' if name else ''}{type_}, {size}]"


def _preferred_alternative(children: list[Part]) -> Part:
    """text/plain, else text/html, else the last (richest) alternative."""
    for wanted in ("plain", "html"):
        for child in children:
            if not child.is_multipart and content_type(child) == ("text", wanted):
                return child
    return children[-1]


def _human_size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    size = float(n)
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            return f"{size:.1f}".removesuffix(".0") + f" {unit}"
    raise AssertionError("unreachable")


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _header(raw: bytes, root: Part, cte: bytes) -> bytes:
    """The top-level header without Content-* fields, plus the new ones."""
    kept: list[bytes] = []
    has_mime_version = False
    for field in header_fields(raw, root):
        if field.name.startswith(b"content-"):
            continue
        has_mime_version = has_mime_version or field.name == b"mime-version"
        line = to_crlf(raw[field.start:field.stop])
        kept.append(line if line.endswith(CRLF) else line + CRLF)
    if not has_mime_version:
        kept.append(b"MIME-Version: 1.0" + CRLF)
    kept.append(b"Content-Type: text/plain; charset=utf-8" + CRLF)
    kept.append(b"Content-Transfer-Encoding: " + cte + CRLF)
    return b"".join(kept)


def _encode_body(text: str) -> tuple[bytes, bytes]:
    """(transfer encoding, body with CRLF lines): 7bit for short ASCII lines, else
    quoted-printable (8bit would be smaller, but not every server and client path is 8-bit
    clean; QP is)."""
    lines = text.split("\n")
    body = CRLF.join(line.encode() for line in lines) + CRLF
    if body.isascii() and all(len(line) <= MAX_LINE for line in lines):
        return b"7bit", body
    return b"quoted-printable", _qp_crlf(body)


def _qp_crlf(body: bytes) -> bytes:
    """binascii's quoted-printable, with CRLF line ends (soft breaks included)."""
    encoded = binascii.b2a_qp(body.replace(CRLF, b"\n"), quotetabs=False, istext=True)
    return encoded.replace(b"\n", CRLF)
