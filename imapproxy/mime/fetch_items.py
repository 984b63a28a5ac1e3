"""FETCH data item values, ready to write after the item name: the one-stop API over
parse_message's tree for the proxy's FETCH handler.

``fetch_value(raw, root, "BODY.PEEK[1.MIME]<0.10>")`` gives exactly the bytes Dovecot writes
after ``BODY[1.MIME]<0>``; ``spec.response_name`` gives that name.
"""

from __future__ import annotations

from .binary import binary, binary_size
from .part import Part
from .section import SectionSpec, apply_partial, parse_section, section
from .structure import bodystructure, envelope

__all__ = [
    "body_item",
    "fetch_value",
    "literal",
    "rfc822",
    "rfc822_header",
    "rfc822_size",
    "rfc822_text",
]


def literal(data: bytes, binary: bool = False) -> bytes:
    """``{n}\\r\\n`` + data, or ``~{n}\\r\\n`` + data for a BINARY value with decoded data."""
    return (b"~{%d}\r\n" if binary else b"{%d}\r\n") % len(data) + data


def body_item(raw: bytes, root: Part, spec: SectionSpec) -> bytes:
    """The value of a BODY[...], BINARY[...] or BINARY.SIZE[...] item, partial applied."""
    if spec.kind == "BINARY.SIZE":
        return b"%d" % binary_size(raw, root, spec)
    if spec.kind == "BINARY":
        data, literal8 = binary(raw, root, spec)
        return literal(apply_partial(data, spec.partial), literal8)
    return literal(apply_partial(section(raw, root, spec), spec.partial))


def rfc822(raw: bytes, root: Part) -> bytes:
    """RFC822 (= BODY[]) content."""
    return section(raw, root, parse_section("BODY[]"))


def rfc822_header(raw: bytes, root: Part) -> bytes:
    """RFC822.HEADER (= BODY[HEADER]) content."""
    return section(raw, root, parse_section("BODY[HEADER]"))


def rfc822_text(raw: bytes, root: Part) -> bytes:
    """RFC822.TEXT (= BODY[TEXT]) content."""
    return section(raw, root, parse_section("BODY[TEXT]"))


def rfc822_size(root: Part) -> int:
    return root.vsize


def fetch_value(raw: bytes, root: Part, item: str) -> bytes:
    """The value of one content FETCH item given as the client wrote it: BODY, BODYSTRUCTURE,
    ENVELOPE, RFC822[.HEADER|.TEXT|.SIZE], BODY[...], BINARY[...], BINARY.SIZE[...]."""
    name = item.upper()
    if name == "BODYSTRUCTURE":
        return bodystructure(root, True)
    if name == "BODY":
        return bodystructure(root, False)
    if name == "ENVELOPE":
        return envelope(root)
    if name == "RFC822.SIZE":
        return b"%d" % rfc822_size(root)
    if name == "RFC822":
        return literal(rfc822(raw, root))
    if name == "RFC822.HEADER":
        return literal(rfc822_header(raw, root))
    if name == "RFC822.TEXT":
        return literal(rfc822_text(raw, root))
    return body_item(raw, root, parse_section(item))
