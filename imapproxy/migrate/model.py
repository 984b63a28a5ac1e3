"""What a migration moves: mailboxes, their UID state, and messages with their metadata."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

STANDARD_FLAGS = ("\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen")
_STANDARD_BY_UPPER = {f.upper(): f for f in STANDARD_FLAGS}


@dataclass(frozen=True)
class MailboxInfo:
    """One LIST entry. ``name`` is the name as the server sends it (modified UTF-7)."""

    name: str
    delimiter: str | None
    attributes: frozenset[str] = frozenset()  # upper case, e.g. "\\NOSELECT", "\\ALL"
    subscribed: bool = False

    @property
    def selectable(self) -> bool:
        return not self.attributes & {"\\NOSELECT", "\\NONEXISTENT"}

    @property
    def display_name(self) -> str:
        return decode_mutf7(self.name)


@dataclass(frozen=True)
class MailboxStatus:
    uidvalidity: int
    uidnext: int
    highestmodseq: int | None  # None without CONDSTORE (or NOMODSEQ)
    exists: int = 0


@dataclass(frozen=True)
class MessageMeta:
    uid: int
    flags: tuple[str, ...]  # normalised (see normalize_flags), \Recent dropped
    internaldate: str | None = None  # as the server wrote it
    size: int = 0
    modseq: int | None = None
    gmail_id: int | None = None  # X-GM-MSGID: the same message under several labels


@dataclass(frozen=True)
class Message:
    meta: MessageMeta
    body: bytes = field(repr=False)


def normalize_flags(flags: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Standard flags spelled canonically, keywords as given, \\Recent dropped (a session
    property, never copied), sorted and without duplicates."""
    out: set[str] = set()
    for flag in flags:
        if flag.startswith("\\"):
            canonical = _STANDARD_BY_UPPER.get(flag.upper())
            if canonical is not None:
                out.add(canonical)
        elif flag:
            out.add(flag)
    return tuple(sorted(out))


def decode_mutf7(name: str) -> str:
    """IMAP modified UTF-7 (RFC 3501 5.1.3) to text; undecodable runs stay as they are."""
    out: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        end = name.find("-", i + 1) if ch == "&" else -1
        if ch != "&" or end < 0:
            out.append(ch)
            i += 1
            continue
        chunk = name[i + 1:end]
        if not chunk:
            out.append("&")
        else:
            try:
                raw = base64.b64decode(chunk.replace(",", "/") + "=" * (-len(chunk) % 4))
                out.append(raw.decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError):
                out.append(name[i:end + 1])
        i = end + 1
    return "".join(out)


