"""Which relayed commands may carry LITERAL+ literals upstream (see protocol/nonsync.py)."""

from __future__ import annotations

import pytest

from imapproxy.protocol.command import parse_command
from imapproxy.protocol.errors import ProtocolError
from imapproxy.protocol.nonsync import check_append, may_send_nonsync

SAFE = [
    b"a NOOP\r\n",
    b"a LOGIN {4+}\r\nuser {2+}\r\npw\r\n",
    b"a LOGIN \"us er\" {2+}\r\npw\r\n",
    b"a APPEND INBOX {3+}\r\nabc\r\n",
    b"a APPEND {5+}\r\nINBOX (\\Seen $Label1) ~{3+}\r\nabc\r\n",
    b"a APPEND INBOX (\\Seen) \" 2-Jan-2023 03:04:05 +0200\" {3+}\r\nabc\r\n",
    b"a APPEND INBOX () \"31-Dec-2037 23:59:59 -1130\" {3+}\r\nabc\r\n",
]
UNSAFE = [  # each is one Dovecot stops reading before the last literal
    b"a CHECK {3+}\r\nabc\r\n",
    b"a SELECT \xff {3+}\r\nabc\r\n",
    b"a LIST \"\" ~{3+}\r\nabc\r\n",
    b"a CREATE x (USE (\\Drafts)) {3+}\r\nabc\r\n",
    b"a COPY 1 INBOX {3+}\r\nabc\r\n",
    b"a UID EXPUNGE 1 {3+}\r\nabc\r\n",
    b"a LOGIN a b {3+}\r\nabc\r\n",
    b"a LOGIN caf\xe9 {3+}\r\nabc\r\n",
    b"a APPEND INBOX (\\Bad) {3+}\r\nabc\r\n",
    b"a APPEND INBOX (\\Seen \\Recent) {3+}\r\nabc\r\n",
    b"a APPEND INBOX (ke]y) {3+}\r\nabc\r\n",
    b"a APPEND INBOX \"bad date\" {3+}\r\nabc\r\n",
    b"a APPEND INBOX \"31-Feb-2023 03:04:05 +0200\" {3+}\r\nabc\r\n",
    b"a APPEND INBOX \"02-Jan-2023 03:04:05 +0299\" {3+}\r\nabc\r\n",
    b"a APPEND INBOX x {3+}\r\nabc\r\n",
    b"a APPEND INBOX {3+}\r\nabc junk\r\n",
    b"a APPEND INBOX {3+}\r\nabc {3+}\r\nabc\r\n",
    b"a APPEND a\xff {3+}\r\nabc\r\n",
]


@pytest.mark.parametrize("line", SAFE)
def test_server_reads_every_literal(line: bytes) -> None:
    assert may_send_nonsync(parse_command(line))


@pytest.mark.parametrize("line", UNSAFE)
def test_server_may_stop_before_a_literal(line: bytes) -> None:
    assert not may_send_nonsync(parse_command(line))


@pytest.mark.parametrize("line", [
    b"a APPEND INBOX x {3+}\r\nabc\r\n", b"a APPEND INBOX\r\n", b"a APPEND INBOX (\\Seen)\r\n",
    b"a APPEND INBOX {3+}\r\nabc junk\r\n", b"a APPEND INBOX NIL {3+}\r\nabc\r\n",
])
def test_misshapen_append_is_refused(line: bytes) -> None:
    """Found with Dovecot: an atom where flags or a date go makes it read the literal
    without a ``+``; sent synchronising, the command would hang."""
    with pytest.raises(ProtocolError):
        check_append(parse_command(line))


@pytest.mark.parametrize("line", [line for line in SAFE if b"APPEND" in line] + [
    b"a APPEND INBOX (\\Bad) \"bad date\" {3+}\r\nabc\r\n"])
def test_well_shaped_append_goes_upstream(line: bytes) -> None:
    check_append(parse_command(line))
