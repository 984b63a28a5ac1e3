"""Opening one message: decrypt its PGP/MIME and inline PGP parts, verify its signatures, and
splice the results into the original bytes.

Only the parts that change are rewritten (by offsets from imapproxy.mime's part tree), so
everything else keeps its exact bytes. Attached messages (message/rfc822) are left alone: they
are someone else's mail. A part that cannot be decrypted turns the whole message into an
explanation with the original attached (``Undecryptable`` carries why).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from imapproxy.mime import MimeDecodeError, Part, parse_message

from .pgp_gpg import Gpg
from .pgp_mime import (
    Field,
    crlf,
    decode_transfer,
    encode_transfer,
    failure_message,
    header_fields,
    is_content_field,
    result_field,
    split_entity,
    text_transfer_encoding,
    without_result_headers,
)
from .pgp_status import Decryption, Signature

# Anything that may be PGP: armor (also as the start of a base64 body) or an RFC 3156 protocol
# parameter (application/pgp-encrypted, -signature) in the spellings mail programs use. Plain
# substring tests: a regular expression costs ~50 times more on a 20 KB message.
_MARKERS = (b"-----BEGIN PGP ", b"LS0tLS1CRUdJTiBQR1Ag", b"pgp-", b"PGP-", b"Pgp-")
_FORGED = re.compile(rb"^x-imapproxy-pgp[ \t]*:", re.IGNORECASE | re.MULTILINE)
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_ENCRYPTED_BLOCK = re.compile(
    rb"^-----BEGIN PGP MESSAGE-----[ \t]*\r\n.*?^-----END PGP MESSAGE-----[ \t]*(?=\r\n|\Z)",
    re.MULTILINE | re.DOTALL,
)
_SIGNED_BLOCK = re.compile(
    rb"^-----BEGIN PGP SIGNED MESSAGE-----[ \t]*\r\n.*?^-----END PGP SIGNATURE-----[ \t]*"
    rb"(?=\r\n|\Z)",
    re.MULTILINE | re.DOTALL,
)


class Undecryptable(Exception):
    """A part of the message could not be decrypted."""

    def __init__(self, decryption: Decryption) -> None:
        super().__init__(decryption.reason)
        self.decryption = decryption


def mentions_pgp(raw: bytes) -> bool:
    """The cheap test that lets ordinary messages through without parsing or running gpg."""
    return any(marker in raw for marker in _MARKERS)


def has_forged_result(raw: bytes) -> bool:
    """Whether the header already has a result header (which only this filter may write)."""
    end = raw.find(b"\r\n\r\n")
    lf_end = raw.find(b"\n\n", 0, len(raw) if end == -1 else end)
    end = lf_end if lf_end != -1 else end
    return _FORGED.search(raw, 0, len(raw) if end == -1 else end) is not None


def strip_result_headers(raw: bytes) -> bytes:
    """The message without any result header, CRLF."""
    head, body = split_entity(crlf(raw))
    kept = b"".join(text for _, text in without_result_headers(header_fields(head)))
    return kept + b"\r\n" + body


def open_message(raw: bytes, gpg: Callable[[], Gpg]) -> bytes | None:
    """The decrypted/verified message with its result headers, the failure explanation, or None
    when there was nothing PGP in it after all. ``gpg`` is only called when a part needs it."""
    raw = crlf(raw)
    opener = _Opener(raw, gpg)
    try:
        opener.visit(parse_message(raw), is_root=True)
    except Undecryptable as failed:
        return failure_message(raw, _root_fields(raw), *_explain(failed.decryption))
    fields = _root_fields(raw)
    if not opener.edits and not opener.phrases and fields == without_result_headers(fields):
        return None
    out = raw
    for start, end, replacement in sorted(opener.edits, reverse=True):
        out = out[:start] + replacement + out[end:]
    results = b"".join(result_field(phrase) for phrase in opener.phrases)
    return results + strip_result_headers(out)


def _root_fields(raw: bytes) -> list[Field]:
    return header_fields(split_entity(raw)[0])


def _explain(failed: Decryption) -> tuple[str, str]:
    """(result header phrase, readable explanation) of a failed decryption."""
    lines = [
        "This message is encrypted with OpenPGP and the IMAP proxy could not decrypt it.",
        "",
        f"Reason: {failed.reason}",
    ]
    if failed.recipients:
        lines.append("It was encrypted to the key(s): " + ", ".join(failed.recipients))
    lines += ["", "The original message is attached unchanged."]
    return f"not decrypted: {failed.reason[:200]}", "\r\n".join(lines)


@dataclass
class _Opener:
    """Walks the part tree and collects byte edits and result phrases."""

    raw: bytes
    gpg: Callable[[], Gpg]
    edits: list[tuple[int, int, bytes]] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)

    def visit(self, part: Part, is_root: bool = False) -> None:
        kind = _mime_type(part)
        protocol = _param(part, b"protocol").lower()
        if kind == b"multipart/encrypted" and protocol == b"application/pgp-encrypted":
            if len(part.children) >= 2:
                self._decrypt_pgp_mime(part, is_root)
        elif kind == b"multipart/signed" and protocol == b"application/pgp-signature":
            if len(part.children) >= 2:
                self.phrases += _describe(self._verify_pgp_mime(self.raw, part))
        elif part.is_multipart:
            for child in part.children:
                self.visit(child)
        elif kind == b"text/plain" and (part.content.disposition or b"inline").lower() == b"inline":
            self._open_inline(part, is_root)

    def _decrypt_pgp_mime(self, part: Part, is_root: bool) -> None:
        """RFC 3156 section 4: the second part holds the armored data."""
        data = part.children[1]
        try:
            blob = decode_transfer(self.raw[data.body_offset:data.end],
                                   data.content.transfer_encoding)
        except MimeDecodeError as exc:
            raise Undecryptable(Decryption(False, reason=f"corrupt encrypted part: {exc}")) from exc
        decryption = self.gpg().decrypt(blob)
        if not decryption.ok:
            raise Undecryptable(decryption)
        entity = _as_entity(crlf(decryption.data))
        inner_head, inner_body = split_entity(entity)
        inner = without_result_headers(header_fields(inner_head))
        signatures = list(decryption.signatures)
        inner_root = parse_message(entity)
        if _mime_type(inner_root) == b"multipart/signed" and len(inner_root.children) >= 2:
            signatures += self._verify_pgp_mime(entity, inner_root)
        self.phrases.append("; ".join([f"decrypted with key {decryption.key}"]
                                      + _describe(signatures)))
        outer = [(name, text) for name, text in header_fields(
            self.raw[part.offset:part.body_offset]) if not is_content_field(name)]
        if _param(inner_root, b"protected-headers").lower() == b"v1":
            # Protected headers (Thunderbird's encrypted subject): the inner ones win.
            inner_names = {name for name, _ in inner}
            outer = [(name, text) for name, text in outer if name not in inner_names]
        names = {name for name, _ in outer}
        added = [(name, text) for name, text in inner if name not in names]
        if is_root and b"mime-version" not in names | {name for name, _ in added}:
            added.insert(0, (b"mime-version", b"MIME-Version: 1.0\r\n"))
        head = b"".join(text for _, text in outer + added)
        self.edits.append((part.offset, part.end, head + b"\r\n" + inner_body))

    def _verify_pgp_mime(self, raw: bytes, part: Part) -> list[Signature]:
        """RFC 3156 section 5: the signature covers the first part exactly as sent (headers
        included, up to the CRLF before the boundary), in CRLF form."""
        signed, sig = part.children[0], part.children[1]
        try:
            signature = decode_transfer(raw[sig.body_offset:sig.end],
                                        sig.content.transfer_encoding)
        except MimeDecodeError:
            return [Signature("invalid", "")]
        return list(self.gpg().verify_detached(crlf(raw[signed.offset:signed.end]), signature))

    def _open_inline(self, part: Part, is_root: bool) -> None:
        """Armored blocks in a text/plain body: decrypt each encrypted one in place, then check
        cleartext signatures (also those that were inside an encrypted block)."""
        encoding = part.content.transfer_encoding
        try:
            text = crlf(decode_transfer(self.raw[part.body_offset:part.end], encoding))
        except MimeDecodeError:  # an undecodable body is no PGP we could open
            return
        if b"-----BEGIN PGP " not in text:
            return
        changed = False
        phrases: list[str] = []
        for block in reversed(list(_ENCRYPTED_BLOCK.finditer(text))):
            decryption = self.gpg().decrypt(block.group(0) + b"\r\n")
            if not decryption.ok:
                raise Undecryptable(decryption)
            plain = crlf(decryption.data)
            plain = plain[:-2] if plain.endswith(b"\r\n") else plain
            text = text[:block.start()] + plain + text[block.end():]
            changed = True
            phrases.insert(0, "; ".join([f"decrypted with key {decryption.key}"]
                                        + _describe(decryption.signatures)))
        self.phrases += phrases
        for block in _SIGNED_BLOCK.finditer(text):
            self.phrases += _describe(self.gpg().verify_inline(block.group(0) + b"\r\n"))
        if changed:
            self.edits.append((part.offset, part.end, self._text_part(part, text, is_root)))

    def _text_part(self, part: Part, text: bytes, is_root: bool) -> bytes:
        """The part's header with a transfer encoding that fits the new text, then the text."""
        encoding = text_transfer_encoding(text)
        fields = [(name, value) for name, value in header_fields(
            self.raw[part.offset:part.body_offset]) if name != b"content-transfer-encoding"]
        names = {name for name, _ in fields}
        if is_root and b"mime-version" not in names:
            fields.append((b"mime-version", b"MIME-Version: 1.0\r\n"))
        if not text.isascii() and _charset(part) in (b"", b"us-ascii") and _is_utf8(text):
            # Plaintext is usually UTF-8 even in a us-ascii part (the armor was ASCII).
            fields = [(name, value) for name, value in fields if name != b"content-type"]
            params = b"".join(b"; " + key + b'="' + value + b'"' for key, value
                              in part.content.params if key.lower() != b"charset")
            fields.append((b"content-type",
                           b"Content-Type: text/plain; charset=utf-8" + params + b"\r\n"))
        fields.append((b"content-transfer-encoding",
                       b"Content-Transfer-Encoding: " + encoding + b"\r\n"))
        return b"".join(value for _, value in fields) + b"\r\n" + encode_transfer(text, encoding)


