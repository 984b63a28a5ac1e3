"""The IMAP destination: APPEND with flags and INTERNALDATE (MULTIAPPEND when offered).

An IMAP server chooses UIDs itself, so the copies get new ones: the mapping (source UID ->
destination UID, from UIDPLUS APPENDUID) is kept in the state file and written out as the
UID map file. Crash safety: before each APPEND the batch and the destination's UIDNEXT are
recorded as pending; a re-run finds what that APPEND created (UIDs from that UIDNEXT on, in
APPEND order) instead of appending it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .account import ImapAccount, MigrateError
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
            created = await self.account.uids_from(state.pending_dest_uidnext or 1)
            for (src_uid, flags), dest_uid in zip(state.pending, created, strict=False):
                state.record(src_uid, flags, dest_uid)
            state.clear_pending()
        present = set(await self.account.all_uids())
        return {uid for uid, m in state.messages.items() if m.dest in present}

    async def write(self, info: MailboxInfo, messages: list[Message], state: MailboxState
                    ) -> dict[int, int]:
        name = await self._name(info)
        uidnext = await self.account.uidnext(name)
        state.set_pending([(m.meta.uid, m.meta.flags) for m in messages], uidnext)
        state.save()
        try:
            validity, new_uids = await self.account.append(name, messages)
        except MigrateError:
            state.clear_pending()  # refused (MULTIAPPEND adds all or nothing)
            raise
        if len(new_uids) != len(messages):
            # No UIDPLUS: find them the same way a re-run would.
            new_uids = (await self.account.uids_from(uidnext))[:len(messages)]
        if len(new_uids) != len(messages):
            raise MigrateError(f"{info.display_name}: cannot tell which UIDs the server gave")
        if validity is not None:
            state.dest_uidvalidity = validity
        state.clear_pending()
        return {m.meta.uid: d for m, d in zip(messages, new_uids, strict=True)}

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
