"""Which mailboxes to copy, in which order, and Gmail's labels.

Gmail shows each label as a folder, plus virtual folders: ``[Gmail]/All Mail`` (\\All:
every message), ``[Gmail]/Important`` (\\Important) and ``[Gmail]/Starred`` (\\Flagged). A
message with three labels is in three folders and in All Mail. The documented choice:

- every message is copied once, into the first folder met in this order: INBOX, the other
  folders in LIST order, All Mail last. Messages are recognised by ``X-GM-MSGID`` (Gmail's
  own message id), so a second label of a message does not make a second copy, and All Mail
  contributes exactly the messages no other folder has (archived without a label);
- Important and Starred are skipped: pure views (a starred message keeps \\Flagged);
- on re-runs, a message that lost its last label (removed from its folder) is copied into
  All Mail, since it is only there now.
"""

from __future__ import annotations

import fnmatch

from .model import MailboxInfo, MessageMeta

NOT_MATCHED = "not matched by --mailboxes"
GMAIL_VIEWS = {"\\IMPORTANT": "Gmail's Important (a view of other folders)",
               "\\FLAGGED": "Gmail's Starred (kept as the \\Flagged flag)"}


def is_gmail(capabilities: frozenset[str], mailboxes: list[MailboxInfo]) -> bool:
    return "X-GM-EXT-1" in capabilities or any(
        m.name.startswith(("[Gmail]/", "[Google Mail]/")) for m in mailboxes)


def choose_mailboxes(mailboxes: list[MailboxInfo], patterns: list[str], gmail: bool
                     ) -> tuple[list[MailboxInfo], dict[str, str]]:
    """The selectable mailboxes to copy, in copy order (INBOX first; on Gmail, All Mail
    last), and the others with why."""
    chosen: list[MailboxInfo] = []
    skipped: dict[str, str] = {}
    for mailbox in mailboxes:
        if not mailbox.selectable:
            continue
        if patterns and not any(fnmatch.fnmatchcase(mailbox.display_name, p) or
                                fnmatch.fnmatchcase(mailbox.name, p) for p in patterns):
            skipped[mailbox.name] = NOT_MATCHED
            continue
        views = [GMAIL_VIEWS[a] for a in sorted(mailbox.attributes & GMAIL_VIEWS.keys())]
        if gmail and views:
            skipped[mailbox.name] = views[0]
            continue
        chosen.append(mailbox)

    def order(mailbox: MailboxInfo) -> int:
        if mailbox.name.upper() == "INBOX":
            return 0
        return 2 if gmail and "\\ALL" in mailbox.attributes else 1

    return sorted(chosen, key=order), skipped  # sorted() is stable: LIST order otherwise


def not_copied_yet(metas: list[MessageMeta], copied: set[int]
                   ) -> tuple[list[MessageMeta], int]:
    """*metas* less those whose Gmail message id is in *copied* (a copy exists in another
    folder); and how many were left out."""
    keep = [m for m in metas if m.gmail_id is None or m.gmail_id not in copied]
    return keep, len(metas) - len(keep)
