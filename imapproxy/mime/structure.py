"""BODY, BODYSTRUCTURE and ENVELOPE values, written as Dovecot 2.3 writes them
(lib-imap/imap-bodystructure.c, imap-envelope.c).

Rules that matter for byte equality: type, subtype and parameter names keep the message's
case; a text part without a charset gets ("charset" "us-ascii"); a missing transfer encoding is
"7bit"; text parts add their line count, message/rfc822 parts their envelope, structure and
line count; a multipart without children shows one empty text/plain part; an unparsable
Content-Type shows as ``"" ""``; a missing envelope sender/reply-to repeats the sender.
"""

from __future__ import annotations

from .part import DIGEST, MULTIPART, RFC822, Address, Envelope, Param, Part
from .quote import for_humans, nstring, nstring_nolf, string

__all__ = ["bodystructure", "envelope"]

_EMPTY_BODY = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
_EMPTY_BODYSTRUCTURE = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
_EMPTY_ENVELOPE = b"NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL"


def bodystructure(part: Part, extended: bool = True) -> bytes:
    """The BODYSTRUCTURE value (``extended``) or the BODY value of ``part``."""
    out = bytearray(b"(")
    _write(part, out, extended)
    out += b")"
    return bytes(out)


def envelope(part: Part) -> bytes:
    """The ENVELOPE value of a message (the root, or the child of a message/rfc822 part)."""
    out = bytearray(b"(")
    _write_envelope(part.envelope, out)
    out += b")"
    return bytes(out)


def _write(part: Part, out: bytearray, extended: bool, in_digest: bool = False) -> None:
    if part.flags & MULTIPART:
        _write_multipart(part, out, extended)
    else:
        _write_single(part, out, extended, in_digest)


def _params(params: tuple[Param, ...], out: bytearray, default_charset: bool) -> None:
    if not params and not default_charset:
        out += b"NIL"
        return
    out += b"("
    seen_charset = False
    for i, (name, value) in enumerate(params):
        if i:
            out += b" "
        if default_charset and name.lower() == b"charset":
            seen_charset = True
        out += string(name) + b" " + string(value)
    if default_charset and not seen_charset:
        if params:
            out += b" "
        out += b'"charset" "us-ascii"'
    out += b")"


def _common_extension(part: Part, out: bytearray) -> None:
    c = part.content
    if c.disposition is None:
        out += b" NIL"
    else:
        out += b" (" + string(c.disposition) + b" "
        _params(c.disposition_params, out, False)
        out += b")"
    if c.language is None:
        out += b" NIL"
    else:
        out += b" (" + b" ".join(string(lang) for lang in c.language) + b")"
    out += b" " + nstring_nolf(c.location)


def _write_multipart(part: Part, out: bytearray, extended: bool) -> None:
    if part.children:
        for child in part.children:
            out += b"("
            _write(child, out, extended, bool(part.flags & DIGEST))
            out += b")"
    else:
        out += _EMPTY_BODYSTRUCTURE if extended else _EMPTY_BODY
    c = part.content
    out += b" " + string(c.subtype if c.subtype is not None else b"")
    if not extended:
        return
    out += b" "
    _params(c.params, out, False)
    _common_extension(part, out)


def _truncated(part: Part, in_digest: bool) -> bool:
    """part_is_truncated: a part-count limit left a multipart or message/rfc822 unparsed."""
    c = part.content
    if c.type is not None:
        lower = c.type.lower()
        return (lower == b"message" and (c.subtype or b"").lower() == b"rfc822") \
            or lower == b"multipart"
    return in_digest


def _write_single(part: Part, out: bytearray, extended: bool, in_digest: bool) -> None:
    c = part.content
    if part.flags & RFC822:
        out += b'"message" "rfc822"'
        text = False
    elif _truncated(part, in_digest):
        out += b'"application" "octet-stream"'
        text = False
    elif c.type is None:
        out += b'"text" "plain"'
        text = True
    else:
        text = c.type.lower() == b"text"
        out += string(c.type) + b" " + string(c.subtype if c.subtype is not None else b"")
    out += b" "
    _params(c.params, out, text)
    out += b" " + nstring_nolf(c.id) + b" " + nstring_nolf(c.description) + b" "
    out += string(c.transfer_encoding) if c.transfer_encoding is not None else b'"7bit"'
    out += b" %d" % part.body_vsize
    if text:
        out += b" %d" % part.body_lines
    elif part.flags & RFC822:
        child = part.children[0]
        out += b" ("
        _write_envelope(child.envelope, out)
        out += b") ("
        _write(child, out, extended)
        out += b") %d" % part.body_lines
    if not extended:
        return
    out += b" " + nstring_nolf(c.md5)
    _common_extension(part, out)


def _addresses(addrs: tuple[Address, ...] | None, out: bytearray) -> None:
    if addrs is None:
        out += b"NIL"
        return
    out += b"("
    for name, route, mailbox, domain in addrs:
        out += b"(" + (b"NIL" if name is None else for_humans(name)) + b" " + nstring(route) \
            + b" " + nstring(mailbox) + b" " + nstring(domain) + b")"
    out += b")"


def _write_envelope(env: Envelope | None, out: bytearray) -> None:
    if env is None:
        out += _EMPTY_ENVELOPE
        return
    out += nstring_nolf(env.date) + b" "
    out += b"NIL" if env.subject is None else for_humans(env.subject)
    for addrs in (env.from_, env.sender or env.from_, env.reply_to or env.from_, env.to,
                  env.cc, env.bcc):
        out += b" "
        _addresses(addrs, out)
    out += b" " + nstring_nolf(env.in_reply_to) + b" " + nstring_nolf(env.message_id)
