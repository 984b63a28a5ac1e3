"""The IMAP destination: APPEND with flags and INTERNALDATE (MULTIAPPEND when offered).

An IMAP server chooses UIDs itself, so the copies get new ones: the mapping (source UID ->
destination UID, from UIDPLUS APPENDUID) is kept in the state file and written out as the
UID map file. Crash safety: before each APPEND the batch and the destination's UIDNEXT are
recorded as pending; a re-run finds what that APPEND created (UIDs from that UIDNEXT on, in
APPEND order) instead of appending it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..protocol.sets import uid_set
from .account import ImapAccount
from .errors import PartialWrite
from .model import MailboxInfo, MailboxStatus, Message
from .state import MailboxState


def translate(name: str, source_delimiter: str | None, dest_delimiter: str | None) -> str:
    """*name* with the destination's hierarchy separator (Courier's ``INBOX.Sent`` becomes
    ``INBOX/Sent`` on a ``/`` server), so the hierarchy survives the move."""
    if not source_delimiter or not dest_delimiter or source_delimiter == dest_delimiter:
        return name
    return dest_delimiter.join(name.split(source_delimiter))


class ImapWriter:
    def __init__(self, account: ImapAccount,
                 connect: Callable[[], Awaitable[ImapAccount]] | None = None) -> None:
        self.account = account
        self._connect = connect
        self.uidvalidity: dict[str, int] = {}
        self.delimiter: str | None = None
        self._asked_delimiter = False

    async def settle_pending(self, state: MailboxState) -> None:
        """Record what the APPEND of a killed run created: the UIDs from the UIDNEXT saved
        before it, in order, paired with the batch by size (a refused message made none)."""
        created = await self.account.uids_from(state.pending_dest_uidnext or 1)
        sizes = {m.uid: m.size for m in await self.account.fetch_meta(uid_set(created))} \
            if created else {}
        pairs: list[tuple[tuple[int, tuple[str, ...], int], int]] = []
        rest = iter(created)
        dest_uid = next(rest, None)
        for entry in state.pending:
            if dest_uid is not None and sizes.get(dest_uid) == entry[2]:
                pairs.append((entry, dest_uid))
                dest_uid = next(rest, None)
        if len(pairs) != len(created):  # sizes counted otherwise: trust the order
            pairs = list(zip(state.pending, created, strict=False))
        for (src_uid, flags, _size), uid in pairs:
            state.record(src_uid, flags, uid)
        state.clear_pending()

    async def reconnect(self) -> bool:
        """A new connection after a lost one (False: cannot)."""
        if self._connect is None:
            return False
        self.account.conn.close()
        self.account = await self._connect()
        return True

    async def _name(self, info: MailboxInfo) -> str:
        if not self._asked_delimiter:
            self._asked_delimiter = True
            self.delimiter = await self.account.delimiter()
        return translate(info.name, info.delimiter, self.delimiter)

    async def prepare(self, info: MailboxInfo, status: MailboxStatus,
                      state: MailboxState) -> set[int]:
        """Create and select the mailbox; settle a pending APPEND from a run that was cut
        short. Returns the source UIDs known to be on the destination."""
        name = await self._name(info)
        if name.upper() != "INBOX":
            await self.account.create(name)
        dest = await self.account.select(name)
        if state.dest_uidvalidity not in (None, dest.uidvalidity):
            state.forget_messages()  # the destination lost its UIDs: copy everything again
        state.dest_uidvalidity = dest.uidvalidity
        self.uidvalidity[info.name] = dest.uidvalidity
        if state.pending:
            await self.settle_pending(state)
        present = set(await self.account.all_uids())
        return {uid for uid, m in state.messages.items() if m.dest in present}

    async def write(self, info: MailboxInfo, messages: list[Message], state: MailboxState
                    ) -> dict[int, int]:
        """APPEND *messages*; source UID -> new UID. Raises PartialWrite when the server
        refused some (the others are returned in it, never appended twice)."""
        name = await self._name(info)
        uidnext = await self.account.uidnext(name)
        state.set_pending([(m.meta.uid, m.meta.flags, m.meta.size) for m in messages], uidnext)
        state.save()
        result = await self.account.append(name, messages)
        written = dict(result.uids)
        unknown = [u for u in result.stored if u not in written]
        if unknown:  # no UIDPLUS: the new UIDs are the ones from UIDNEXT on, in order
            created = await self.account.uids_from(uidnext)
            if len(created) != len(result.stored):
                # Appended, but where? Not again: left pending for the next run to settle.
                raise PartialWrite({}, {u: "appended, but its new UID is unknown (something "
                                           "else appends there?)" for u in result.stored})
            written = dict(zip(result.stored, created, strict=True))
        if result.uidvalidity is not None:
            state.dest_uidvalidity = result.uidvalidity
        state.clear_pending()
        if result.refused:
            raise PartialWrite(written, result.refused)
        return written

    async def set_flags(self, info: MailboxInfo, dest_uid: int, flags: tuple[str, ...]) -> None:
        await self.account.store_flags([dest_uid], flags)

    async def remove(self, info: MailboxInfo, dest_uids: list[int]) -> None:
        await self.account.expunge(dest_uids)

    async def finish(self, info: MailboxInfo, status: MailboxStatus) -> None:
        return None

    async def set_subscriptions(self, mailboxes: list[MailboxInfo]) -> None:
        for mailbox in mailboxes:
            if mailbox.subscribed:
                await self.account.subscribe(await self._name(mailbox))

    async def close(self) -> None:
        await self.account.logout()
