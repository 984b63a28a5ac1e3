"""At most ``max_parked_per_user`` parked connections per user: parked ones are open upstream
connections, so the extra ones are logged out (shared IDLE releases many at once)."""

from __future__ import annotations

from typing import Any

from imapproxy.config import UpstreamConfig, UpstreamPoolConfig
from imapproxy.protocol.command import Command
from imapproxy.protocol.response import StatusResponse
from imapproxy.upstream.connection import Received
from imapproxy.upstream.pool import UpstreamPool


class FakeConnection:
    capabilities = frozenset({"UNSELECT"})

    def __init__(self) -> None:
        self.lost = False
        self.logged_out = False

    async def login(self, user: bytes, password: bytes, authzid: bytes = b""
                    ) -> StatusResponse:
        return StatusResponse("U1", "OK")

    async def simple(self, command: Command) -> StatusResponse:
        return StatusResponse("U2", "OK")

    def pending(self) -> list[Received]:
        return []

    async def logout(self) -> None:
        self.logged_out = True

    def close(self) -> None:
        self.lost = True


async def test_extra_parked_connections_are_logged_out() -> None:
    opened: list[FakeConnection] = []

    async def opener() -> Any:
        opened.append(FakeConnection())
        return opened[-1]

    config = UpstreamConfig(pool=UpstreamPoolConfig(max_parked_per_user=2))
    pool = UpstreamPool(config, opener)
    conns = [(await pool.login(b"u", b"pw"))[0] for _ in range(3)]
    other = (await pool.login(b"v", b"pw"))[0]
    for conn in conns + [other]:
        assert conn is not None
        await pool.release(conn, reusable=True, selected=True)
    assert pool.parked == 3  # two of u's, and v's own
    assert [c.logged_out for c in opened] == [False, False, True, False]
    assert pool.slots.open_total == 3
    await pool.close()
