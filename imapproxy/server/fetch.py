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

from ..cache import IndexEntry, MailboxCache, MessageStream
from ..cache.inflight import wait_all
from ..errors import UpstreamUnavailable
from ..filtering.content import FilteredContent
from ..mime.part import HAS_NULS, Part
from ..mime.render import (
    load_structure,
    render_item,
    served_as_stored,
    structure_blob,
    whole_message_item,
)
from ..protocol.command import Command
from ..protocol.fetch import FetchItem, FetchRequest
from ..protocol.response import (
    DataResponse,
    Response,
    StatusResponse,
    fetch_attributes,
    is_final,
    number_value,
    serialize_response,
)
from ..protocol.sets import batches, uid_set
from ..protocol.tokens import Atom, Literal, ParenList, Quoted, Token, serialize_tokens
from ..upstream.connection import Received, UpstreamConnection
from .mailbox import (
    FreshState,
    SelectedMailbox,
    all_uids_command,
    changes_messages,
    uids_from_search,
)

log = logging.getLogger(__name__)

WINDOW_MESSAGES = 256  # messages answered per round of body fetching
WINDOW_BYTES = 16 * 1024 * 1024  # and at most this many message bytes held at once
STREAM_THRESHOLD = 1024 * 1024  # cached messages this big are streamed from the cache file
STREAM_CHUNK = 256 * 1024

STREAMED = b"\0streamed\0"  # placeholder for the streamed value inside a response head
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
RenderHook = Callable[[FetchItem, tuple[bytes, bytes]], tuple[bytes, bytes]]
# Mailbox state a server may attach to any FETCH response unasked (RFC 3501 7.4.2): passed on.
UNSOLICITED_STATE = ("FLAGS", "MODSEQ")


