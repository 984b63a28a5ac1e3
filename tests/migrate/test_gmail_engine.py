"""The engine on a Gmail-like source (a fake: Dovecot has no X-GM-MSGID): each message is
copied once, into its first label folder, All Mail giving only unlabelled mail; a message
that loses its label on a re-run is then copied from All Mail. Nothing lost, nothing twice."""

from __future__ import annotations

import io
from pathlib import Path

from imapproxy.migrate.engine import Migration, Options
from imapproxy.migrate.model import MailboxInfo, MailboxStatus, Message, MessageMeta
from imapproxy.migrate.progress import Progress
from imapproxy.migrate.state import MailboxState, StateFile

ALL = MailboxInfo("[Gmail]/All Mail", "/", frozenset({"\\ALL"}))
STARRED = MailboxInfo("[Gmail]/Starred", "/", frozenset({"\\FLAGGED"}))
INBOX = MailboxInfo("INBOX", "/")
WORK = MailboxInfo("Work", "/")


class FakeGmail:
    """Folders of (uid, X-GM-MSGID); UIDVALIDITY 1; UIDNEXT past the last UID."""

    capabilities = frozenset({"IMAP4REV1", "X-GM-EXT-1"})

    def __init__(self, folders: dict[str, list[tuple[int, int]]]) -> None:
        self.folders = folders
        self.selected: str | None = None

    async def list_mailboxes(self) -> list[MailboxInfo]:
        return [ALL, INBOX, STARRED, WORK]

    async def examine(self, name: str) -> MailboxStatus:
        self.selected = name
        content = self.folders[name]
        return MailboxStatus(1, max((u for u, _ in content), default=0) + 1, None, len(content))

    async def all_uids(self) -> list[int]:
        assert self.selected is not None
        return [u for u, _ in self.folders[self.selected]]

    async def fetch_meta(self, uids: str = "1:*", changedsince: int | None = None
                         ) -> list[MessageMeta]:
        assert self.selected is not None
        return [MessageMeta(u, (), None, 10, None, g) for u, g in self.folders[self.selected]]

    async def fetch_messages(self, uids: list[int]) -> list[Message]:
        return [Message(m, b"x" * 10) for m in await self.fetch_meta() if m.uid in uids]

    async def existing(self, uids: list[int]) -> list[int]:
        return []


class RecordingWriter:
    def __init__(self) -> None:
        self.boxes: dict[str, set[int]] = {}

    async def prepare(self, info: MailboxInfo, status: MailboxStatus,
                      state: MailboxState) -> set[int]:
        return set(self.boxes.setdefault(info.name, set()))

    async def write(self, info: MailboxInfo, messages: list[Message],
                    state: MailboxState) -> dict[int, int]:
        self.boxes[info.name].update(m.meta.uid for m in messages)
        return {m.meta.uid: m.meta.uid for m in messages}

    async def set_flags(self, info: MailboxInfo, dest: int, flags: tuple[str, ...]) -> None:
        return None

    async def remove(self, info: MailboxInfo, dests: list[int]) -> None:
        self.boxes[info.name].difference_update(dests)

    async def finish(self, info: MailboxInfo, status: MailboxStatus) -> None:
        return None

    async def set_subscriptions(self, mailboxes: list[MailboxInfo]) -> None:
        return None

    async def close(self) -> None:
        return None


async def run(source: FakeGmail, writer: RecordingWriter, state: Path) -> str:
    out = io.StringIO()
    migration = Migration(source, writer, StateFile.load(state, "gmail", "dest"),  # type: ignore[arg-type]
                          Options(), Progress(out, tty=False))
    summary = await migration.run()
    return "\n".join(summary.lines())


async def test_each_gmail_message_is_copied_once(tmp_path: Path) -> None:
    source = FakeGmail({
        "INBOX": [(1, 100)],
        "Work": [(1, 100), (2, 200)],
        "[Gmail]/Starred": [(1, 100)],
        "[Gmail]/All Mail": [(1, 100), (2, 200), (3, 300)],
    })
    writer = RecordingWriter()
    summary = await run(source, writer, tmp_path / "state.json")
    assert writer.boxes == {"INBOX": {1}, "Work": {2}, "[Gmail]/All Mail": {3}}
    assert "3 messages copied" in summary and "3 Gmail messages already copied" in summary
    assert "skipped [Gmail]/Starred" in summary
    # The label "Work" is removed from message 200: it now lives in All Mail only.
    source.folders["Work"] = [(1, 100)]
    await run(source, writer, tmp_path / "state.json")
    assert writer.boxes == {"INBOX": {1}, "Work": set(), "[Gmail]/All Mail": {2, 3}}
