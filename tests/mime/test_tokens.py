"""Header-value tokens (rfc822.py), addresses (address.py) and IMAP quoting (quote.py): the
Dovecot behaviours that BODYSTRUCTURE and ENVELOPE depend on."""

from __future__ import annotations

import pytest

from imapproxy.mime.address import parse_addresses
from imapproxy.mime.quote import for_humans, nstring, nstring_nolf
from imapproxy.mime.rfc822 import Rfc822Parser, rfc2231_parse


def content_type(value: bytes) -> tuple[int, bytes]:
    parser = Rfc822Parser(value)
    out = bytearray()
    return parser.parse_content_type(out), bytes(out)


@pytest.mark.parametrize(("value", "ret", "out"), [
    (b"text/plain", 0, b"text/plain"),
    (b" Text/HTML ; charset=x", 1, b"Text/HTML"),
    (b"text (comment) / plain (c2)", 0, b"text/plain"),
    (b"text", -1, b"text"),  # a main type alone is kept
    (b"text/", -1, b""),
    (b"/plain", -1, b""),
    (b"text/plain garbage", -1, b""),
    (b"", -1, b""),
])
def test_content_type(value: bytes, ret: int, out: bytes) -> None:
    assert content_type(value) == (ret, out)


def params(value: bytes) -> list[tuple[bytes, bytes]]:
    return rfc2231_parse(Rfc822Parser(value))


def test_plain_parameters_keep_their_case_and_order() -> None:
    assert params(b'; CHARSET=UTF-8; Name="a b" (c); x= y') == [
        (b"CHARSET", b"UTF-8"), (b"Name", b"a b"), (b"x", b"y")]


def test_rfc2231_continuations_are_merged_after_plain_ones() -> None:
    assert params(b"; z*1=b; a=1; z*0=a; n*=utf-8''%41") == [
        (b"a", b"1"), (b"n*", b"utf-8''%41"), (b"z", b"ab")]
    # a plain piece of an extended value gets its % escaped and "''" in front if first
    assert params(b"; f*0=50%; f*1*=%41") == [(b"f*", b"''50%25%41")]


def test_rfc2231_with_a_missing_index_stays_split() -> None:
    assert params(b"; y*1=q; y*2*=r") == [(b"y*1", b"q"), (b"y*2*", b"r")]


def test_bare_star_key_reuses_the_previous_index() -> None:
    """A Dovecot quirk: ``key*`` takes the index of the previous ``key*<n>`` parameter."""
    assert params(b"; a*1=x; b*=y") == [(b"a*1", b"x"), (b"b*1*", b"y")]


def test_broken_parameters_are_skipped() -> None:
    """After a broken parameter Dovecot skips its ';' too, so the next one is lost as well."""
    assert params(b"; a=1; broken; b=\"2\"; c=; d==?utf-8?q?x?=; e=f/g") == [
        (b"a", b"1"), (b"c", b""), (b"d", b"=?utf-8?q?x?="), (b"e", b"f")]


A = tuple[bytes | None, bytes | None, bytes | None, bytes | None]


@pytest.mark.parametrize(("value", "addresses"), [
    (b"user@domain", [(None, None, b"user", b"domain")]),
    (b'"Name, Jr." <u@d>', [(b"Name, Jr.", None, b"u", b"d")]),
    (b"u@d (Comment Name)", [(b"Comment Name", None, b"u", b"d")]),
    (b"Display Name", [(b"Display Name", None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")]),
    (b"user", [(None, None, b"user", b"MISSING_DOMAIN")]),
    (b"<@hop1,@hop2:u@d>", [(None, b"@hop1,@hop2", b"u", b"d")]),
    (b"Name <u@d", [(b"Name", None, b"u", b"SYNTAX_ERROR")]),
    (b"<>", [(None, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")]),
    (b"a.@d, c..d@e", [(None, None, b"a.", b"d"), (None, None, b"c..d", b"e")]),
    (b"Team: a@b, c@d;, e@f", [
        (None, None, b"Team", None), (None, None, b"a", b"b"), (None, None, b"c", b"d"),
        (None, None, None, None), (None, None, b"e", b"f")]),
    (b"undisclosed-recipients:;", [
        (None, None, b"undisclosed-recipients", None), (None, None, None, None)]),
    (b"", []),
    (b" (only a comment) ", []),
])
def test_addresses(value: bytes, addresses: list[A]) -> None:
    assert list(parse_addresses(value)) == addresses


@pytest.mark.parametrize(("value", "written"), [
    (b"", b'""'),
    (b"plain", b'"plain"'),
    (b'a "quoted" \\ value', b'"a \\"quoted\\" \\\\ value"'),
    (b'"""""', b'{5}\r\n"""""'),  # more than four escapes: a literal
    (b"caf\xc3\xa9", b"{5}\r\ncaf\xc3\xa9"),
    (b"a\r\nb", b"{4}\r\na\r\nb"),
    (None, b"NIL"),
])
def test_nstring(value: bytes | None, written: bytes) -> None:
    assert nstring(value) == written


@pytest.mark.parametrize(("value", "written"), [
    (b"foo\nbar", b'"foo bar"'),
    (b"foo\r\n  bar", b'"foo  bar"'),
    (b"<a@b>\n <c@d>", b'"<a@b> <c@d>"'),
    (b"x\n", b'"x"'),
])
def test_nstring_nolf(value: bytes, written: bytes) -> None:
    assert nstring_nolf(value) == written


@pytest.mark.parametrize(("value", "written"), [
    (b"", b'""'),
    (b"Hello world", b'"Hello world"'),
    (b" \t ", b'""'),
    (b" foo  \t", b"{3}\r\nfoo"),
    (b"folded\n subject", b"{14}\r\nfolded subject"),
    (b'say "hi"', b'{8}\r\nsay "hi"'),
    (b"Gr\xc3\xbc\xc3\x9fe", b"{7}\r\nGr\xc3\xbc\xc3\x9fe"),
])
def test_for_humans(value: bytes, written: bytes) -> None:
    assert for_humans(value) == written