class ContentFetch:
    """One FETCH / UID FETCH that asks for content items, and the prefetch that may follow."""

    def __init__(self, upstream: UpstreamConnection, cache: MailboxCache | None,
                 mailbox: SelectedMailbox, relay: Relay, write: Write, drain: Drain,
                 prefetch_count: int = 0, filtered: FilteredContent | None = None,
                 render_hook: RenderHook | None = None) -> None:
        self.upstream = upstream
        self.cache = cache
        self.mailbox = mailbox
        self.relay = relay
        self.write = write
        self.drain = drain
        self.prefetch_count = prefetch_count
        self.missed = False  # some body was not cached: the client reads cold, prefetch
        self.from_cache: set[int] = set()  # UIDs answered from the cache (prefetch hits)
        self.prefetched: list[int] = []  # UIDs a prefetch fetched
        # With a filter chain every content item comes from the filtered bytes.
        self.filtered = filtered
        self.render_hook = render_hook  # client fixups that adjust one rendered item
        self.uid_by_sequence = False  # quirk fetch-without-uid: a FETCH without UID is named
        self.fresh: FreshState | None = None  # state read with the SELECT, if it may answer
        self.news: dict[int, dict[str, Token]] = {}  # UID -> state items relayed as news

    async def run(self, command: Command, request: FetchRequest) -> StatusResponse | None:
        """Answer the FETCH; the upstream's tagged status, or None when the state read with
        the SELECT answered it (mailbox.py FreshState) and no upstream command ran."""
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
        if self.uid_by_sequence and not self.mailbox.uids_complete:
            await self.learn_uids()
        fresh, self.fresh = self.fresh, None
        rows = None
        if fresh is not None and not sets_seen and not request.modifiers:
            rows = self._fresh_rows(fresh, command, frozenset(state_names))
        final = None
        if rows is None:
            rows, final = await self._state_rows(Command("", "FETCH", args, command.uid),
                                                 frozenset(state_names))
            if final.status != "OK":
                return final
        for window in _windows(rows):
            await self._answer(window, request, sets_seen, command.uid)
        self.next_prefetch = self._prefetch_range(rows)
        return final

    def _fresh_rows(self, fresh: FreshState, command: Command, asked: frozenset[str]
                    ) -> list[Row] | None:
        first = command.args[0]
        pairs = self.mailbox.resolve(first.value, command.uid) \
            if isinstance(first, Atom) else None
        taken = fresh.take(pairs, asked) if pairs else None
        if taken is None:
            return None
        return [Row(seq, uid, {k: v for k, v in items.items()  # as _state_rows leaves them
                               if k in asked and k not in ("UID", "RFC822.SIZE")},
                    number_value(items.get("RFC822.SIZE")) or 0)
                for seq, uid, items in taken]

    async def _state_rows(self, command: Command, asked: frozenset[str]
                          ) -> tuple[list[Row], StatusResponse]:
        rows: list[Row] = []
        answers, final = await self._internal(command, asked)
        for seq, items in answers:
            uid = number_value(items.pop("UID"))
            if uid is not None:
                size = number_value(items.pop("RFC822.SIZE", None)) or 0
                rows.append(Row(seq, uid, items, size))
                self.mailbox.learn(seq, uid)
        return rows, final

    async def run_local(self, command: Command, request: FetchRequest) -> bool:
        """Answer without asking the upstream anything about state, when nothing asked for is
        state (UID aside), the fetch sets no flag, and every UID of the set is known
        (SelectedMailbox.resolve). Bodies not cached are still fetched. False: not possible,
        nothing was written."""
        if request.modifiers or any(i.is_state and i.name != "UID" for i in request.items) \
                or (not self.mailbox.read_only and any(i.sets_seen for i in request.items)):
            return False
        first = command.args[0]
        if not isinstance(first, Atom):
            return False
        if not self.mailbox.uids_complete and self.mailbox.exists is not None:
            await self.learn_uids()
        resolved = self.mailbox.resolve(first.value, command.uid)
        if resolved is None:
            return False
        sizes: dict[int, int] = {}
        if self.cache is not None and resolved:
            uids = [uid for _, uid in resolved]
            sizes = {uid: len(data) for uid, data in self.cache.in_memory(uids, count=False).items()}
            rest = [uid for uid in uids if uid not in sizes]
            if rest:
                index = await self.cache.aindex(rest, structure=False)
                sizes.update((uid, entry.size or 0) for uid, entry in index.items())
        rows = [Row(seq, uid, {}, sizes.get(uid, 0)) for seq, uid in resolved]
        for window in _windows(rows):
            await self._answer(window, request, False, command.uid)
        self.next_prefetch = self._prefetch_range(rows)
        return True

    async def learn_uids(self) -> None:
        """Every UID of the mailbox in one ``UID SEARCH ALL``: sequence order is UID order,
        so this is the whole map. Kept only if nothing changed the mailbox meanwhile."""
        found: list[int] | None = None
        changed = False
        async for received in self.upstream.execute(all_uids_command(self.upstream)):
            response = received.response
            if isinstance(response, DataResponse) and response.name in ("SEARCH", "ESEARCH"):
                found = uids_from_search(response)
            elif is_final(response):
                if response.status != "OK":
                    return
            else:
                changed |= changes_messages(response)
                self.relay(received)
        if found is not None and not changed:
            self.mailbox.adopt_uids(found)

    async def _internal(self, command: Command, asked: frozenset[str]
                        ) -> tuple[list[tuple[int, dict[str, Token]]], StatusResponse]:
        """Run one of the proxy's own commands. Returns its FETCH answers (those with a UID)
        and its tagged status; everything else, and FLAGS/MODSEQ it did not ask for, is
        passed on to the client as the unsolicited news it is."""
        answers: list[tuple[int, dict[str, Token]]] = []
        final: StatusResponse | None = None
        async for received in self.upstream.execute(command):
            response = received.response
            if is_final(response):
                final = response
                continue
            items = fetch_attributes(response)
            if items is not None and "UID" not in items and self.uid_by_sequence:
                items = self._with_known_uid(response, items)
            if items is None or "UID" not in items or not isinstance(response, DataResponse) \
                    or response.number is None:
                self.relay(received)
                continue
            news = [(k, items.pop(k)) for k in UNSOLICITED_STATE if k in items and k not in asked]
            if news:
                self.relay(_fetch_news(response.number, items["UID"], news))
                uid = number_value(items["UID"])
                if uid is not None:  # newer than a row read before: the answer says it too
                    self.news.setdefault(uid, {}).update(news)
            answers.append((response.number, items))
        assert final is not None
        return answers, final

    def _with_known_uid(self, response: Response | None, items: dict[str, Token]
                        ) -> dict[str, Token]:
        """A FETCH response without UID (a server quirk), given the UID the session knows
        for its sequence number."""
        seq = response.number if isinstance(response, DataResponse) else None
        if seq is not None and 0 < seq <= len(self.mailbox.uids):
            items["UID"] = Atom(str(self.mailbox.uids[seq - 1]))
        return items

    async def _answer(self, rows: list[Row], request: FetchRequest, sets_seen: bool,
                      by_uid: bool) -> None:
        streams = await self._streams(rows, request)
        self.from_cache.update(streams)
        try:
            wanted = [r.uid for r in rows if r.uid not in streams]
            settled: list[int] = []
            if self.filtered is not None:
                bodies = await self.message_bytes(wanted)
            else:
                bodies, settled = await self._bodies(wanted)
            # Large bodies just fetched (by this session, or by another one it waited for)
            # are in the cache now: serve them from there too, rather than holding them
            # while a slow client reads.
            fresh = [r for r in rows if r.uid in bodies or r.uid in settled]
            await self._learn_sizes(fresh, bodies)
            fetched = await self._streams(fresh, request, bodies)
            for uid in fetched:
                bodies.pop(uid, None)
            streams.update(fetched)
            unread = [uid for uid in settled if uid not in streams]
            if unread:
                bodies.update(await self._cached_or_fetched(unread))
            if sets_seen:
                await self._mark_seen([r for r in rows if r.uid in bodies or r.uid in streams])
            whole = all(_whole_message(i) for i in request.items)
            structures = {} if whole else await self._structures(bodies)
            for row in rows:  # the session gathers the lines into few socket writes
                for name, value in self.news.get(row.uid, {}).items():
                    if name in row.state:
                        row.state[name] = value
                stream = streams.get(row.uid)
                if stream is not None:
                    await self._stream_response(row, request.items, stream, by_uid)
                    continue
                raw = bodies.get(row.uid)
                if raw is None:
                    continue  # expunged meanwhile: the upstream had no body to give
                render = _Renderer(raw, structures.get(row.uid, b""), self.render_hook)
                self.write(_fetch_response(row, request.items, render, by_uid))
            await self.drain()
        finally:
            for stream in streams.values():
                stream.close()

    async def _streams(self, rows: list[Row], request: FetchRequest,
                       fetched: dict[int, bytes] | None = None) -> dict[int, MessageStream]:
        """Cached large messages whose answer needs nothing but their whole bytes, stored
        exactly as served (CRLF, no NUL): those are copied from the cache file to the client
        in chunks, never held in memory whole. ``fetched``: bodies just read from upstream
        (checked as they are; the others are checked in the index)."""
        if self.cache is None or not all(_whole_message(i) for i in request.items) \
                or sum(map(_is_whole_body, request.items)) != 1:
            return {}  # streamed: the one body literal of the answer
        fetched = fetched or {}
        large = [r.uid for r in rows if r.size >= STREAM_THRESHOLD]
        if self.filtered is not None and large:  # only what the chain left as it was
            large = await self.filtered.unchanged(large)
        plain = {uid for uid in large if uid in fetched and served_as_stored(fetched[uid])}
        unknown = [uid for uid in large if uid not in fetched]
        if unknown:
            index = await self.cache.aindex(unknown)
            plain.update(uid for uid, entry in index.items()
                         if entry.structure and stored_as_served(entry.structure, entry.size))
        out: dict[int, MessageStream] = {}
        for uid in large:
            if uid in plain:
                stream = await self.cache.aopen(uid)
                if stream is not None:
                    out[uid] = stream
        return out

    async def _learn_sizes(self, rows: list[Row], bodies: dict[int, bytes]) -> None:
        """Sizes of rows that had none (answered without the upstream: not cached then)."""
        unknown = [r for r in rows if not r.size]
        for row in unknown:
            row.size = len(bodies.get(row.uid, b""))
        rest = [r for r in unknown if not r.size]
        if rest and self.cache is not None:
            index = await self.cache.aindex([r.uid for r in rest], structure=False)
            for row in rest:
                entry = index.get(row.uid)
                row.size = entry.size or 0 if entry is not None else 0

    async def _stream_response(self, row: Row, items: tuple[FetchItem, ...],
                               stream: MessageStream, by_uid: bool) -> None:
        def render(item: FetchItem) -> tuple[bytes, bytes]:
            if item.name == "RFC822.SIZE":
                return b"RFC822.SIZE", str(stream.size).encode()
            return (b"RFC822" if item.name == "RFC822" else b"BODY[]"), STREAMED

        head, _, tail = _fetch_response(row, items, render, by_uid).partition(STREAMED)
        self.write(head + b"{%d}\r\n" % stream.size)
        assert self.cache is not None
        sent = 0
        while sent < stream.size:
            chunk = await self.cache.aread(stream, min(STREAM_CHUNK, stream.size - sent))
            if not chunk:
                raise UpstreamUnavailable("cached message could not be read")
            self.write(chunk)
            sent += len(chunk)
            await self.drain()
        self.write(tail)

    async def message_bytes(self, uids: list[int]) -> dict[int, bytes]:
        """The bytes the client sees of ``uids`` (filtered with a chain), cached or fetched."""
        if self.filtered is not None:
            return await self.filtered.bodies(uids, self._raw_bodies)
        return await self._raw_bodies(uids)

    async def _raw_bodies(self, uids: list[int]) -> dict[int, bytes]:
        """The upstream's bytes of ``uids``, those other sessions were fetching included."""
        found, settled = await self._bodies(uids)
        if settled:
            found.update(await self._cached_or_fetched(settled))
        return found

    async def _bodies(self, uids: list[int]) -> tuple[dict[int, bytes], list[int]]:
        """The bodies of ``uids``, from the cache or the upstream; and the UIDs another
        session was fetching meanwhile: cached now, left for the caller to read or stream."""
        found: dict[int, bytes] = {}
        if self.cache is not None:
            for uid, data in (await self.cache.aget_many(uids)).items():
                if data is not None:
                    found[uid] = data
            self.from_cache.update(found)
        missing = [u for u in uids if u not in found]
        if not missing:
            return found, []
        self.missed = True
        if self.cache is None:
            return await self._fetch_bodies(missing), []
        # Single flight (cache/inflight.py): fetch what no other session of the user is
        # fetching; wait for the others' fetches.
        mine, theirs = self.cache.claim(missing)
        try:
            found.update(await self._fetch_bodies(mine) if mine else {})
        finally:
            self.cache.release(mine)
        await wait_all(theirs)
        return found, [u for u in missing if u not in found and u not in mine]

    async def _cached_or_fetched(self, uids: list[int]) -> dict[int, bytes]:
        """Bodies another session just fetched: from the cache, or from the upstream if
        that fetch failed."""
        assert self.cache is not None
        found = {uid: data for uid, data in (await self.cache.aget_many(uids)).items()
                 if data is not None}
        still = [u for u in uids if u not in found]
        if still:
            found.update(await self._fetch_bodies(still))
        return found

    async def _fetch_bodies(self, uids: list[int]) -> dict[int, bytes]:
        """``UID FETCH uids (BODY.PEEK[])`` in one command; the bodies go into the cache."""
        command = Command("", "FETCH", (Atom(uid_set(uids)),
                                        ParenList((Atom("UID"), Atom("BODY.PEEK[]")))), True)
        answers, _ = await self._internal(command, frozenset({"UID", "BODY[]"}))
        out: dict[int, bytes] = {}
        for _, items in answers:
            uid, body = number_value(items.get("UID")), items.get("BODY[]")
            if uid is not None and isinstance(body, (Literal, Quoted)):
                out[uid] = body.value
        if self.cache is not None:
            for uid, data in out.items():
                await self.cache.aput(uid, data)
            # Parsed once, now: the index keeps the structure beside the bytes.
            await self.cache.aupdate_index(
                IndexEntry(uid, size=len(data), internaldate=None, structure=structure_blob(data))
                for uid, data in out.items())
        return out

    async def _mark_seen(self, rows: list[Row]) -> None:
        unseen = [r for r in rows if SEEN not in _flag_names(r.state.get("FLAGS"))]
        if not unseen:
            return
        # Not .SILENT: the upstream answers with the new FLAGS, which stay its own.
        command = Command("", "STORE", (Atom(uid_set([r.uid for r in unseen])),
                                        Atom("+FLAGS"), ParenList((Atom("\\Seen"),))), True)
        by_uid = {r.uid: r for r in unseen}
        answers, _ = await self._internal(command, frozenset({"UID", *UNSOLICITED_STATE}))
        for seq, items in answers:
            row = by_uid.get(number_value(items.get("UID")) or 0)
            if row is not None and "FLAGS" in items:
                row.state["FLAGS"] = items["FLAGS"]
                row.flags_changed = True
            else:  # a change to another message: news for the client
                self.relay(_fetch_news(seq, items["UID"], list(items.items())))

    async def _structures(self, bodies: dict[int, bytes]) -> dict[int, bytes]:
        """The parsed MIME structure of each message: from the index (written when the body
        was fetched), else parsed now."""
        if self.filtered is not None:
            return await self.filtered.structures(bodies)
        known: dict[int, bytes] = {}
        if self.cache is not None and bodies:
            known = self.cache.structures_in_memory(bodies)
            rest = [uid for uid in bodies if uid not in known]
            if rest:
                index = await self.cache.aindex(rest)
                known.update((uid, e.structure) for uid, e in index.items() if e.structure)
        for uid, raw in bodies.items():
            if uid not in known:
                known[uid] = structure_blob(raw)
        return known

    # --- prefetch ----------------------------------------------------------------------------

    next_prefetch: tuple[int, int] | None = None

    def _prefetch_range(self, rows: list[Row]) -> tuple[int, int] | None:
        """The sequence numbers after the last message read cold, up to prefetch_count."""
        exists = self.mailbox.exists
        if not (self.missed and self.prefetch_count and rows and self.cache and exists):
            return None
        first = max(r.seq for r in rows) + 1
        last = min(exists, first + self.prefetch_count - 1)
        return (first, last) if first <= last else None

    async def prefetch(self, first: int, last: int) -> int:
        """Fetch and cache the bodies of messages first..last not cached yet; returns how
        many. Runs after the client's answer, in the background; what the upstream says
        meanwhile is kept for the client's next command (see ``UpstreamConnection.carry``)."""
        if self.cache is None:
            return 0
        rows, final = await self._state_rows(
            Command("", "FETCH", (Atom(f"{first}:{last}"),
                                  ParenList((Atom("UID"), Atom("RFC822.SIZE"))))),
            frozenset({"UID", "RFC822.SIZE"}))
        if final.status != "OK":
            return 0
        cached = set((await self.cache.aindex([r.uid for r in rows], structure=False)).keys())
        wanted = [r for r in rows if r.uid not in cached]
        done = 0
        for window in _windows(wanted):
            mine, _ = self.cache.claim(r.uid for r in window)  # others' fetches: theirs
            try:
                fetched = await self._fetch_bodies(mine) if mine else {}
                done += len(fetched)
                self.prefetched += fetched
            finally:
                self.cache.release(mine)
            if self.filtered is not None and fetched:  # filtered ahead too: reads stay warm
                await self.filtered.bodies(list(fetched), _known(fetched))
        return done


