"""``imapproxy verify``: compare two IMAP accounts mailbox by mailbox.

Messages are paired by the SHA-256 of their bytes (an IMAP destination gives new UIDs),
preferring the same UID. Each difference is one of: missing (on the source only), extra (on
the destination only), flags (paired, flags differ) or content (same UIDVALIDITY and UID,
different bytes); mailboxes present on one side only are missing/extra too."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from .account import ImapAccount
from .engine import batches
from .model import MailboxInfo, MessageMeta


@dataclass(frozen=True)
class Difference:
    kind: str  # "missing" | "extra" | "flags" | "content"
    mailbox: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.mailbox}: {self.detail}"


@dataclass(frozen=True)
class Snapshot:
    uidvalidity: int
    messages: dict[int, tuple[MessageMeta, str]]  # uid -> (meta, sha256)


async def snapshot(account: ImapAccount, name: str) -> Snapshot:
    status = await account.examine(name)
    metas = await account.fetch_meta()
    out: dict[int, tuple[MessageMeta, str]] = {}
    for batch in batches(metas, 200, 16 * 1024 * 1024):
        for message in await account.fetch_messages([m.uid for m in batch]):
            out[message.meta.uid] = (message.meta, hashlib.sha256(message.body).hexdigest())
    return Snapshot(status.uidvalidity, out)


def compare(mailbox: str, source: Snapshot, dest: Snapshot) -> list[Difference]:
    """Pair messages by content (SHA-256), preferring the same UID; what stays unpaired is
    missing or extra, or, under the same UIDVALIDITY and UID, a content difference."""
    same_uids = source.uidvalidity == dest.uidvalidity
    by_hash: dict[str, list[MessageMeta]] = {}
    for uid in sorted(dest.messages):
        meta, digest = dest.messages[uid]
        by_hash.setdefault(digest, []).append(meta)
    diffs: list[Difference] = []
    unpaired: list[tuple[MessageMeta, str]] = []
    for uid in sorted(source.messages):
        meta, digest = source.messages[uid]
        candidates = by_hash.get(digest, [])
        if not candidates:
            unpaired.append((meta, digest))
            continue
        other = next((c for c in candidates if same_uids and c.uid == uid), candidates[0])
        candidates.remove(other)
        if meta.flags != other.flags:
            which = f"UID {uid}" if other.uid == uid else f"UID {uid} (dest UID {other.uid})"
            diffs.append(_flags(mailbox, which, meta, other))
    left = {m.uid: m for metas in by_hash.values() for m in metas}
    for meta, digest in unpaired:
        if same_uids and meta.uid in left:
            left.pop(meta.uid)
            other_digest = dest.messages[meta.uid][1]
            diffs.append(Difference("content", mailbox, f"UID {meta.uid} sha256 "
                                                        f"{digest[:12]} != {other_digest[:12]}"))
        else:
            diffs.append(Difference("missing", mailbox, f"UID {meta.uid} sha256 {digest[:12]}"))
    diffs += [Difference("extra", mailbox, f"dest UID {uid}") for uid in sorted(left)]
    return diffs


def _flags(mailbox: str, which: str, a: MessageMeta, b: MessageMeta) -> Difference:
    return Difference("flags", mailbox, f"{which}: {' '.join(a.flags) or '()'} != "
                                        f"{' '.join(b.flags) or '()'}")


class Side(Protocol):
    """One account as verify reads it (an IMAP account, or a Maildir tree)."""

    async def mailbox_names(self) -> set[str]: ...
    async def snapshot(self, name: str) -> Snapshot: ...


class ImapSide:
    def __init__(self, account: ImapAccount) -> None:
        self.account = account

    async def mailbox_names(self) -> set[str]:
        return {m.name for m in await self.account.list_mailboxes() if m.selectable}

    async def snapshot(self, name: str) -> Snapshot:
        return await snapshot(self.account, name)


async def verify(source: ImapAccount, dest: Side,
                 patterns: list[str] | None = None) -> list[Difference]:
    from .gmail import choose_mailboxes, is_gmail
    listed = await source.list_mailboxes()
    chosen, _ = choose_mailboxes(listed, patterns or [], is_gmail(source.capabilities, listed))
    dest_names = await dest.mailbox_names()
    diffs: list[Difference] = []
    for info in chosen:
        if info.name not in dest_names:
            diffs.append(Difference("missing", info.display_name, "mailbox"))
            continue
        diffs += compare(info.display_name, await snapshot(source, info.name),
                         await dest.snapshot(info.name))
    chosen_names = {m.name for m in chosen}
    if not patterns:
        diffs += [Difference("extra", MailboxInfo(n, None).display_name, "mailbox")
                  for n in sorted(dest_names - chosen_names)]
    return diffs
