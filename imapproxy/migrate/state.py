"""Resume state, one JSON file per destination, rewritten atomically (temporary file, fsync,
rename) after every batch: per source mailbox, its UIDVALIDITY and HIGHESTMODSEQ as last
copied, and per copied message its flags and its UID on the destination. A re-run compares
the source with it and copies only what changed."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import decode_mutf7

VERSION = 1
SAVE_INTERVAL = 1.0  # seconds between deferred saves


@dataclass
class Copied:
    flags: tuple[str, ...]
    dest: int  # the message's UID on the destination (the same UID for a Maildir)
    gmail_id: int | None = None


@dataclass
class MailboxState:
    owner: StateFile | None = field(default=None, repr=False)
    uidvalidity: int | None = None
    highestmodseq: int | None = None
    uidnext: int | None = None
    dest_uidvalidity: int | None = None
    messages: dict[int, Copied] = field(default_factory=dict)
    pending: list[tuple[int, tuple[str, ...], int]] = field(default_factory=list)  # uid, flags, size
    pending_dest_uidnext: int | None = None

    def record(self, uid: int, flags: tuple[str, ...], dest: int,
               gmail_id: int | None = None) -> None:
        if gmail_id is None and uid in self.messages:
            gmail_id = self.messages[uid].gmail_id
        self.messages[uid] = Copied(tuple(flags), dest, gmail_id)

    def forget_messages(self) -> None:
        self.messages.clear()
        self.highestmodseq = None
        self.clear_pending()

    def set_pending(self, items: list[tuple[int, tuple[str, ...], int]],
                    dest_uidnext: int) -> None:
        self.pending = list(items)
        self.pending_dest_uidnext = dest_uidnext

    def clear_pending(self) -> None:
        self.pending = []
        self.pending_dest_uidnext = None

    def save(self) -> None:
        if self.owner is not None:
            self.owner.save()

    def to_json(self) -> dict[str, Any]:
        return {
            "uidvalidity": self.uidvalidity, "highestmodseq": self.highestmodseq,
            "uidnext": self.uidnext, "dest_uidvalidity": self.dest_uidvalidity,
            "messages": {str(u): [list(c.flags), c.dest, *(
                [c.gmail_id] if c.gmail_id is not None else [])]
                for u, c in self.messages.items()},
            "pending": [[u, list(f), size] for u, f, size in self.pending],
            "pending_dest_uidnext": self.pending_dest_uidnext,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], owner: StateFile) -> MailboxState:
        return cls(
            owner, data.get("uidvalidity"), data.get("highestmodseq"), data.get("uidnext"),
            data.get("dest_uidvalidity"),
            {int(u): Copied(tuple(v[0]), int(v[1]), int(v[2]) if len(v) > 2 else None)
             for u, v in data.get("messages", {}).items()},
            [(int(u), tuple(f), int(size)) for u, f, size in data.get("pending", [])],
            data.get("pending_dest_uidnext"))


class StateFile:
    def __init__(self, path: Path, source: str, destination: str) -> None:
        self.path = path
        self.source = source
        self.destination = destination
        self.mailboxes: dict[str, MailboxState] = {}
        self._saved = 0.0

    @classmethod
    def load(cls, path: Path, source: str, destination: str) -> StateFile:
        """The state at *path*, or an empty one. A state written for another source starts
        over (its UIDs mean nothing for this one)."""
        state = cls(path, source, destination)
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return state
        if data.get("version") == VERSION and data.get("source") == source:
            state.mailboxes = {name: MailboxState.from_json(m, state)
                               for name, m in data.get("mailboxes", {}).items()}
        return state

    def mailbox(self, name: str) -> MailboxState:
        if name not in self.mailboxes:
            self.mailboxes[name] = MailboxState(self)
        return self.mailboxes[name]

    def gmail_ids(self) -> set[int]:
        """Gmail message ids copied so far, in any mailbox."""
        return {c.gmail_id for m in self.mailboxes.values() for c in m.messages.values()
                if c.gmail_id is not None}

    def save(self, soon: bool = False) -> None:
        """Write the state now; with *soon*, at most once a second (what a killed run did
        not record is found again: Maildir files have names fixed by their UID, IMAP
        APPENDs are recorded as pending before they are sent, with a save that is not
        deferred)."""
        now = time.monotonic()
        if soon and now - self._saved < SAVE_INTERVAL:
            return
        self._saved = now
        data = {"version": VERSION, "source": self.source, "destination": self.destination,
                "mailboxes": {n: m.to_json() for n, m in sorted(self.mailboxes.items())}}
        write_json(self.path, data)

    def write_uid_map(self, path: Path) -> None:
        """Source UID -> destination UID per mailbox (names decoded from modified UTF-7), for
        tools that rewrite client caches."""
        data = {decode_mutf7(name): {"source_uidvalidity": m.uidvalidity,
                       "dest_uidvalidity": m.dest_uidvalidity,
                       "uids": {str(u): c.dest for u, c in sorted(m.messages.items())}}
                for name, m in sorted(self.mailboxes.items())}
        write_json(path, data)


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w",
              encoding="utf-8") as out:
        json.dump(data, out, separators=(",", ":"))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)