# Items Dovecot writes before the others ("buffered" handlers in its imap-fetch.c): a client
# comparing with the upstream sees the same order.
BUFFERED = frozenset({"UID", "FLAGS", "INTERNALDATE", "MODSEQ", "RFC822.SIZE", "ENVELOPE",
                      "BODY", "BODYSTRUCTURE", "BINARY.SIZE"})


def _fetch_response(row: Row, items: tuple[FetchItem, ...],
                    render: Callable[[FetchItem], tuple[bytes, bytes]], by_uid: bool) -> bytes:
    """``* n FETCH (...)`` in Dovecot's order: UID first (clients expect it early), then the
    small items as asked, then FLAGS when this fetch set \\Seen, then sections as asked."""
    small: dict[bytes, bytes] = {}
    large: dict[bytes, bytes] = {}
    if by_uid or any(i.name == "UID" for i in items):
        small[b"UID"] = str(row.uid).encode()
    for item in items:
        if item.is_state:
            token = row.state.get(item.name)
            if token is not None and item.name != "UID":
                small.setdefault(item.name.encode(), serialize_tokens((token,)))
            continue
        key, value_bytes = render(item)
        is_small = item.name in BUFFERED and item.section is None or item.name == "BINARY.SIZE"
        (small if is_small else large).setdefault(key, value_bytes)
    if row.flags_changed and "FLAGS" in row.state:
        small.setdefault(b"FLAGS", serialize_tokens((row.state["FLAGS"],)))
    for key, value in large.items():
        small.setdefault(key, value)
    body = b" ".join(key + b" " + value for key, value in small.items())
    return b"* %d FETCH (%b)\r\n" % (row.seq, body)


