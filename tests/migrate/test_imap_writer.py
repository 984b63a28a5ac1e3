"""The IMAP writer's bookkeeping when a server refuses some messages of a batch, or a run
died after an APPEND (fake destination account: Dovecot refuses no message on purpose)."""

from __future__ import annotations

import pytest

from imapproxy.migrate.account import Appended
from imapproxy.migrate.errors import PartialWrite
from imapproxy.migrate.imap_dest import ImapWriter
from imapproxy.migrate.model import MailboxInfo, Message, MessageMeta
from imapproxy.migrate.state import MailboxState

INBOX = MailboxInfo("INBOX", "/")


class FakeDestination:
    """Accepts every message but UID 2; new UIDs from 10 on; APPENDUID only if told."""

    capabilities = frozenset({"IMAP4REV1"})

    def __init__(self, appenduid: bool) -> None:
        self.appenduid = appenduid
        self.sizes: dict[int, int] = {}

    async def delimiter(self) -> str:
        return "/"

    async def uidnext(self, name: str) -> int:
        return 10 + len(self.sizes)

    async def append(self, name: str, messages: list[Message]) -> Appended:
        result = Appended(uidvalidity=5)
        for message in messages:
            if message.meta.uid == 2:
                result.refused[2] = "NO [LIMIT] too big"
                continue
            new = 10 + len(self.sizes)
            self.sizes[new] = message.meta.size
            result.stored.append(message.meta.uid)
            if self.appenduid:
                result.uids[message.meta.uid] = new
        return result

    async def uids_from(self, first: int) -> list[int]:
        return sorted(u for u in self.sizes if u >= first)

    async def fetch_meta(self, uids: str = "1:*") -> list[MessageMeta]:
        return [MessageMeta(u, (), size=s) for u, s in sorted(self.sizes.items())]


def batch() -> list[Message]:
    return [Message(MessageMeta(uid, ("\\Seen",), size=uid * 100), b"x") for uid in (1, 2, 3)]


@pytest.mark.parametrize("appenduid", [True, False])
async def test_refused_messages_are_reported_and_the_rest_kept(appenduid: bool) -> None:
    writer = ImapWriter(FakeDestination(appenduid))  # type: ignore[arg-type]
    state = MailboxState()
    with pytest.raises(PartialWrite) as caught:
        await writer.write(INBOX, batch(), state)
    assert caught.value.written == {1: 10, 3: 11}
    assert set(caught.value.failed) == {2} and not state.pending
    assert state.dest_uidvalidity == 5


async def test_an_append_cut_short_is_settled_by_size() -> None:
    dest = FakeDestination(appenduid=True)
    writer = ImapWriter(dest)  # type: ignore[arg-type]
    state = MailboxState()
    state.set_pending([(1, ("\\Seen",), 100), (2, (), 200), (3, (), 300)], 10)
    await dest.append("INBOX", batch())  # what the killed run did: 1 -> 10, 3 -> 11
    await writer.settle_pending(state)
    assert {u: c.dest for u, c in state.messages.items()} == {1: 10, 3: 11}
    assert state.messages[1].flags == ("\\Seen",) and not state.pending
