"""``imapproxy verify``: compare two IMAP accounts mailbox by mailbox.

Messages are paired by UID when both sides have the same UIDVALIDITY (a Maildir migration
keeps UIDs), else by the SHA-256 of their bytes (an IMAP destination gives new UIDs). Each
difference is one of: missing (on the source only), extra (on the destination only), flags
(paired, flags differ) or content (same UID, different bytes); mailboxes present on one
side only are missing/extra too."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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
    diffs: list[Difference] = []
    if source.uidvalidity == dest.uidvalidity:
        for uid in sorted(source.messages.keys() | dest.messages.keys()):
            a, b = source.messages.get(uid), dest.messages.get(uid)
            if b is None:
                diffs.append(Difference("missing", mailbox, f"UID {uid}"))
            elif a is None:
                diffs.append(Difference("extra", mailbox, f"UID {uid}"))
            else:
                if a[1] != b[1]:
                    diffs.append(Difference("content", mailbox, f"UID {uid} sha256 {a[1][:12]} "
                                                                f"!= {b[1][:12]}"))
                if a[0].flags != b[0].flags:
                    diffs.append(_flags(mailbox, f"UID {uid}", a[0], b[0]))
        return diffs
    by_hash: dict[str, list[MessageMeta]] = {}
    for meta, digest in dest.messages.values():
        by_hash.setdefault(digest, []).append(meta)
    for uid in sorted(source.messages):
        meta, digest = source.messages[uid]
        candidates = by_hash.get(digest)
        if not candidates:
            diffs.append(Difference("missing", mailbox, f"UID {uid} sha256 {digest[:12]}"))
            continue
        other = candidates.pop(0)
        if meta.flags != other.flags:
            diffs.append(_flags(mailbox, f"UID {uid} (dest UID {other.uid})", meta, other))
    for rest in by_hash.values():
        diffs.extend(Difference("extra", mailbox, f"dest UID {m.uid}") for m in rest)
    return diffs


def _flags(mailbox: str, which: str, a: MessageMeta, b: MessageMeta) -> Difference:
    return Difference("flags", mailbox, f"{which}: {' '.join(a.flags) or '()'} != "
                                        f"{' '.join(b.flags) or '()'}")


async def verify(source: ImapAccount, dest: ImapAccount,
                 patterns: list[str] | None = None) -> list[Difference]:
    from .gmail import choose_mailboxes, is_gmail
    listed = await source.list_mailboxes()
    chosen, _ = choose_mailboxes(listed, patterns or [], is_gmail(source.capabilities, listed))
    dest_names = {m.name for m in await dest.list_mailboxes() if m.selectable}
    diffs: list[Difference] = []
    for info in chosen:
        if info.name not in dest_names:
            diffs.append(Difference("missing", info.display_name, "mailbox"))
            continue
        diffs += compare(info.display_name, await snapshot(source, info.name),
                         await snapshot(dest, info.name))
    chosen_names = {m.name for m in chosen}
    if not patterns:
        diffs += [Difference("extra", MailboxInfo(n, None).display_name, "mailbox")
                  for n in sorted(dest_names - chosen_names)]
    return diffs
