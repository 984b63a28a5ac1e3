"""Everything derived from raw message bytes, computed locally and byte-identical to Dovecot.

Sans-I/O: ``parse_message(raw)`` builds a part tree (byte offsets plus parsed MIME headers) once;
the writers turn it into FETCH values. See docs/mime.md for the Dovecot rules replicated.
"""

from .binary import binary, binary_size
from .errors import InvalidMimeData, MimeDecodeError, TruncatedMimeData, UnknownCte
from .fetch_items import (
    body_item,
    fetch_value,
    literal,
    rfc822,
    rfc822_header,
    rfc822_size,
    rfc822_text,
)
from .parse import parse_message
from .part import Address, Content, Envelope, Part
from .section import SectionSpec, apply_partial, find_part, parse_section, section
from .structure import bodystructure, envelope

__all__ = [
    "Address",
    "Content",
    "Envelope",
    "InvalidMimeData",
    "MimeDecodeError",
    "Part",
    "SectionSpec",
    "TruncatedMimeData",
    "UnknownCte",
    "apply_partial",
    "binary",
    "binary_size",
    "body_item",
    "bodystructure",
    "envelope",
    "fetch_value",
    "find_part",
    "literal",
    "parse_message",
    "parse_section",
    "rfc822",
    "rfc822_header",
    "rfc822_size",
    "rfc822_text",
    "section",
]
