"""How a connection is readied for parking, and which commands forbid reuse. The upstream
here is a fake that records commands (the real Dovecot has UNSELECT, so the EXAMINE path
cannot be reached there)."""

from __future__ import annotations

from typing import Any

from imapproxy.errors import UpstreamLost
from imapproxy.protocol.command import Command, parse_command
from imapproxy.protocol.response import StatusResponse
from imapproxy.upstream.connection import Received
from imapproxy.upstream.pool import _reset, leaves_state_behind


class FakeConnection:
    def __init__(self, caps: set[str], answer: str = "OK", fail: bool = False,
                 pending: list[Received] | None = None) -> None:
        self.capabilities = frozenset(caps)
        self.answer = answer
        self.fail = fail
        self.sent: list[Command] = []
        self._pending = pending or []
        self.lost = False

    async def simple(self, command: Command) -> StatusResponse:
        self.sent.append(command)
        if self.fail:
            raise UpstreamLost("gone")
        return StatusResponse("U1", self.answer)

    def pending(self) -> list[Received]:
        items, self._pending = self._pending, []
        return items


async def reset(conn: FakeConnection, selected: bool) -> bool:
    fake: Any = conn
    return await _reset(fake, selected)


async def test_unselect_when_offered() -> None:
    conn = FakeConnection({"UNSELECT"})
    assert await reset(conn, True)
    assert [c.name for c in conn.sent] == ["UNSELECT"]


async def test_failing_examine_without_unselect_never_close() -> None:
    conn = FakeConnection(set(), answer="NO")
    assert await reset(conn, True)
    assert [c.name for c in conn.sent] == ["EXAMINE"]
    assert not await reset(FakeConnection(set(), answer="OK"), True)  # it existed: selected


async def test_noop_when_nothing_selected() -> None:
    conn = FakeConnection({"UNSELECT"})
    assert await reset(conn, False)
    assert [c.name for c in conn.sent] == ["NOOP"]


async def test_dead_or_closing_connection_is_not_parked() -> None:
    assert not await reset(FakeConnection({"UNSELECT"}, fail=True), True)
    bye = Received(b"* BYE shutting down\r\n", StatusResponse(None, "BYE"))
    assert not await reset(FakeConnection({"UNSELECT"}, pending=[bye]), True)


def test_commands_that_change_the_connection_forbid_reuse() -> None:
    for line in (b"a ENABLE QRESYNC", b"a SELECT INBOX (CONDSTORE)",
                 b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 5)", b"a UID FETCH 1 (MODSEQ)",
                 b"a SEARCH MODSEQ 5", b"a STATUS INBOX (HIGHESTMODSEQ)"):
        assert leaves_state_behind(parse_command(line + b"\r\n")), line
    for line in (b"a SELECT INBOX", b"a FETCH 1:* (FLAGS BODY.PEEK[])", b"a NOOP"):
        assert not leaves_state_behind(parse_command(line + b"\r\n")), line
