"""A mailbox as a released shared-IDLE follower's client knows it, and what to tell it next.

A follower that gave its upstream connection back cannot be told news by that connection any
more, so the proxy keeps what the client was told (``MailboxState``: every UID in sequence
order, with flags and, for CONDSTORE clients, MODSEQ) and, when the mailbox changed, compares
it with a fresh reading of the mailbox (``read_state``). Why that is exact: the state was
complete when taken, and UIDs only grow under one UIDVALIDITY, so every UID the client does not
know is newer than every UID it knows. Expunges are sent highest number first (each number is
still valid when it is sent), then EXISTS with the new count, then FETCH FLAGS for the changed
ones in the new numbers: the client's sequence numbers then equal the fresh reading's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import SessionEnded
from ..protocol.command import Command
from ..protocol.response import (
    DataResponse,
    fetch_attributes,
    is_final,
    number_value,
)
from ..protocol.tokens import Atom, ParenList, Token, astring_token
from ..upstream.connection import Received, UpstreamConnection
from .mailbox import SelectedMailbox, changes_messages

SNAPSHOT_TRIES = 5  # readings disturbed by new or expunged mail before giving up
RECENT = "\\RECENT"  # per connection: never compared nor reported


@dataclass
class MailboxState:
    uidvalidity: int | None
    uids: list[int] = field(default_factory=list)  # sequence order
    flags: dict[int, tuple[str, ...]] = field(default_factory=dict)
    modseqs: dict[int, int] = field(default_factory=dict)  # empty unless MODSEQ was read
    # ``* FLAGS (...)``: the flags and keywords defined. Not PERMANENTFLAGS: a reading's
    # EXAMINE always says () there, whatever the client's SELECT was told.
    flag_list: bytes | None = None


@dataclass(frozen=True)
class NewsStyle:
    """How the client wants changes told (what it ENABLEd)."""

    condstore: bool = False  # FETCH carries MODSEQ
    qresync: bool = False  # VANISHED (UIDs) instead of EXPUNGE; FETCH carries UID


def style_of(enabled: tuple[Token, ...]) -> NewsStyle:
    names = {t.upper() for t in enabled if isinstance(t, Atom)}
    return NewsStyle(condstore=bool(names & {"CONDSTORE", "QRESYNC"}),
                     qresync="QRESYNC" in names)


def news_lines(told: MailboxState, now: MailboxState, style: NewsStyle) -> list[bytes]:
    """What turns the client's ``told`` view into ``now``, in its own sequence numbers."""
    gone = set(told.uids) - set(now.uids)
    kept = [uid for uid in told.uids if uid not in gone]
    if now.uids[:len(kept)] != kept:  # cannot happen under one UIDVALIDITY
        raise SessionEnded("Mailbox changed in an unexpected way; please resync")
    lines: list[bytes] = []
    if now.flag_list is not None and now.flag_list != told.flag_list:
        lines.append(now.flag_list)  # a new keyword, before any FETCH that carries it
    if gone and style.qresync:
        lines.append(b"* VANISHED " + uid_set(sorted(gone)) + b"\r\n")
    elif gone:
        lines += [b"* %d EXPUNGE\r\n" % seq for seq in range(len(told.uids), 0, -1)
                  if told.uids[seq - 1] in gone]
    if len(now.uids) > len(kept):
        lines.append(b"* %d EXISTS\r\n" % len(now.uids))
    for seq, uid in enumerate(kept, 1):
        flags_changed = set(told.flags.get(uid, ())) != set(now.flags.get(uid, ()))
        modseq_changed = style.condstore and told.modseqs.get(uid) != now.modseqs.get(uid)
        if flags_changed or modseq_changed:
            lines.append(_fetch_line(seq, uid, now, style))
    return lines


def _fetch_line(seq: int, uid: int, now: MailboxState, style: NewsStyle) -> bytes:
    items = [b"FLAGS (" + " ".join(now.flags.get(uid, ())).encode() + b")"]
    if style.qresync:
        items.insert(0, b"UID %d" % uid)
    if style.condstore and uid in now.modseqs:
        items.append(b"MODSEQ (%d)" % now.modseqs[uid])
    return b"* %d FETCH (" % seq + b" ".join(items) + b")\r\n"


def uid_set(uids: list[int]) -> bytes:
    """Ascending UIDs as a compact IMAP set: ``1:3,7``."""
    ranges: list[list[int]] = []
    for uid in uids:
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in ranges)


async def select_quietly(upstream: UpstreamConnection, name: bytes, read_only: bool
                         ) -> SelectedMailbox:
    """SELECT / EXAMINE ``name`` without telling anyone; what its answer said (UIDVALIDITY,
    the FLAGS line)."""
    box = SelectedMailbox(name, read_only=read_only)
    command = Command("", "EXAMINE" if read_only else "SELECT", (astring_token(name),))
    async for item in upstream.execute(command):
        box.observe(item.response)
        if is_final(item.response) and item.response.status != "OK":
            raise SessionEnded("Mailbox no longer available; please resync")
    return box


async def read_state(upstream: UpstreamConnection, uidvalidity: int | None, modseq: bool,
                     seen: Callable[[Received], None] = lambda item: None) -> MailboxState:
    """Every UID, in sequence order, with flags (and MODSEQ) of the selected mailbox, as this
    connection numbers them now. ``seen`` gets every untagged response on the way. A reading
    during which mail came or went is taken again: the connection's numbers moved under it."""
    items: tuple[Token, ...] = (Atom("FLAGS"),) + ((Atom("MODSEQ"),) if modseq else ())
    command = Command("", "FETCH", (Atom("1:*"), ParenList(items)), uid=True)
    for _ in range(SNAPSHOT_TRIES):
        state = MailboxState(uidvalidity)
        by_seq: dict[int, int] = {}
        disturbed = False
        async for item in upstream.execute(command):
            response = item.response
            if is_final(response):
                if response.status != "OK":
                    raise SessionEnded("Mailbox no longer readable; please resync")
                continue
            seen(item)
            disturbed |= changes_messages(response)
            _take_fetch(response, state, by_seq)
        state.uids = [by_seq[seq] for seq in sorted(by_seq)]
        if not disturbed and sorted(by_seq) == list(range(1, len(by_seq) + 1)) \
                and state.uids == sorted(set(state.uids)):
            return state
    raise SessionEnded("Mailbox too busy to follow; please resync")


def _take_fetch(response: object, state: MailboxState, by_seq: dict[int, int]) -> None:
    if not isinstance(response, DataResponse) or response.number is None:
        return
    attributes = fetch_attributes(response) or {}
    uid = number_value(attributes.get("UID"))
    if uid is None:  # an unsolicited flag change for a number this reading already named
        uid = by_seq.get(response.number)
        if uid is None:
            return
    by_seq[response.number] = uid
    flags = attributes.get("FLAGS")
    if isinstance(flags, ParenList):
        state.flags[uid] = tuple(t.value for t in flags.items
                                 if isinstance(t, Atom) and t.upper() != RECENT)
    modseq = attributes.get("MODSEQ")
    if isinstance(modseq, ParenList) and modseq.items:
        value = number_value(modseq.items[0])
        if value is not None:
            state.modseqs[uid] = value
