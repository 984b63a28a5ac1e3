"""SEARCH programs: content keys found, rewritten into UID sets; one message's matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imapproxy.filtering.search import (
    ContentKey,
    SearchableMessage,
    content_keys,
    has_content_keys,
    rewrite,
)
from imapproxy.protocol.command import parse_command
from imapproxy.protocol.errors import ProtocolError
from imapproxy.protocol.tokens import Atom, Token, serialize_tokens


def args(text: str) -> tuple:  # type: ignore[type-arg]
    return parse_command(b"a SEARCH " + text.encode() + b"\r\n").args


@pytest.mark.parametrize("program, keys", [
    ("BODY hello", [("BODY", (b"hello",))]),
    ("UNSEEN TEXT \"two words\" 1:5", [("TEXT", (b"two words",))]),
    ("OR SUBJECT a (NOT HEADER X-Y b)", [("SUBJECT", (b"a",)), ("HEADER", (b"X-Y", b"b"))]),
    ("CHARSET UTF-8 FROM x LARGER 10", [("FROM", (b"x",)), ("LARGER", (b"10",))]),
    ("SINCE 1-Jan-2020 KEYWORD foo UID 3:*", []),
    ("MODSEQ \"/flags/\\\\Seen\" all 5 BODY z", [("BODY", (b"z",))]),
])
def test_content_keys(program: str, keys: list[tuple[str, tuple[bytes, ...]]]) -> None:
    assert [(k.name, k.args) for k in content_keys(args(program))] == keys
    assert has_content_keys(args(program)) == bool(keys)


def test_a_program_that_cannot_be_read_is_left_to_the_upstream() -> None:
    with pytest.raises(ProtocolError):
        content_keys(args("BODY"))
    assert not has_content_keys(args("FROBNICATE x"))


def test_rewrite_keeps_the_rest_of_the_program() -> None:
    found = {"hello": [Atom("UID"), Atom("3:5,9")], "nothing": [Atom("NOT"), Atom("ALL")]}

    def replacement(key: ContentKey) -> list[Token]:
        return found[key.args[-1].decode()]

    out = rewrite(args("UNSEEN OR BODY hello (FLAGGED TEXT nothing) 1:*"), replacement)
    assert serialize_tokens(out) == b"UNSEEN OR UID 3:5,9 (FLAGGED NOT ALL) 1:*"


MESSAGE = (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Wien\r\nFrom: Ann <ann@example.org>\r\n"
           b"X-Tag: blue\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/alternative; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\nK=C3=A4se und Brot\r\n"
           b"--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"PGI+aGlkZGVuIHdvcmQ8L2I+\r\n--b--\r\n")


@pytest.mark.parametrize("name, key_args, expected", [
    ("BODY", (b"k\xc3\xa4se",), True),       # decoded quoted-printable, any case
    ("BODY", (b"hidden word",), True),       # inside base64
    ("BODY", (b"Wien",), False),             # header only
    ("TEXT", (b"wien",), True),
    ("SUBJECT", (b"gr\xc3\xbc\xc3\x9fe",), True),  # decoded encoded-word
    ("FROM", (b"ann@example",), True),
    ("HEADER", (b"x-tag", b"BLUE"), True),
    ("HEADER", (b"X-Tag", b""), True),
    ("HEADER", (b"X-Missing", b""), False),
    ("TO", (b"ann",), False),
    ("LARGER", (b"10",), True),
    ("SMALLER", (b"10",), False),
])
def test_matching(name: str, key_args: tuple[bytes, ...], expected: bool) -> None:
    assert SearchableMessage(MESSAGE).matches(ContentKey(name, key_args)) is expected


WORDS = ["BODY", "TEXT", "HEADER", "OR", "NOT", "ALL", "UID", "1:*", "x", "SUBJECT", "LARGER",
         "10", "SEEN", "CHARSET", "UTF-8", "MODSEQ", "(", ")", '"q s"']


@given(st.lists(st.sampled_from(WORDS), max_size=12))
def test_any_program_is_either_read_or_refused(words: list[str]) -> None:
    text = " ".join(words).replace("( ", "(").replace(" )", ")")
    try:
        program = args(text)
    except ProtocolError:
        return  # the session answers BAD before the filters see it
    try:
        keys = content_keys(program)
    except ProtocolError:
        assert not has_content_keys(program)
        return
    assert has_content_keys(program) == bool(keys)
    out = rewrite(program, lambda key: [Atom("UID"), Atom("1")])
    assert content_keys(out) == []
