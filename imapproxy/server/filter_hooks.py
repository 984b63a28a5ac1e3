"""Where a session meets the filter chain, the client fixups and the server quirks.

``Session`` calls a handful of hooks (command in, response out, content FETCH, login); all
the logic lives here so the session stays about IMAP flow. See docs/filters.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..config import Config
from ..errors import CommandFailed
from ..filtering.api import FilterContext, FilterError
from ..filtering.chain import EMPTY, FilterChain, Observer
from ..filtering.content import FilteredContent, MemoryVariants
from ..filtering.search import ContentKey, SearchableMessage, content_keys, has_content_keys
from ..filtering.search import rewrite as rewrite_search
from ..filtering.selection import FilterCatalog, Selection
from ..protocol.command import Command
from ..protocol.fetch import FetchItem, FetchRequest
from ..protocol.response import (
    DataResponse,
    fetch_attributes,
    is_final,
    number_value,
    serialize_response,
)
from ..protocol.sets import batches, uid_set
from ..protocol.tokens import Atom, Literal, ParenList, Quoted, Token, string_value
from ..upstream.connection import Received, UpstreamConnection
from .fetch import WINDOW_BYTES, WINDOW_MESSAGES, ContentFetch

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

Handler = Callable[[Command], Awaitable[object]]
NEWS_COMMANDS = frozenset({"NOOP", "CHECK", "IDLE"})  # delay-newmail lets news out in these
# Commands whose arguments at these positions are mailbox names (tb-extra-mailbox-sep).
MAILBOX_ARGS: dict[str, tuple[int, ...]] = {
    "SELECT": (0,), "EXAMINE": (0,), "CREATE": (0,), "DELETE": (0,), "RENAME": (0, 1),
    "SUBSCRIBE": (0,), "UNSUBSCRIBE": (0,), "STATUS": (0,), "APPEND": (0,), "COPY": (1,),
    "MOVE": (1,),
}
# Bodies held at once while a SEARCH reads the mailbox: as for FETCH (server/fetch.py).
SEARCH_WINDOW = (WINDOW_MESSAGES, WINDOW_BYTES)
# Where a FETCH response starts in the engine's writes (several responses may come in one
# write; a match inside a literal only lets held news out early, which is harmless).
FETCH_START = re.compile(rb"(?:\A|\r\n)\* (\d{1,10}) FETCH ")


@dataclass
class Filtering:
    """What the whole process shares: the built filters and the in-memory variants."""

    catalog: FilterCatalog
    variants: MemoryVariants = field(default_factory=MemoryVariants)
    quirks: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: Config, observe: Observer | None = None) -> Filtering:
        """``observe(filter name, ok)`` after each filter run (metrics)."""
        return cls(FilterCatalog(config, observe), MemoryVariants(config.cache.memory_only_size),
                   frozenset(config.upstream.quirks))


class SessionHooks:
    def __init__(self, session: Session, filtering: Filtering | None) -> None:
        self.session = session
        self.filtering = filtering or Filtering.from_config(session.config)
        self.quirks = self.filtering.quirks
        self.command = ""  # the client's command being handled
        self._selected: tuple[tuple[str, str], Selection] | None = None
        self._held: dict[str, Received] = {}  # delay-newmail: EXISTS / RECENT not yet told
        self._told = 0  # delay-newmail: the message count the client was last told
        self._separator: str | None = None
        self._listed: dict[bytes, set[str]] | None = None  # tb-lsub-flags, during an LSUB
        self._content: tuple[tuple[bytes, int, str], FilteredContent] | None = None

    # --- what this session gets ----------------------------------------------------------

    @property
    def selection(self) -> Selection:
        s = self.session
        key = (s.user, s.client_id.get("name", ""))
        if self._selected is None or self._selected[0] != key:
            chosen = self.filtering.catalog.select(s.listener, s.user, s.client_id)
            if s.user and (chosen.chain or chosen.fixups):
                log.info("filters user=%s client=%s chain=%s fixups=%s", s.user, key[1] or "-",
                         ",".join(chosen.chain.names) or "-",
                         ",".join(sorted(chosen.fixups)) or "-")
            self._selected = (key, chosen)
        return self._selected[1]

    @property
    def chain(self) -> FilterChain:
        return self.selection.chain if self.session.user else EMPTY

    def fixup(self, name: str) -> bool:
        return name in self.selection.fixups

    def context(self, mailbox: bytes = b"") -> FilterContext:
        return FilterContext(self.session.user, mailbox.decode("utf-8", "surrogateescape"),
                             0, dict(self.session.client_id))

    # --- login and commands --------------------------------------------------------------

    def after_login(self, upstream: UpstreamConnection) -> None:
        if "no-uidplus" in self.quirks:
            upstream.capabilities = upstream.capabilities - {"UIDPLUS"}

    async def rewrite(self, command: Command) -> Command:
        """The command as the upstream should see it; lets held news out first."""
        self.command = command.name
        if command.name in NEWS_COMMANDS:
            self.flush_news()
        elif command.name in ("SELECT", "EXAMINE", "CLOSE", "UNSELECT"):
            self._held.clear()  # news of the mailbox being left
        positions = MAILBOX_ARGS.get(command.name)
        if positions and self.session.upstream is not None and \
                self.fixup("tb-extra-mailbox-sep"):
            separator = await self._hierarchy_separator()
            args = list(command.args)
            for i in positions:
                if i < len(args):
                    args[i] = _strip_separator(args[i], separator)
            command = replace(command, args=tuple(args))
        return command

    def handler(self, command: Command) -> Handler | None:
        """A local handler this session's filters need for ``command``, if any."""
        if command.name == "SEARCH" and self.chain and has_content_keys(command.args):
            return self.search
        if command.name == "APPEND" and self.chain.appends:
            return self.append
        if command.name == "LSUB" and self.fixup("tb-lsub-flags"):
            return self.lsub
        return None

    def size_from_bytes(self, request: FetchRequest) -> bool:
        """The FETCH asks RFC822.SIZE, which must be the length of the bytes served (filtered
        ones, or a server's whose RFC822.SIZE is wrong), so it is content here."""
        return any(item.name == "RFC822.SIZE" for item in request.items) and (
            bool(self.chain) or "rfc822-size-from-bytes" in self.quirks)

    # --- content -------------------------------------------------------------------------

    async def content(self) -> FilteredContent | None:
        """The filtered messages of the selected mailbox; None without a chain."""
        s = self.session
        box = s.mailbox
        if not self.chain or box is None or box.uidvalidity is None:
            return None
        key = (box.name, box.uidvalidity, self.chain.identity)
        if self._content is None or self._content[0] != key:
            user_key = f"{s.config.upstream.host}:{s.config.upstream.port}/{s.user}"
            opened = await FilteredContent.open(self.chain, self.context(box.name), user_key,
                                                box.uidvalidity, self.filtering.variants,
                                                s.user_cache)
            self._content = (key, opened)
        return self._content[1]

    def render_hook(self, item: FetchItem, rendered: tuple[bytes, bytes]
                    ) -> tuple[bytes, bytes]:
        """netscape-eoh: a HEADER.FIELDS answer always ends with the empty line."""
        name, value = rendered
        section = (item.section or "").upper()
        if ".FIELDS" not in section or item.partial is not None \
                or not self.fixup("netscape-eoh"):
            return rendered
        head, sep, data = value.partition(b"}\r\n")
        if value == b'""':
            head, sep, data = b"{", b"}\r\n", b""
        if not sep or not head.startswith(b"{") or data.endswith(b"\r\n\r\n") \
                or data == b"\r\n":
            return rendered
        data += b"\r\n" if data.endswith(b"\r\n") or not data else b"\r\n\r\n"
        return name, b"{%d}\r\n" % len(data) + data

    # --- responses -----------------------------------------------------------------------

    def on_relay(self, item: Received) -> Received | None:
        """The response as this client gets it; None when it is held back for now."""
        response = item.response
        if not isinstance(response, DataResponse):
            return item
        if (self._held or response.name in ("EXISTS", "EXPUNGE")) \
                and self._delay_news(response, item):
            return None
        if response.name == "FETCH" and self.fixup("uid-first"):
            return _uid_first(item, response)
        if response.name in ("LIST", "LSUB") and len(response.args) == 3:
            self._learn_separator(response.args[1])
            if response.name == "LSUB" and self._listed is not None:
                return _noselect_unless_listed(item, response, self._listed)
        return item

    def _delay_news(self, response: DataResponse, item: Received) -> bool:
        """delay-newmail: True when ``response`` is held back. A response naming a message
        the client was not told of yet lets the held news out first."""
        if not self.fixup("delay-newmail"):
            return False
        number = response.number or 0
        if response.name in ("EXISTS", "RECENT") and self.command not in NEWS_COMMANDS \
                and self.session.mailbox is not None:
            if response.name == "EXISTS" and number <= self._told:
                self._held.pop("EXISTS", None)  # nothing new to tell after all
                self._told = number
                return False
            self._held[response.name] = item
            return True
        if response.name == "EXISTS":
            self._told = number
        elif response.name == "EXPUNGE":
            self._told = max(0, self._told - 1)
        elif number > self._told:
            self.flush_news()
        return False

    def flush_news(self) -> None:
        held, self._held = self._held, {}
        for name in ("EXISTS", "RECENT"):
            if name in held:
                self.session.write(held[name].raw)
                if name == "EXISTS":
                    self._told = held[name].response.number or 0  # type: ignore[union-attr]

    def fetch_writer(self, write: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """``write`` for the content engine's own FETCH answers: with delay-newmail, a
        FETCH of a message the client was not told of yet lets the held news out first."""
        if not self.fixup("delay-newmail"):
            return write

        def guarded(data: bytes) -> None:
            if self._held and any(int(m.group(1)) > self._told
                                  for m in FETCH_START.finditer(data)):
                self.flush_news()
            write(data)
        return guarded

    # --- local handlers ------------------------------------------------------------------

    async def search(self, command: Command) -> None:
        """SEARCH with content keys on filtered content (docs/filters.md)."""
        s = self.session
        assert s.upstream is not None and s.mailbox is not None
        engine = ContentFetch(s.upstream, s.mailbox_cache, s.mailbox, s.relay, s.write,
                              s.drain, filtered=await self.content())
        keys = list(dict.fromkeys(content_keys(command.args)))
        matched: dict[ContentKey, list[int]] = {key: [] for key in keys}
        for window in _size_windows(await self._all_sizes()):
            bodies = await engine.message_bytes(window)
            for uid, raw in sorted(bodies.items()):
                message = SearchableMessage(raw)
                for key in keys:
                    if message.matches(key):
                        matched[key].append(uid)
        def uid_key(key: ContentKey) -> list[Token]:
            if not matched[key]:
                return [Atom("NOT"), Atom("ALL")]
            return [Atom("UID"), Atom(uid_set(matched[key]))]

        await s.forward(replace(command, args=rewrite_search(command.args, uid_key)))

    async def append(self, command: Command) -> None:
        """APPEND with the chain's append filters applied to the message literal; the OK
        is still the upstream's."""
        args = list(command.args)
        message = args[-1] if len(args) >= 2 else None
        if isinstance(message, (Literal, Quoted)):
            context = self.context(string_value(args[0]))
            try:
                new = await asyncio.to_thread(self.chain.apply_append, message.value, context)
            except FilterError:
                raise CommandFailed("The message could not be prepared for storing "
                                    "(filter failed); nothing was stored", "CANNOT") from None
            args[-1] = replace(message, value=new)
        await self.session.forward(replace(command, args=tuple(args)))

    async def lsub(self, command: Command) -> None:
        """tb-lsub-flags: LIST the same names first; what it does not show as selectable
        gets \\Noselect in the LSUB answer."""
        s = self.session
        assert s.upstream is not None
        listed: dict[bytes, set[str]] = {}
        async for received in s.upstream.execute(Command("", "LIST", command.args)):
            response = received.response
            if isinstance(response, DataResponse) and response.name == "LIST" \
                    and len(response.args) == 3 and isinstance(response.args[0], ParenList):
                listed[string_value(response.args[2])] = _flag_set(response.args[0])
            elif not is_final(response):
                s.relay(received)
        self._listed = listed
        try:
            await s.forward(command)
        finally:
            self._listed = None

    # --- helpers -------------------------------------------------------------------------

    async def _all_sizes(self) -> list[tuple[int, int]]:
        """(UID, upstream size) of every message of the selected mailbox now, with
        ``UID FETCH 1:* (RFC822.SIZE)`` (the upstream's news passed on)."""
        upstream = self.session.upstream
        assert upstream is not None
        found: list[tuple[int, int]] = []
        command = Command("", "FETCH", (Atom("1:*"), ParenList((Atom("RFC822.SIZE"),))), True)
        async for received in upstream.execute(command):
            response = received.response
            items = fetch_attributes(response)
            uid = number_value(items.get("UID")) if items else None
            if items is not None and uid is not None and "RFC822.SIZE" in items:
                found.append((uid, number_value(items["RFC822.SIZE"]) or 0))
                leftover = {k: v for k, v in items.items() if k not in ("UID", "RFC822.SIZE")}
                if leftover:  # FLAGS news riding along: the client's
                    self.session.relay(received)
            elif is_final(response):
                if response.status != "OK":
                    raise CommandFailed("The mailbox cannot be searched now")
            else:
                self.session.relay(received)
        return sorted(found)

    async def _hierarchy_separator(self) -> str:
        if self._separator is None:
            upstream = self.session.upstream
            assert upstream is not None
            empty = Quoted(b"")
            async for received in upstream.execute(Command("", "LIST", (empty, empty))):
                response = received.response
                if isinstance(response, DataResponse) and response.name == "LIST" \
                        and len(response.args) == 3:
                    self._learn_separator(response.args[1])
                elif not is_final(response):
                    self.session.relay(received)
        return self._separator or ""

    def _learn_separator(self, token: Token) -> None:
        if isinstance(token, (Quoted, Literal)) and len(token.value) == 1:
            self._separator = token.value.decode("latin-1")


def _size_windows(sizes: list[tuple[int, int]]) -> Iterator[list[int]]:
    """UIDs in windows of at most SEARCH_WINDOW messages and bytes."""
    for window in batches(sizes, *SEARCH_WINDOW, size_of=lambda pair: pair[1]):
        yield [uid for uid, _ in window]


def _strip_separator(token: Token, separator: str) -> Token:
    if not separator:
        return token
    sep = separator.encode("latin-1")
    if isinstance(token, Atom) and len(token.value) > 1 and token.value.endswith(separator):
        return Atom(token.value[:-1])
    if isinstance(token, (Quoted, Literal)) and len(token.value) > 1 \
            and token.value.endswith(sep):
        return replace(token, value=token.value[:-1])
    return token


def _flag_set(flags: ParenList) -> set[str]:
    return {t.value.upper() for t in flags.items if isinstance(t, Atom)}


def _noselect_unless_listed(item: Received, response: DataResponse,
                            listed: dict[bytes, set[str]]) -> Received:
    flags, separator, name = response.args
    if not isinstance(flags, ParenList):
        return item
    shown = listed.get(string_value(name))
    if "\\NOSELECT" in _flag_set(flags) or (
            shown is not None and not shown & {"\\NOSELECT", "\\NONEXISTENT"}):
        return item
    new = replace(response, args=(ParenList((*flags.items, Atom("\\Noselect"))), separator,
                                  name))
    return Received(serialize_response(new), new)


def _uid_first(item: Received, response: DataResponse) -> Received:
    if len(response.args) != 1 or not isinstance(response.args[0], ParenList):
        return item
    tokens = list(response.args[0].items)
    for i in range(2, len(tokens) - 1, 2):
        name = tokens[i]
        if isinstance(name, Atom) and name.value.upper() == "UID":
            tokens[0:0] = tokens[i:i + 2]
            del tokens[i + 2:i + 4]
            new = replace(response, args=(ParenList(tuple(tokens)),))
            return Received(serialize_response(new), new)
    return item
