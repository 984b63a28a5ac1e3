"""How Dovecot writes strings in FETCH data (lib-imap/imap-quote.c).

- ``nstring``: NIL for None; a quoted string unless the value holds CR, LF, an 8-bit byte or
  more than four ``"``/``\\`` (then a literal of the whole value).
- ``nstring_nolf``: line breaks removed first (a space is put in when the next line does not
  start with white space), then ``nstring``.
- ``for_humans`` (subjects, address names): tabs and line breaks become spaces, runs of
  spaces collapse, a trailing space goes; a literal once anything had to change or the value
  has ``"``, ``\\`` or 8-bit bytes, NUL becomes 0x80; only blanks give ``""``.

Values are C strings in Dovecot: they end at the first NUL (parsers replace NULs earlier).
"""

from __future__ import annotations

import re

QUOTED_MAX_ESCAPE_CHARS = 4
_NEEDS_LITERAL = re.compile(rb"[\r\n\x80-\xff]")
_NOLF = re.compile(rb"[\r\n](?=[^ \t\r\n])")
_SIMPLE = re.compile(rb'[^\x00\t\r\n"\\\x80-\xff]*')


def literal(value: bytes) -> bytes:
    return b"{%d}\r\n" % len(value) + value


def nstring(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    nul = value.find(b"\0")
    if nul >= 0:
        value = value[:nul]
    if _NEEDS_LITERAL.search(value) or \
            value.count(b'"') + value.count(b"\\") > QUOTED_MAX_ESCAPE_CHARS:
        return literal(value)
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def string(value: bytes) -> bytes:
    return nstring(value)


def nstring_nolf(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    nul = value.find(b"\0")
    if nul >= 0:
        value = value[:nul]
    if b"\r" in value or b"\n" in value:
        value = _NOLF.sub(b" ", value).replace(b"\r", b"").replace(b"\n", b"")
    return nstring(value)


def for_humans(value: bytes) -> bytes:
    nul = value.find(b"\0")
    if nul >= 0:
        value = value[:nul]
    if _SIMPLE.fullmatch(value) and b"  " not in value and not value.startswith(b" ") \
            and not value.endswith(b" "):
        return b'"' + value + b'"'
    out = bytearray()
    last_lwsp = True
    for c in value:
        if c in (0x0D, 0x0A, 0x09, 0x20):
            if not last_lwsp:
                out.append(0x20)
            last_lwsp = True
        else:
            out.append(0x80 if c == 0 else c)
            last_lwsp = False
    if out and last_lwsp:
        del out[-1]
    if not out:
        return b'""'
    return literal(bytes(out))
