"""A leader on an upstream without IDLE polls with NOOP and passes news on (the upstream here
is a fake: Dovecot always has IDLE)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from imapproxy.protocol.command import Command
from imapproxy.protocol.framing import FramerEvent
from imapproxy.protocol.response import parse_response
from imapproxy.server.idle import poll_for_news
from imapproxy.upstream.connection import Received


class PollingUpstream:
    capabilities = frozenset({"IMAP4REV1"})

    def __init__(self, news: list[list[bytes]]) -> None:
        self.news = news  # untagged lines each NOOP reports, in turn
        self.sent: list[str] = []

    async def execute(self, command: Command) -> AsyncIterator[Received]:
        self.sent.append(command.name)
        lines = self.news.pop(0) if self.news else []
        for raw in lines + [b"U1 OK NOOP completed.\r\n"]:
            yield Received(raw, parse_response(raw))


async def test_noop_polling_relays_news_until_the_client_speaks() -> None:
    upstream = PollingUpstream([[], [b"* 4 EXISTS\r\n"], [b"* 2 EXPUNGE\r\n"]])
    relayed: list[bytes] = []
    client: asyncio.Future[FramerEvent | None] = asyncio.get_running_loop().create_future()

    async def drain() -> None:
        if len(relayed) == 2:
            client.set_result(None)  # the client ends its IDLE after the second change

    fake: Any = upstream
    await asyncio.wait_for(
        poll_for_news(fake, lambda item: relayed.append(item.raw), drain, client, 0.01), 2)
    assert relayed == [b"* 4 EXISTS\r\n", b"* 2 EXPUNGE\r\n"]
    assert upstream.sent == ["NOOP", "NOOP", "NOOP"]


async def test_no_poll_once_the_client_is_done() -> None:
    upstream = PollingUpstream([[b"* 4 EXISTS\r\n"]])
    client: asyncio.Future[FramerEvent | None] = asyncio.get_running_loop().create_future()
    client.set_result(None)
    fake: Any = upstream

    async def drain() -> None:
        return None

    await poll_for_news(fake, lambda item: None, drain, client, 0.01)
    assert upstream.sent == []
