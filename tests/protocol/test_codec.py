"""Commands and responses: parsing, writing, and RFC 3501 transcripts that round-trip."""

import pytest

from imapproxy.protocol.command import Command, command_chunks, parse_command, serialize_command
from imapproxy.protocol.errors import ProtocolError
from imapproxy.protocol.response import (
    Continuation,
    DataResponse,
    StatusResponse,
    parse_response,
    serialize_response,
)
from imapproxy.protocol.tokens import Atom, Literal, ParenList, Quoted

# Client and server lines of RFC 3501 section 8's example session, plus extension examples.
RFC_CLIENT_LINES = [
    b"a001 login mrc secret\r\n",
    b"a002 select inbox\r\n",
    b"a003 fetch 12 full\r\n",
    b"a004 fetch 12 body[header]\r\n",
    b"a005 store 12 +flags \\deleted\r\n",
    b"a006 logout\r\n",
    b'A142 SELECT INBOX (CONDSTORE)\r\n',
    b'A003 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n',
    b'A01 LIST "" "%" RETURN (STATUS (MESSAGES UNSEEN))\r\n',
    b'A003 APPEND saved-messages (\\Seen) {7}\r\nMoo Moo\r\n',
    b'a FETCH 1 (BODY.PEEK[HEADER.FIELDS (FROM "X-Odd")]<0.100>)\r\n',
    b'a SEARCH CHARSET UTF-8 TEXT {4+}\r\n\xc3\xa9t\xc3\r\n',
]
RFC_SERVER_LINES = [
    b"* OK IMAP4rev1 Service Ready\r\n",
    b"a001 OK LOGIN completed\r\n",
    b"* 18 EXISTS\r\n",
    b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
    b"* 2 RECENT\r\n",
    b"* OK [UNSEEN 17] Message 17 is the first unseen message\r\n",
    b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n",
    b"a002 OK [READ-WRITE] SELECT completed\r\n",
    (b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 4286 '
    b'ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) NIL NIL NIL NIL) '
    b'BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92))\r\n'),
    b"* 12 FETCH (BODY[HEADER] {11}\r\nDate: x\r\n\r\n)\r\n",
    b"* BYE IMAP4rev1 server terminating connection\r\n",
    b"+ Ready for additional command text\r\n",
    b'* LIST (\\Noselect) "/" ""\r\n',
    b"* VANISHED (EARLIER) 41,43:116\r\n",
    b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n",
    b"A003 OK [APPENDUID 38505 3955] APPEND completed\r\n",
    b"* OK [ALERT] unbalanced ( and \" in text are fine\r\n",
    b"* ID NIL\r\n",
    b"* SEARCH\r\n",
]


@pytest.mark.parametrize("line", RFC_CLIENT_LINES)
def test_client_lines_round_trip(line: bytes) -> None:
    command = parse_command(line)
    assert parse_command(serialize_command(command)) == command


@pytest.mark.parametrize("line", RFC_SERVER_LINES)
def test_server_lines_round_trip_byte_for_byte(line: bytes) -> None:
    assert serialize_response(parse_response(line)) == line


def test_command_structure() -> None:
    c = parse_command(b'a UID fetch 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (A B)]<0.5>)\r\n')
    assert c == Command("a", "FETCH", (
        Atom("1:*"), ParenList((Atom("FLAGS"), Atom("BODY.PEEK[HEADER.FIELDS (A B)]<0.5>")))),
        uid=True)
    c = parse_command(b'b LOGIN "a\\"b" {2+}\r\npw\r\n')
    assert c.args == (Quoted(b'a"b'), Literal(b"pw", nonsync=True))


def test_sync_literals_split_command_into_chunks() -> None:
    c = parse_command(b"a APPEND X {2}\r\nhi (\\Seen) {3+}\r\nabc {1}\r\nz\r\n")
    assert command_chunks(c) == [b"a APPEND X {2}\r\n", b"hi (\\Seen) {3+}\r\nabc {1}\r\n",
                                 b"z\r\n"]


@pytest.mark.parametrize("bad", [
    b"\r\n", b"NOOP\r\n", b"* NOOP\r\n", b"a+ NOOP\r\n", b"a (\r\n", b'a LOGIN "x\r\n',
    b"a LOGIN {5}\r\nab\r\n", b"a X (((\r\n", b"a X )\r\n", b'a X "\\q"\r\n',
    b"a 123\r\n", b"a X {x}\r\n",
])
def test_malformed_commands_raise_protocol_error(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_command(bad)


def test_protocol_error_carries_tag_when_known() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_command(b"t7 LOGIN (\r\n")
    assert info.value.tag == "t7"


def test_deep_nesting_refused_not_recursed() -> None:
    with pytest.raises(ProtocolError):
        parse_command(b"a X " + b"(" * 10000 + b")" * 10000 + b"\r\n")


def test_response_kinds() -> None:
    assert parse_response(b"+ idling\r\n") == Continuation(b"idling")
    assert parse_response(b"* 3 EXPUNGE\r\n") == DataResponse(3, "EXPUNGE")
    assert parse_response(b"x NO [TRYCREATE] no mailbox\r\n") == StatusResponse(
        "x", "NO", "TRYCREATE", None, b"no mailbox")
    assert parse_response(b"* OK [CAPABILITY IMAP4rev1 IDLE] hi\r\n").code_data == \
        b"IMAP4rev1 IDLE"


def test_non_ascii_response_code_round_trips() -> None:
    """Found by tests/fuzz: upper-casing \xb5 gave a code that could not be written back."""
    response = parse_response(b"a1 OK [\xb5x] done\r\n")
    assert serialize_response(response) == b"a1 OK [\xb5X] done\r\n"


def test_overlong_response_number_is_a_protocol_error() -> None:
    """Found by tests/fuzz: 5000 digits made int() raise ValueError."""
    with pytest.raises(ProtocolError):
        parse_response(b"* " + b"9" * 5000 + b" EXISTS\r\n")
