"""Section specs, section bytes, BINARY decoding and the BODYSTRUCTURE/ENVELOPE writers.

Expected values are Dovecot 2.3.19's answers for the same messages (the integration test
tests/integration/test_mime_fidelity.py checks the whole corpus against a live Dovecot).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from imapproxy.mime import (
    InvalidMimeData,
    TruncatedMimeData,
    UnknownCte,
    binary,
    binary_size,
    bodystructure,
    envelope,
    fetch_value,
    find_part,
    parse_message,
    parse_section,
    section,
)
from imapproxy.mime.decode import base64_decode, parse_cte, qp_decode
from imapproxy.mime.render import load_structure, render_item, structure_blob
from imapproxy.protocol.errors import ProtocolError

MSG = (
    b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: Hello\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nX-A: 1\r\n\r\ninner body\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"aGVs\r\nbG8=\r\n--b--\r\n"
)
ROOT = parse_message(MSG)


def value(item: str) -> bytes:
    return fetch_value(MSG, ROOT, item)


# --- the section spec ------------------------------------------------------------------------


@pytest.mark.parametrize(("item", "name", "number", "text"), [
    ("BODY[]", b"BODY[]", "", ""),
    ("body.peek[text]", b"BODY[TEXT]", "", "TEXT"),
    ("BODY.PEEK[1.2.MIME]<0.10>", b"BODY[1.2.MIME]<0>", "1.2", "MIME"),
    ('BODY.PEEK[2.HEADER.FIELDS (From "x-A")]', b'BODY[2.HEADER.FIELDS (FROM "X-A")]', "2",
     "HEADER.FIELDS"),
    ("BODY[HEADER.FIELDS.NOT (SUBJECT)]<5>", b"BODY[HEADER.FIELDS.NOT (SUBJECT)]<5>", "",
     "HEADER.FIELDS.NOT"),
    ("BINARY.PEEK[3]", b"BINARY[3]", "3", ""),
    ("BINARY.SIZE[3]", b"BINARY.SIZE[3]", "3", ""),
])
def test_parse_section(item: str, name: bytes, number: str, text: str) -> None:
    spec = parse_section(item)
    assert (spec.response_name, spec.number, spec.text) == (name, number, text)


@pytest.mark.parametrize("item", [
    "BODY[MIME]", "BODY[1.]", "BODY[.1]", "BODY[1.2.FOO]", "BODY[HEADER.FIELDS]",
    "BODY[HEADER.FIELDS ()]", "BODY[TEXT (A)]", "BODY[1]<", "BODY[1]<x>", "BODY[1]<1.>",
    "BODY[1]junk", "BODY[1", "FLAGS", "BODY[HEADER.FIELDS ((A))]",
])
def test_parse_section_rejects(item: str) -> None:
    with pytest.raises(ProtocolError):
        parse_section(item)


def test_find_part() -> None:
    assert find_part(ROOT, "") is ROOT
    assert find_part(ROOT, "1") is ROOT.children[0]
    assert find_part(ROOT, "0") is ROOT.children[0]  # Dovecot counts 0 as 1
    assert find_part(ROOT, "2.1") is ROOT.children[1].children[0]
    assert find_part(ROOT, "1.1") is ROOT.children[0]  # "1" of a leaf is the leaf
    assert find_part(ROOT, "4") is None
    assert find_part(ROOT, "1.2") is None


# --- section bytes ---------------------------------------------------------------------------


def test_sections() -> None:
    assert value("BODY[1]") == b"{5}\r\nhello"
    assert value("BODY[1.MIME]") == b"{28}\r\nContent-Type: text/plain\r\n\r\n"
    assert value("BODY[2.HEADER]") == b"{26}\r\nSubject: inner\r\nX-A: 1\r\n\r\n"
    assert value("BODY[2.TEXT]") == b"{10}\r\ninner body"
    assert value('BODY[2.HEADER.FIELDS ("x-a")]') == b"{10}\r\nX-A: 1\r\n\r\n"
    assert value("BODY[HEADER.FIELDS.NOT (FROM TO SUBJECT)]") == (
        b"{45}\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
    assert value("BODY[1.HEADER]") == b"{0}\r\n"  # HEADER needs a message/rfc822 part
    assert value("BODY[9]") == b"{0}\r\n"  # a part that does not exist is empty
    assert value("BODY[]<0.4>") == b"{4}\r\nFrom"
    assert value("BODY[1]<3>") == b"{2}\r\nlo"
    assert value("BODY[1]<99.5>") == b"{0}\r\n"


def test_bare_lf_and_nul_are_served_as_crlf_and_0x80() -> None:
    raw = b"Subject: x\n\na\nb\0c\n"
    root = parse_message(raw)
    assert section(raw, root, parse_section("BODY[]")) == b"Subject: x\r\n\r\na\r\nb\x80c\r\n"
    assert fetch_value(raw, root, "RFC822.SIZE") == b"%d" % len(raw.replace(b"\n", b"\r\n"))


def test_root_header_fields_always_end_with_crlf() -> None:
    raw = b"Subject: x\r\nContent-Type: text/html"
    root = parse_message(raw)
    assert fetch_value(raw, root, "BODY[HEADER.FIELDS (CONTENT-TYPE)]") == (
        b"{25}\r\nContent-Type: text/html\r\n")
    assert fetch_value(raw, root, "BODY[HEADER.FIELDS (X)]") == b"{2}\r\n\r\n"


# --- BINARY ----------------------------------------------------------------------------------


def test_binary_decodes_and_marks_literal8() -> None:
    assert value("BINARY[3]") == b"~{5}\r\nhello"
    assert value("BINARY.SIZE[3]") == b"5"
    assert value("BINARY[1]") == b"{5}\r\nhello"
    data, literal8 = binary(MSG, ROOT, parse_section("BINARY[]"))
    assert literal8 and b"Content-Transfer-Encoding: binary\r\n\r\nhello\r\n--b--" in data
    assert binary_size(MSG, ROOT, parse_section("BINARY.SIZE[]")) == len(data)


def test_binary_errors() -> None:
    raw = b"Content-Transfer-Encoding: x-uue\r\n\r\nbegin\r\n"
    with pytest.raises(UnknownCte) as info:
        fetch_value(raw, parse_message(raw), "BINARY[1]")
    assert info.value.code == "UNKNOWN-CTE"
    raw = b"Content-Transfer-Encoding: base64\r\n\r\naGVs*bG8=\r\n"
    with pytest.raises(InvalidMimeData) as bad:
        fetch_value(raw, parse_message(raw), "BINARY.SIZE[1]")
    assert bad.value.code == "PARSE"


@pytest.mark.parametrize(("value", "cte"), [
    (b"base64", 4), (b" Quoted-Printable ", 3), (b"8BIT", 1), (b"binary; x=y", 2),
    (b"base64 binary", 0), (b"x-uuencode", 0), (b"", 0),
])
def test_parse_cte(value: bytes, cte: int) -> None:
    assert parse_cte(value) == cte


@pytest.mark.parametrize(("data", "decoded"), [
    (b"foo  \r\nbar=\n", b"foo\r\nbar"),
    (b"foo =\t\r\nbar", b"foo bar"),
    (b"=0A=0D  ", b"\n\r"),
    (b"=66=6f=6f", b"foo"),
    (b"\n\n", b"\r\n\r\n"),
    (b" " * 76 + b"x\n", b" " * 76 + b"x\r\n"),
])
def test_qp_decode(data: bytes, decoded: bytes) -> None:
    assert qp_decode(data) == decoded


@pytest.mark.parametrize(("data", "error"), [
    (b"foo=", TruncatedMimeData), (b"foo=A", TruncatedMimeData), (b"x \r", TruncatedMimeData),
    (b"foo=Ax", InvalidMimeData), (b"a=ZZ\n", InvalidMimeData), (b"a\rb\n", InvalidMimeData),
    (b" " * 77 + b"x\n", InvalidMimeData),
])
def test_qp_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        qp_decode(data)


@pytest.mark.parametrize(("data", "decoded"), [
    (b"aGVs bG8=\r\n", b"hello"), (b"aGVsbA==\r\n \r\n", b"hell"), (b"", b""),
    (b"aGVsbA=\n=", b"hell"),
])
def test_base64_decode(data: bytes, decoded: bytes) -> None:
    assert base64_decode(data) == decoded


@pytest.mark.parametrize(("data", "error"), [
    (b"aGVsbG8", TruncatedMimeData), (b"aGVsbA=", TruncatedMimeData),
    (b"aGVs*", InvalidMimeData), (b"aGVsbA==aGVs", InvalidMimeData), (b"aGVs=", InvalidMimeData),
])
def test_base64_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        base64_decode(data)


# --- BODYSTRUCTURE and ENVELOPE --------------------------------------------------------------


def test_bodystructure_and_envelope() -> None:
    assert bodystructure(ROOT) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL)'
        b'("message" "rfc822" NIL NIL NIL "7bit" 36 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL)'
        b' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0 NIL NIL NIL NIL) 3'
        b' NIL NIL NIL NIL)'
        b'("application" "octet-stream" NIL NIL NIL "base64" 10 NIL NIL NIL NIL)'
        b' "mixed" ("boundary" "b") NIL NIL NIL)')
    assert envelope(ROOT) == (
        b'(NIL "Hello" (("Alice" NIL "alice" "example.org")) (("Alice" NIL "alice" '
        b'"example.org")) (("Alice" NIL "alice" "example.org")) ((NIL NIL "bob" "example.net"))'
        b' NIL NIL NIL NIL)')


@pytest.mark.parametrize(("content_type", "written"), [
    (b"text", b'("text" "" ("charset" "us-ascii") NIL NIL "7bit" 7 1)'),
    (b"text/plain garbage", b'("" "" NIL NIL NIL "7bit" 7)'),
    (b"", b'("" "" NIL NIL NIL "7bit" 7)'),
    (b'TEXT/Plain; CHARSET=UTF-8; Name="a b"',
     b'("TEXT" "Plain" ("CHARSET" "UTF-8" "Name" "a b") NIL NIL "7bit" 7 1)'),
    (b'text/plain; charset="\xc3\xa9"',
     b'("text" "plain" ("charset" {2}\r\n\xc3\xa9) NIL NIL "7bit" 7 1)'),
    (b"message/rfc822", (b'("message" "rfc822" NIL NIL NIL "7bit" 7 (NIL NIL NIL NIL NIL NIL'
                         b' NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL'
                         b' "7bit" 0 0) 1)')),
])
def test_body_of_odd_content_types(content_type: bytes, written: bytes) -> None:
    raw = b"Subject: a\r\nMIME-Version: 1.0\r\nContent-Type: " + content_type + b"\r\n\r\nhello\r\n"
    assert bodystructure(parse_message(raw), extended=False) == written


def test_envelope_keeps_the_last_string_and_merges_addresses() -> None:
    """Folded values lose their line breaks but keep the blank that followed them."""
    raw = (b"Subject: one\r\nSubject: two\r\nFrom: a@b\r\nFrom: c@d\r\n"
           b"Message-ID:\r\n <x@y>\r\nDate: Mon,\r\n 2 Jan 2023\r\n\r\n")
    assert envelope(parse_message(raw)) == (
        b'("Mon, 2 Jan 2023" "two" ((NIL NIL "a" "b")(NIL NIL "c" "d")) ((NIL NIL "a" "b")'
        b'(NIL NIL "c" "d")) ((NIL NIL "a" "b")(NIL NIL "c" "d")) NIL NIL NIL NIL " <x@y>")')


# --- the FETCH handler bridge ----------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    name: str
    section: str | None = None
    partial: tuple[int, int | None] | None = None


def test_render_item() -> None:
    part = load_structure(structure_blob(MSG))
    assert render_item(Item("BODY.PEEK", "1.MIME", (0, 7)), MSG, part) == (
        b"BODY[1.MIME]<0>", b"{7}\r\nContent")
    assert render_item(Item("RFC822.SIZE"), MSG, part) == (b"RFC822.SIZE", b"%d" % len(MSG))
    assert render_item(Item("BINARY.SIZE", "3"), MSG, part) == (b"BINARY.SIZE[3]", b"5")
    assert render_item(Item("ENVELOPE"), MSG, part)[1] == envelope(ROOT)


def test_overlong_numbers_in_sections() -> None:
    """Found by tests/fuzz: 5000-digit part numbers or partials made int() raise ValueError."""
    assert find_part(ROOT, "1" * 5000) is None
    assert find_part(ROOT, "1." + "2" * 11) is None
    with pytest.raises(ProtocolError):
        parse_section("BODY[]<" + "1" * 5000 + ">")
    assert parse_section("BODY[]<" + "0" * 30 + "7>").partial == (7, None)
