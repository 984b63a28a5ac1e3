"""Which mailboxes to copy, and Gmail's virtual folders.

Gmail shows labels as folders, plus ``[Gmail]/All Mail`` (\\All: every message),
``[Gmail]/Important`` (\\Important) and ``[Gmail]/Starred`` (\\Flagged), which hold copies of
messages that are already in INBOX, Sent or a label folder. Copying them would duplicate
most of the account, so they are skipped: a starred message keeps its \\Flagged flag, and
a message with a label is copied into that label's folder. The documented price: mail that
was archived without any label exists only in All Mail; ``--gmail-all-mail`` copies that
folder too (then labelled messages appear twice).
"""

from __future__ import annotations

import fnmatch

from .model import MailboxInfo

GMAIL_VIRTUAL = {"\\ALL": "Gmail's All Mail (every message is also in its label folder)",
                 "\\IMPORTANT": "Gmail's Important (a view of other folders)",
                 "\\FLAGGED": "Gmail's Starred (kept as the \\Flagged flag)"}


def is_gmail(capabilities: frozenset[str], mailboxes: list[MailboxInfo]) -> bool:
    return "X-GM-EXT-1" in capabilities or any(
        m.name.startswith(("[Gmail]/", "[Google Mail]/")) for m in mailboxes)


def choose_mailboxes(mailboxes: list[MailboxInfo], patterns: list[str], gmail: bool,
                     all_mail: bool = False) -> tuple[list[MailboxInfo], dict[str, str]]:
    """The selectable mailboxes to copy (in LIST order), and the others with why."""
    chosen: list[MailboxInfo] = []
    skipped: dict[str, str] = {}
    for mailbox in mailboxes:
        name = mailbox.display_name
        if not mailbox.selectable:
            continue
        if patterns and not any(fnmatch.fnmatchcase(name, p) or
                                fnmatch.fnmatchcase(mailbox.name, p) for p in patterns):
            skipped[mailbox.name] = "not matched by --mailboxes"
            continue
        virtual = [GMAIL_VIRTUAL[a] for a in sorted(mailbox.attributes & GMAIL_VIRTUAL.keys())
                   if not (all_mail and a == "\\ALL")]
        if gmail and virtual:
            skipped[mailbox.name] = virtual[0]
            continue
        chosen.append(mailbox)
    return chosen, skipped