def _as_entity(plaintext: bytes) -> bytes:
    """The decrypted data as a MIME entity. RFC 3156 requires one, but some senders encrypt
    bare text: that becomes a text/plain entity instead of a header of garbage."""
    first_line = plaintext.split(b"\r\n", 1)[0]
    if not first_line or _HEADER_LINE.match(first_line):
        return plaintext
    charset = b"us-ascii" if plaintext.isascii() else b"utf-8"
    encoding = text_transfer_encoding(plaintext)
    return (b"Content-Type: text/plain; charset=" + charset + b"\r\n"
            + b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n"
            + encode_transfer(plaintext, encoding))


def _mime_type(part: Part) -> bytes:
    if part.content.type is None:
        return b"text/plain"
    return (part.content.type + b"/" + (part.content.subtype or b"")).lower()


def _charset(part: Part) -> bytes:
    return _param(part, b"charset").lower() if part.content.type is not None else b""


def _is_utf8(text: bytes) -> bool:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _param(part: Part, name: bytes) -> bytes:
    for key, value in part.content.params:
        if key.lower() == name:
            return value
    return b""


def _describe(signatures: list[Signature] | tuple[Signature, ...]) -> list[str]:
    if not signatures:
        return []
    return ["; ".join(sig.describe() for sig in signatures)]
