"""The parsed form of a message: a tree of parts as byte offsets into the raw message, plus the
MIME header data and envelopes that BODYSTRUCTURE and ENVELOPE are written from.

Mirrors Dovecot's ``struct message_part`` (sizes, lines, flags) and ``message_part_data``. Sizes
come in two kinds: physical (bytes in the raw message) and virtual (as served, every bare LF
counted as CRLF); IMAP reports virtual ones. The tree is plain data: ``to_bytes()`` /
``from_bytes()`` give a compact JSON form for caches (bytes are stored as latin-1 text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Part flags (Dovecot's MESSAGE_PART_FLAG_*).
MULTIPART = 0x01
RFC822 = 0x02  # message/rfc822: exactly one child, the embedded message
TEXT = 0x04
IS_MIME = 0x08  # Content-* headers count (MIME-Version or Content-Type seen, or a MIME part)
DIGEST = 0x10  # multipart/digest: parts without Content-Type are message/rfc822
HAS_NULS = 0x20
OVERFLOW = 0x40  # a nesting/part-count limit was reached here

Param = tuple[bytes, bytes]
# (name, route, mailbox, domain); a group is opened by (None, None, name, None) and closed by
# (None, None, None, None), as in an IMAP envelope.
Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]

FORMAT_VERSION = 1


@dataclass(slots=True)
class Envelope:
    """Envelope headers of a message: strings as in the header (last one wins), addresses
    parsed (several headers of a kind are merged). None = header absent."""

    date: bytes | None = None
    subject: bytes | None = None
    from_: tuple[Address, ...] | None = None
    sender: tuple[Address, ...] | None = None
    reply_to: tuple[Address, ...] | None = None
    to: tuple[Address, ...] | None = None
    cc: tuple[Address, ...] | None = None
    bcc: tuple[Address, ...] | None = None
    in_reply_to: bytes | None = None
    message_id: bytes | None = None


@dataclass(slots=True)
class Content:
    """The Content-* headers of one part, parsed as Dovecot does (None = absent)."""

    type: bytes | None = None  # b"" when Content-Type was unparsable
    subtype: bytes | None = None
    params: tuple[Param, ...] = ()
    transfer_encoding: bytes | None = None
    id: bytes | None = None
    description: bytes | None = None
    md5: bytes | None = None
    disposition: bytes | None = None
    disposition_params: tuple[Param, ...] = ()
    language: tuple[bytes, ...] | None = None
    location: bytes | None = None


@dataclass(slots=True)
class Part:
    """One MIME part: header at ``raw[offset:body_offset]``, body up to ``end``."""

    offset: int = 0
    header_size: int = 0
    header_vsize: int = 0
    header_lines: int = 0
    body_size: int = 0
    body_vsize: int = 0
    body_lines: int = 0
    flags: int = 0
    content: Content = field(default_factory=Content)
    envelope: Envelope | None = None  # for the root and for the child of a message/rfc822
    children: list[Part] = field(default_factory=list)

    @property
    def body_offset(self) -> int:
        return self.offset + self.header_size

    @property
    def end(self) -> int:
        return self.offset + self.header_size + self.body_size

    @property
    def vsize(self) -> int:
        """Virtual size of header and body: RFC822.SIZE for the root."""
        return self.header_vsize + self.body_vsize

    @property
    def is_multipart(self) -> bool:
        return bool(self.flags & MULTIPART)

    @property
    def is_message(self) -> bool:
        return bool(self.flags & RFC822)

    def walk(self) -> list[tuple[str, Part]]:
        """Every part with its IMAP section number ("" for the root), depth first.

        Numbering follows Dovecot: a multipart's children are 1, 2, ...; a message/rfc822's
        embedded message is not numbered itself (its parts continue the number); the body of
        a non-multipart message is part 1."""
        out: list[tuple[str, Part]] = [("", self)]
        if self.flags & MULTIPART:
            _walk_children(self, "", out)
        else:
            out.append(("1", self))
            if self.flags & RFC822 and self.children:
                _walk_message(self.children[0], "1", out)
        return out

    # --- serialisation --------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return json.dumps([FORMAT_VERSION, _part_out(self)], separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Part:
        """Inverse of to_bytes(); ValueError on anything else (a cache should re-parse)."""
        try:
            version, tree = json.loads(data)
            if version != FORMAT_VERSION:
                raise ValueError(f"unknown Part format {version!r}")
            return _part_in(tree)
        except (TypeError, KeyError, IndexError, AttributeError, UnicodeError) as exc:
            raise ValueError(f"not a serialised Part: {exc}") from exc


def _walk_children(part: Part, prefix: str, out: list[tuple[str, Part]]) -> None:
    for i, child in enumerate(part.children, 1):
        number = f"{prefix}{i}"
        out.append((number, child))
        if child.flags & MULTIPART:
            _walk_children(child, number + ".", out)
        elif child.flags & RFC822 and child.children:
            _walk_message(child.children[0], number, out)


def _walk_message(message: Part, number: str, out: list[tuple[str, Part]]) -> None:
    """Parts inside the message embedded in part ``number``."""
    if message.flags & MULTIPART:
        _walk_children(message, number + ".", out)
    else:
        out.append((number + ".1", message))
        if message.flags & RFC822 and message.children:
            _walk_message(message.children[0], number + ".1", out)


def _b(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _u(value: Any) -> bytes | None:
    return None if value is None else str(value).encode("latin-1")


def _bb(value: Any) -> bytes:
    return str(value).encode("latin-1")


def _addrs_out(addrs: tuple[Address, ...] | None) -> list[list[str | None]] | None:
    return None if addrs is None else [[_b(x) for x in a] for a in addrs]


def _addrs_in(value: Any) -> tuple[Address, ...] | None:
    if value is None:
        return None
    return tuple((_u(a[0]), _u(a[1]), _u(a[2]), _u(a[3])) for a in value)


def _part_out(p: Part) -> list[Any]:
    c = p.content
    env = p.envelope
    return [
        p.offset, p.header_size, p.header_vsize, p.header_lines,
        p.body_size, p.body_vsize, p.body_lines, p.flags,
        [_b(c.type), _b(c.subtype), [[_b(k), _b(v)] for k, v in c.params],
         _b(c.transfer_encoding), _b(c.id), _b(c.description), _b(c.md5), _b(c.disposition),
         [[_b(k), _b(v)] for k, v in c.disposition_params],
         None if c.language is None else [_b(x) for x in c.language], _b(c.location)],
        None if env is None else [
            _b(env.date), _b(env.subject), _addrs_out(env.from_), _addrs_out(env.sender),
            _addrs_out(env.reply_to), _addrs_out(env.to), _addrs_out(env.cc),
            _addrs_out(env.bcc), _b(env.in_reply_to), _b(env.message_id)],
        [_part_out(child) for child in p.children],
    ]


def _part_in(v: Any) -> Part:
    c = v[8]
    content = Content(
        _u(c[0]), _u(c[1]), tuple((_bb(k), _bb(x)) for k, x in c[2]), _u(c[3]), _u(c[4]),
        _u(c[5]), _u(c[6]), _u(c[7]), tuple((_bb(k), _bb(x)) for k, x in c[8]),
        None if c[9] is None else tuple(_bb(x) for x in c[9]), _u(c[10]))
    e = v[9]
    envelope = None if e is None else Envelope(
        _u(e[0]), _u(e[1]), _addrs_in(e[2]), _addrs_in(e[3]), _addrs_in(e[4]),
        _addrs_in(e[5]), _addrs_in(e[6]), _addrs_in(e[7]), _u(e[8]), _u(e[9]))
    return Part(int(v[0]), int(v[1]), int(v[2]), int(v[3]), int(v[4]), int(v[5]), int(v[6]),
                int(v[7]), content, envelope, [_part_in(child) for child in v[10]])
