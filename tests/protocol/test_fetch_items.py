"""FETCH item lists: macros, sections with partials, state vs content, modifiers."""

import pytest

from imapproxy.protocol.command import parse_command
from imapproxy.protocol.errors import ProtocolError
from imapproxy.protocol.fetch import FetchItem, parse_fetch_items


def items(line: bytes) -> tuple[FetchItem, ...]:
    return parse_fetch_items(parse_command(line).args).items


def test_macros_expand() -> None:
    assert [i.name for i in items(b"a FETCH 1 full\r\n")] == [
        "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]


def test_sections_and_partials() -> None:
    got = items(b'a FETCH 1 (flags body.peek[1.HEADER.FIELDS (From "X]")]<5.10> '
                b"BINARY[2]<7> BINARY.SIZE[2] BODY[])\r\n")
    assert got == (
        FetchItem("FLAGS"),
        FetchItem("BODY.PEEK", '1.HEADER.FIELDS (From "X]")', (5, 10)),
        FetchItem("BINARY", "2", (7, None)),
        FetchItem("BINARY.SIZE", "2"),
        FetchItem("BODY", ""),
    )
    assert [i.sets_seen for i in got] == [False, False, True, False, True]


def test_body_without_section_is_structure_and_does_not_set_seen() -> None:
    (body,) = items(b"a FETCH 1 BODY\r\n")
    assert body == FetchItem("BODY") and not body.sets_seen and not body.is_state


def test_state_only_requests_have_no_content() -> None:
    req = parse_fetch_items(parse_command(
        b"a UID FETCH 1:* (UID FLAGS MODSEQ) (CHANGEDSINCE 5 VANISHED)\r\n").args)
    assert not req.has_content
    assert len(req.modifiers) == 3


@pytest.mark.parametrize("bad", [
    b"a FETCH 1 ()\r\n", b"a FETCH 1 (BOGUS)\r\n", b"a FETCH 1 BODY[1\r\n",
    b"a FETCH 1 BINARY.SIZE[1]<0.5>\r\n", b"a FETCH 1\r\n", b"a FETCH 1 BODY[]<x>\r\n",
    b'a FETCH 1 ("BODY")\r\n',
])
def test_bad_items(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_fetch_items(parse_command(bad).args)