def stored_as_served(structure: bytes, size: int | None) -> bool:
    """From a message's index entry: its stored bytes are its BODY[] (no bare LF, no NUL)."""
    root = load_structure(structure)
    return size is not None and root.vsize == size and not root.flags & HAS_NULS


class _Renderer:
    """Content items of one message; its structure is loaded from the blob on first use."""

    def __init__(self, raw: bytes, structure: bytes, hook: RenderHook | None = None) -> None:
        self.raw = raw
        self.structure = structure
        self.hook = hook
        self._part: Part | None = None

    def __call__(self, item: FetchItem) -> tuple[bytes, bytes]:
        rendered = self._render(item)
        return rendered if self.hook is None else self.hook(item, rendered)

    def _render(self, item: FetchItem) -> tuple[bytes, bytes]:
        if item.name == "RFC822.SIZE" and self.structure:
            # The size as served, from the parsed structure: no rescan of the bytes.
            return b"RFC822.SIZE", b"%d" % self._root().vsize
        quick = whole_message_item(item, self.raw)
        if quick is not None:
            return quick
        return render_item(item, self.raw, self._root())

    def _root(self) -> Part:
        if self._part is None:
            self._part = load_structure(self.structure)
        return self._part


def _whole_message(item: FetchItem) -> bool:
    """An item answered by the message bytes alone (or their size): streamable."""
    return item.is_state or item.name == "RFC822.SIZE" or _is_whole_body(item)


