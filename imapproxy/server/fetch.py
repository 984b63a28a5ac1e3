"""FETCH with content items: mailbox state from the upstream, content from the message bytes.

The upstream is asked only simple things, like Dovecot's imapc: ``FETCH set (UID FLAGS
RFC822.SIZE ...)`` for the state items, then ``UID FETCH uids (BODY.PEEK[])`` in batches for
the bodies not cached yet. Every content item (sections, BODYSTRUCTURE, ENVELOPE, sizes) is
computed from those bytes, so what a client sees is consistent with one set of bytes, and a
message crosses the upstream link once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from ..cache import IndexEntry, MailboxCache
from ..mime.render import load_structure, render_item, structure_blob
from ..protocol.command import Command
from ..protocol.fetch import FetchItem, FetchRequest
from ..protocol.response import DataResponse, StatusResponse
from ..protocol.tokens import Atom, ParenList, Token, serialize_tokens
from ..upstream.connection import Received, UpstreamConnection
from .mailbox import SelectedMailbox

log = logging.getLogger(__name__)

WINDOW_MESSAGES = 64  # messages answered per round of body fetching
WINDOW_BYTES = 16 * 1024 * 1024  # and at most this many message bytes held at once
SEEN = "\\SEEN"


@dataclass
class Row:
    """One message of the answer: its sequence number and the upstream's state items."""

    seq: int
    uid: int
    state: dict[str, Token] = field(default_factory=dict)
    size: int = 0
    flags_changed: bool = False


Relay = Callable[[Received], None]
Write = Callable[[bytes], None]
Drain = Callable[[], Awaitable[None]]


