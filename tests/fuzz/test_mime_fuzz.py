"""Fuzzing imapproxy/mime/: any bytes are a message the proxy must serve. parse_message never
raises; BODYSTRUCTURE, ENVELOPE and every section come out as well-formed IMAP that reads back
as the FETCH item asked for; a bad section is a ProtocolError (BAD), undecodable BINARY a
MimeDecodeError (NO), nothing else ever escapes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imapproxy.mime import (
    MimeDecodeError,
    Part,
    bodystructure,
    envelope,
    fetch_value,
    parse_message,
    parse_section,
    rfc822_size,
)
from imapproxy.mime.render import whole_message
from imapproxy.protocol.errors import ProtocolError
from imapproxy.protocol.response import fetch_attributes, parse_response
from imapproxy.protocol.tokens import Atom, Literal, ParenList, Token, TokenReader

from .budget import fuzz_settings, no_hang
from .strategies import message_bytes, section_items

SECTION_SUFFIXES = ("", ".MIME", ".HEADER", ".TEXT", ".HEADER.FIELDS (FROM X-A)",
                    ".HEADER.FIELDS.NOT (CONTENT-TYPE)")


def read_one(value: bytes) -> Token:
    """``value`` as exactly one IMAP token (what a client's parser would do with it)."""
    reader = TokenReader(value + b"\r\n")
    (token,) = reader.read_tokens()
    return token


def served(raw: bytes, root: Part, item: str) -> bytes | None:
    """The wire value of ``item``, checked to read back as a FETCH response naming it; None
    when the proxy refuses the item (BAD or NO)."""
    try:
        value = fetch_value(raw, root, item)
    except (ProtocolError, MimeDecodeError):
        return None
    name = item.upper()
    if "[" in name:
        name = parse_section(item).response_name.decode("latin-1")
    response = parse_response(b"* 1 FETCH (" + name.encode("latin-1") + b" " + value + b")\r\n")
    attributes = fetch_attributes(response)
    assert attributes is not None and set(attributes) == {name.upper()}, (item, value[:200])
    return value


@fuzz_settings(weight=2)
@given(message_bytes)
def test_any_bytes_parse_and_serve_well_formed_values(raw: bytes) -> None:
    with no_hang():
        root = parse_message(raw)
        assert Part.from_bytes(root.to_bytes()) == root
        for extended in (True, False):
            assert isinstance(read_one(bodystructure(root, extended)), ParenList)
        assert isinstance(read_one(envelope(root)), ParenList)
        body = served(raw, root, "BODY[]")
        assert body is not None
        token = read_one(body)
        assert isinstance(token, Literal) and token.value == whole_message(raw)
        assert len(token.value) == rfc822_size(root)  # strict clients compare the two
        for number, _ in root.walk():
            for suffix in SECTION_SUFFIXES if number else ("",):
                section = f"{number}{suffix}"
                served(raw, root, f"BODY.PEEK[{section}]<1.7>")
                served(raw, root, f"BINARY[{number}]")
                served(raw, root, f"BINARY.SIZE[{number}]")
            served(raw, root, f"BODY[{number}]")


@fuzz_settings()
@given(message_bytes, st.lists(section_items, min_size=1, max_size=6))
def test_any_item_is_served_or_refused_cleanly(raw: bytes, items: list[str]) -> None:
    with no_hang():
        root = parse_message(raw)
        for item in items:
            value = served(raw, root, item)
            if value is not None and item.upper().startswith("BINARY.SIZE"):
                assert isinstance(read_one(value), Atom)