def _is_whole_body(item: FetchItem) -> bool:
    """BODY[] or RFC822: the whole message as a literal."""
    return item.name == "RFC822" or (
        item.name in ("BODY", "BODY.PEEK") and item.section == "" and item.partial is None)


def _known(bodies: dict[int, bytes]) -> Callable[[list[int]], Awaitable[dict[int, bytes]]]:
    async def given(uids: list[int]) -> dict[int, bytes]:
        return {uid: bodies[uid] for uid in uids if uid in bodies}
    return given


def _fetch_news(seq: int, uid: Token, items: list[tuple[str, Token]]) -> Received:
    """``* seq FETCH (UID u FLAGS (...) ...)``: state news met inside the proxy's own command."""
    tokens: list[Token] = [Atom("UID"), uid]
    for name, value in items:
        if name != "UID":
            tokens += [Atom(name), value]
    response = DataResponse(seq, "FETCH", (ParenList(tuple(tokens)),))
    return Received(serialize_response(response), response)


def _flag_names(token: Token | None) -> set[str]:
    if not isinstance(token, ParenList):
        return set()
    return {t.upper() for t in token.items if isinstance(t, Atom)}


def _windows(rows: list[Row]) -> Iterator[list[Row]]:
    return batches(rows, WINDOW_MESSAGES, WINDOW_BYTES, lambda row: row.size)