class ContentFetch:
    """One FETCH / UID FETCH that asks for content items."""

    def __init__(self, upstream: UpstreamConnection, cache: MailboxCache | None,
                 mailbox: SelectedMailbox, relay: Relay, write: Write, drain: Drain) -> None:
        self.upstream = upstream
        self.cache = cache
        self.mailbox = mailbox
        self.relay = relay
        self.write = write
        self.drain = drain

    async def run(self, command: Command, request: FetchRequest) -> StatusResponse:
        sets_seen = not self.mailbox.read_only and any(i.sets_seen for i in request.items)
        state_names = ["UID", "RFC822.SIZE"]
        for item in request.items:
            if item.is_state and item.name not in state_names:
                state_names.append(item.name)
        if sets_seen and "FLAGS" not in state_names:
            state_names.append("FLAGS")
        args: tuple[Token, ...] = (command.args[0],
                                   ParenList(tuple(Atom(n) for n in state_names)))
        if request.modifiers:
            args += (ParenList(request.modifiers),)
        rows: list[Row] = []
        final: StatusResponse | None = None
        async for received in self.upstream.execute(Command("", "FETCH", args, command.uid)):
            response = received.response
            row = _row_of(response)
            if row is not None:
                rows.append(row)
            elif isinstance(response, StatusResponse) and response.tag is not None:
                final = response
            else:
                self.relay(received)
        assert final is not None
        if final.status != "OK":
            return final
        for window in _windows(rows):
            await self._answer(window, request, sets_seen, command.uid)
        return final

    async def _answer(self, rows: list[Row], request: FetchRequest, sets_seen: bool,
                      by_uid: bool) -> None:
        bodies = await self._bodies([r.uid for r in rows])
        if sets_seen:
            await self._mark_seen([r for r in rows if r.uid in bodies])
        structures = await self._structures(bodies, rows)
        for row in rows:
            raw = bodies.get(row.uid)
            if raw is None:
                continue  # expunged meanwhile: the upstream had no body to give
            self.write(_fetch_response(row, request.items, raw, structures[row.uid], by_uid))
        await self.drain()

    async def _bodies(self, uids: list[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        if self.cache is not None:
            for uid, data in (await self.cache.aget_many(uids)).items():
                if data is not None:
                    found[uid] = data
        missing = [u for u in uids if u not in found]
        if missing:
            fetched = await self._fetch_bodies(missing)
            if self.cache is not None:
                for uid, data in fetched.items():
                    await self.cache.aput(uid, data)
            found.update(fetched)
        return found

    async def _fetch_bodies(self, uids: list[int]) -> dict[int, bytes]:
        command = Command("", "FETCH", (Atom(uid_set(uids)),
                                        ParenList((Atom("UID"), Atom("BODY.PEEK[]")))), True)
        out: dict[int, bytes] = {}
        async for received in self.upstream.execute(command):
            response = received.response
            items = _fetch_items(response)
            if items is not None and "UID" in items and "BODY[]" in items:
                uid = _int(items["UID"])
                body = items["BODY[]"]
                if uid is not None and not isinstance(body, (Atom, ParenList)):
                    out[uid] = body.value
                    continue
            if not (isinstance(response, StatusResponse) and response.tag is not None):
                self.relay(received)
        return out

    async def _mark_seen(self, rows: list[Row]) -> None:
        unseen = [r for r in rows if SEEN not in _flag_names(r.state.get("FLAGS"))]
        if not unseen:
            return
        # Not .SILENT: the upstream answers with the new FLAGS, which stay its own.
        command = Command("", "STORE", (Atom(uid_set([r.uid for r in unseen])),
                                        Atom("+FLAGS"), ParenList((Atom("\\Seen"),))), True)
        by_uid = {r.uid: r for r in unseen}
        async for received in self.upstream.execute(command):
            items = _fetch_items(received.response)
            uid = _int(items.get("UID")) if items else None
            row = by_uid.get(uid) if uid is not None else None
            if items is not None and row is not None and "FLAGS" in items:
                row.state["FLAGS"] = items["FLAGS"]
                row.flags_changed = True
            elif not (isinstance(received.response, StatusResponse) and received.response.tag):
                self.relay(received)

    async def _structures(self, bodies: dict[int, bytes], rows: list[Row]) -> dict[int, bytes]:
        """The parsed MIME structure of each message: from the index, else parsed once now."""
        known: dict[int, bytes] = {}
        if self.cache is not None:
            index = await self.cache.aindex(list(bodies))
            known = {uid: e.structure for uid, e in index.items() if e.structure}
        new: list[IndexEntry] = []
        for uid, raw in bodies.items():
            if uid not in known:
                known[uid] = structure_blob(raw)
                new.append(IndexEntry(uid, size=len(raw), internaldate=None,
                                      structure=known[uid]))
        if new and self.cache is not None:
            await self.cache.aupdate_index(new)
        return known


# Items Dovecot writes before the others ("buffered" handlers in its imap-fetch.c): a client
# comparing with the upstream sees the same order.
BUFFERED = frozenset({"UID", "FLAGS", "INTERNALDATE", "MODSEQ", "RFC822.SIZE", "ENVELOPE",
                      "BODY", "BODYSTRUCTURE", "BINARY.SIZE"})


def _fetch_response(row: Row, items: tuple[FetchItem, ...], raw: bytes, structure: bytes,
                    by_uid: bool) -> bytes:
    """``* n FETCH (...)`` in Dovecot's order: UID first (clients expect it early), then the
    small items as asked, then FLAGS when this fetch set \\Seen, then sections as asked."""
    small: dict[bytes, bytes] = {}
    large: dict[bytes, bytes] = {}
    if by_uid or any(i.name == "UID" for i in items):
        small[b"UID"] = str(row.uid).encode()
    part = None
    for item in items:
        if item.is_state:
            token = row.state.get(item.name)
            if token is not None and item.name != "UID":
                small.setdefault(item.name.encode(), serialize_tokens((token,)))
            continue
        if part is None:
            part = load_structure(structure)
        key, value_bytes = render_item(item, raw, part)
        is_small = item.name in BUFFERED and item.section is None or item.name == "BINARY.SIZE"
        (small if is_small else large).setdefault(key, value_bytes)
    if row.flags_changed and "FLAGS" in row.state:
        small.setdefault(b"FLAGS", serialize_tokens((row.state["FLAGS"],)))
    for key, value in large.items():
        small.setdefault(key, value)
    body = b" ".join(key + b" " + value for key, value in small.items())
    return b"* %d FETCH (%b)\r\n" % (row.seq, body)


def _row_of(response: object) -> Row | None:
    if not isinstance(response, DataResponse) or response.number is None:
        return None
    items = _fetch_items(response)
    if items is None or "UID" not in items:
        return None
    uid = _int(items.pop("UID"))
    if uid is None:
        return None
    size = _int(items.pop("RFC822.SIZE", Atom("0"))) or 0
    return Row(response.number, uid, items, size)


def _fetch_items(response: object) -> dict[str, Token] | None:
    """``* n FETCH (NAME value ...)`` as {NAME: value}, or None for other responses."""
    if not isinstance(response, DataResponse) or response.name != "FETCH" \
            or len(response.args) != 1 or not isinstance(response.args[0], ParenList):
        return None
    tokens = response.args[0].items
    out: dict[str, Token] = {}
    for name, value in zip(tokens[::2], tokens[1::2], strict=False):
        if isinstance(name, Atom):
            out[name.upper()] = value
    return out


def _int(token: Token | None) -> int | None:
    if isinstance(token, Atom) and token.value.isdigit():
        return int(token.value)
    return None


def _flag_names(token: Token | None) -> set[str]:
    if not isinstance(token, ParenList):
        return set()
    return {t.upper() for t in token.items if isinstance(t, Atom)}


def _windows(rows: list[Row]) -> Iterator[list[Row]]:
    window: list[Row] = []
    size = 0
    for row in rows:
        if window and (len(window) >= WINDOW_MESSAGES or size + row.size > WINDOW_BYTES):
            yield window
            window, size = [], 0
        window.append(row)
        size += row.size
    if window:
        yield window


def uid_set(uids: list[int]) -> str:
    """A compact IMAP set: 1,2,3,7 -> "1:3,7"."""
    out: list[str] = []
    ordered = sorted(set(uids))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(out)
