"""FETCH data items: which are mailbox state (asked upstream) and which are content (computed
by the proxy from the message bytes).

``parse_fetch_items`` reads the item list of a FETCH command (after the sequence set) into
:class:`FetchItem` values; the section text inside ``[...]`` is kept as written and is given
meaning by imapproxy.mime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ProtocolError
from .tokens import Atom, ParenList, Token, bracket_end

# Owned by the upstream: asked for, and relayed as the upstream answered.
STATE_ITEMS = frozenset({"UID", "FLAGS", "INTERNALDATE", "MODSEQ"})
# Derived from the message bytes, computed locally.
CONTENT_ITEMS = frozenset({
    "RFC822", "RFC822.HEADER", "RFC822.TEXT", "RFC822.SIZE", "ENVELOPE", "BODY",
    "BODYSTRUCTURE",
})
SECTION_ITEMS = frozenset({"BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"})
MACROS: dict[str, tuple[str, ...]] = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
# Items whose fetch sets \\Seen (RFC 3501 6.4.5), unless the mailbox is read-only.
SETS_SEEN = frozenset({"BODY", "BINARY", "RFC822", "RFC822.TEXT"})

_PARTIAL = re.compile(r"(?:<(?P<start>\d{1,10})(?:\.(?P<length>\d{1,10}))?>)?\Z")


@dataclass(frozen=True, slots=True)
class FetchItem:
    """One requested item. ``section`` is None for items without ``[...]``."""

    name: str  # upper case: FLAGS, BODY, BODY.PEEK, BINARY.SIZE, RFC822.SIZE, ...
    section: str | None = None  # the text between the brackets, as the client wrote it
    partial: tuple[int, int | None] | None = None  # <start.length>; length None if absent

    @property
    def is_state(self) -> bool:
        return self.name in STATE_ITEMS

    @property
    def sets_seen(self) -> bool:
        return self.name in SETS_SEEN and (self.name != "BODY" or self.section is not None)


@dataclass(frozen=True, slots=True)
class FetchRequest:
    items: tuple[FetchItem, ...]
    modifiers: tuple[Token, ...] = ()  # e.g. (CHANGEDSINCE 12 VANISHED), passed upstream

    @property
    def has_content(self) -> bool:
        return any(not item.is_state for item in self.items)


def parse_fetch_items(args: tuple[Token, ...]) -> FetchRequest:
    """Read ``set items [modifiers]`` args (the set itself is args[0] and is skipped)."""
    if len(args) not in (2, 3):
        raise ProtocolError("FETCH needs a sequence set and data items")
    spec = args[1]
    modifiers: tuple[Token, ...] = ()
    if len(args) == 3:
        if not isinstance(args[2], ParenList):
            raise ProtocolError("FETCH modifiers must be a list")
        modifiers = args[2].items
    atoms: tuple[Token, ...]
    if isinstance(spec, ParenList):
        atoms = spec.items
        if not atoms:
            raise ProtocolError("empty FETCH item list")
    else:
        atoms = (spec,)
        if isinstance(spec, Atom) and spec.upper() in MACROS:
            return FetchRequest(tuple(FetchItem(n) for n in MACROS[spec.upper()]), modifiers)
    return FetchRequest(tuple(_item(a) for a in atoms), modifiers)


def _item(token: Token) -> FetchItem:
    if not isinstance(token, Atom):
        raise ProtocolError("bad FETCH item")
    value = token.value
    upper = value.upper()
    if upper in STATE_ITEMS or upper in CONTENT_ITEMS:
        return FetchItem(upper)
    open_at = value.find("[")
    name = upper[:open_at]
    close_at = bracket_end(value.encode("latin-1"), open_at) if open_at > 0 else -1
    m = _PARTIAL.match(value, close_at + 1) if close_at > 0 else None
    if name not in SECTION_ITEMS or m is None:
        raise ProtocolError(f"unknown FETCH item {value!r}")
    partial: tuple[int, int | None] | None = None
    if m.group("start") is not None:
        length = m.group("length")
        partial = (int(m.group("start")), int(length) if length is not None else None)
    if name == "BINARY.SIZE" and partial is not None:
        raise ProtocolError("BINARY.SIZE takes no partial range")
    return FetchItem(name, value[open_at + 1:close_at], partial)
