"""An IMAP account as migration sees it: a list of mailboxes, their UID state, and messages
fetched in batches. Built on the proxy's own upstream connection (imapproxy/upstream/) and
codec, so one parser serves both; answers are read tolerantly (responses.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import UpstreamLost, UpstreamUnavailable
from ..protocol.command import Command
from ..protocol.response import (
    DataResponse,
    Response,
    StatusResponse,
    fetch_attributes,
    is_final,
    number_value,
)
from ..protocol.sets import uid_set
from ..protocol.tokens import Atom, Literal, ParenList, Quoted, Token, astring_token
from ..server.mailbox import all_uids_command, uids_from_search
from ..upstream.backoff import Backoff
from ..upstream.breaker import CircuitBreaker
from ..upstream.connection import UpstreamConnection
from ..upstream.health import UserHealth
from .endpoint import ImapEndpoint
from .errors import ConnectionLost, MigrateError
from .model import MailboxInfo, MailboxStatus, Message, MessageMeta
from .responses import Answer, expand_set, is_throttled, meta_from, parse_list_entry, status_from

log = logging.getLogger(__name__)

META_ITEMS = ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE")
THROTTLE_ROUNDS = 3  # a command still [THROTTLED] after the connection's own retries is
                     # sent again this often (the back-off keeps growing, up to 16 s)


@dataclass
class Appended:
    """What an APPEND did, per source UID."""

    uidvalidity: int | None = None
    uids: dict[int, int] = field(default_factory=dict)  # source UID -> new UID (APPENDUID)
    stored: list[int] = field(default_factory=list)  # accepted, in APPEND order
    refused: dict[int, str] = field(default_factory=dict)  # source UID -> the server's answer


def mailbox_token(name: str) -> Token:
    return astring_token(name.encode("utf-8"))


class ImapAccount:
    """One logged-in connection. On ``[THROTTLED]`` the connection itself waits (the
    upstream back-off: 50 ms doubling to 16 s, like imapc's ``throttle``) and re-sends;
    ``command`` adds a few more rounds, since a migration would rather wait than fail."""

    def __init__(self, conn: UpstreamConnection, backoff: Backoff | None = None) -> None:
        self.conn = conn
        self.backoff = backoff or Backoff()
        # No breaker (it never opens with 0 failures): a migration stops on errors itself.
        conn.health = UserHealth(self.backoff, CircuitBreaker(failures=0), slow_after=0)
        self.selected: str | None = None

    @classmethod
    async def connect(cls, endpoint: ImapEndpoint, password: str,
                      backoff: Backoff | None = None) -> ImapAccount:
        try:
            conn = await UpstreamConnection.open(endpoint.upstream)
            if not conn.preauth:
                status = await conn.login(endpoint.user.encode(), password.encode())
                if status.status != "OK":
                    conn.close()
                    text = status.text.decode("utf-8", "replace")
                    raise MigrateError(f"{endpoint}: login failed: {text}")
        except (UpstreamLost, UpstreamUnavailable) as exc:
            raise MigrateError(f"{endpoint}: {exc}") from None
        return cls(conn, backoff)

    @property
    def capabilities(self) -> frozenset[str]:
        return self.conn.capabilities

    async def command(self, command: Command) -> Answer:
        """Run *command*; retried while the server answers ``[THROTTLED]``."""
        for _round in range(THROTTLE_ROUNDS):
            untagged: list[Response] = []
            final: StatusResponse | None = None
            try:
                async for item in self.conn.execute(command):
                    if item.response is None:
                        log.warning("skipping an unreadable response: %r", item.raw[:200])
                    elif is_final(item.response):
                        final = item.response
                    else:
                        untagged.append(item.response)
            except (UpstreamLost, UpstreamUnavailable) as exc:
                raise ConnectionLost(f"{command.full_name}: {exc}", self) from None
            assert final is not None
            if final.status != "OK" and is_throttled(final.code, final.text):
                log.info("server still throttling %s (back-off %.2f s)", command.full_name,
                         self.backoff.delay())
                if final.code != "THROTTLED":  # only in the text: the connection did not see it
                    self.backoff.throttled()
                continue
            return Answer(untagged, final)
        raise MigrateError(f"{command.full_name}: still throttled after {THROTTLE_ROUNDS} "
                           "rounds of retries")

    async def checked(self, command: Command) -> Answer:
        answer = await self.command(command)
        if not answer.ok:
            raise MigrateError(f"{command.full_name} failed: {answer.describe()}")
        return answer

    # --- mailboxes ------------------------------------------------------------------------

    async def list_mailboxes(self) -> list[MailboxInfo]:
        """Every mailbox (LIST "" "*"), marked subscribed from LSUB (or, on servers that
        dropped LSUB like IMAP4rev2 ones, ``LIST (SUBSCRIBED)`` of LIST-EXTENDED)."""
        listed = await self.checked(Command("", "LIST", (Quoted(b""), Quoted(b"*"))))
        subs = await self.subscriptions()
        out: list[MailboxInfo] = []
        for response in listed.data("LIST"):
            entry = parse_list_entry(response)
            if entry is not None:
                out.append(MailboxInfo(entry.name, entry.delimiter, entry.attributes,
                                       entry.name in subs))
        known = {m.name for m in out}
        # Subscriptions to mailboxes that do not exist are kept too (clients may rely on them).
        out.extend(MailboxInfo(name, None, frozenset({"\\NONEXISTENT"}), True)
                   for name in sorted(subs - known))
        return out

    async def subscriptions(self, *, use_lsub: bool = True) -> set[str]:
        if use_lsub:
            answer = await self.command(Command("", "LSUB", (Quoted(b""), Quoted(b"*"))))
            if answer.ok:
                return {e.name for e in map(parse_list_entry, answer.data("LSUB"))
                        if e is not None}
        if "LIST-EXTENDED" not in self.capabilities:
            log.warning("the server has neither LSUB nor LIST-EXTENDED: no subscriptions")
            return set()
        answer = await self.checked(Command("", "LIST", (
            ParenList((Atom("SUBSCRIBED"),)), Quoted(b""), Quoted(b"*"))))
        return {e.name for e in map(parse_list_entry, answer.data("LIST"))
                if e is not None and "\\SUBSCRIBED" in e.attributes}

    async def delimiter(self) -> str | None:
        """The hierarchy separator (``LIST "" ""``); None for a flat server."""
        answer = await self.command(Command("", "LIST", (Quoted(b""), Quoted(b""))))
        for response in answer.data("LIST"):
            entry = parse_list_entry(response)
            if entry is not None:
                return entry.delimiter
        return None

    async def examine(self, name: str) -> MailboxStatus:
        args: tuple[Token, ...] = (mailbox_token(name),)
        if "CONDSTORE" in self.capabilities:
            args += (ParenList((Atom("CONDSTORE"),)),)
        answer = await self.checked(Command("", "EXAMINE", args))
        self.selected = name
        return status_from(answer)

    async def select(self, name: str) -> MailboxStatus:
        answer = await self.checked(Command("", "SELECT", (mailbox_token(name),)))
        self.selected = name
        return status_from(answer)

    async def all_uids(self) -> list[int]:
        answer = await self.checked(all_uids_command(self))
        uids: list[int] = []
        for response in answer.untagged:
            if isinstance(response, DataResponse) and response.name in ("SEARCH", "ESEARCH"):
                uids.extend(uids_from_search(response) or [])
        return sorted(set(uids))

    async def existing(self, uids: list[int]) -> list[int]:
        """Which of *uids* the selected mailbox still has."""
        answer = await self.checked(Command("", "SEARCH", (Atom("UID"), Atom(uid_set(uids))),
                                            uid=True))
        return sorted({u for r in answer.data("SEARCH") for u in uids_from_search(r) or []})

    async def uids_from(self, first: int) -> list[int]:
        """UIDs >= *first* (``first:*`` also matches the last message when all are lower)."""
        answer = await self.checked(Command("", "SEARCH", (Atom("UID"), Atom(f"{first}:*")),
                                            uid=True))
        uids = [u for r in answer.data("SEARCH") for u in uids_from_search(r) or []]
        return sorted(u for u in set(uids) if u >= first)

    # --- messages -------------------------------------------------------------------------

    async def fetch_meta(self, uids: str = "1:*", changedsince: int | None = None
                         ) -> list[MessageMeta]:
        items = self._meta_items()
        args: tuple[Token, ...] = (Atom(uids), ParenList(tuple(Atom(i) for i in items)))
        if changedsince is not None:
            args += (ParenList((Atom("CHANGEDSINCE"), Atom(str(changedsince)))),)
        answer = await self.checked(Command("", "FETCH", args, uid=True))
        metas = [m for m in map(meta_from, answer.untagged) if m is not None]
        return sorted({m.uid: m for m in metas}.values(), key=lambda m: m.uid)

    def _meta_items(self) -> tuple[str, ...]:
        return META_ITEMS + (("MODSEQ",) if "CONDSTORE" in self.capabilities else ()) \
            + (("X-GM-MSGID",) if "X-GM-EXT-1" in self.capabilities else ())

    async def fetch_messages(self, uids: list[int]) -> list[Message]:
        """One ``UID FETCH set (... BODY.PEEK[])`` for the whole batch (one round trip)."""
        items = (*self._meta_items(), "BODY.PEEK[]")
        answer = await self.checked(Command(
            "", "FETCH", (Atom(uid_set(uids)), ParenList(tuple(Atom(i) for i in items))),
            uid=True))
        out: dict[int, Message] = {}
        for response in answer.untagged:
            attrs = fetch_attributes(response)
            meta = meta_from(response)
            if attrs is None or meta is None:
                continue
            body = attrs.get("BODY[]")
            if isinstance(body, (Literal, Quoted)):
                out[meta.uid] = Message(meta, body.value)
            elif meta.uid not in out:
                log.warning("UID %d: the server sent no body", meta.uid)
        return [out[u] for u in sorted(out)]

    # --- writing (destination side) -------------------------------------------------------

    async def create(self, name: str) -> None:
        answer = await self.command(Command("", "CREATE", (mailbox_token(name),)))
        if not answer.ok and answer.status.code != "ALREADYEXISTS":
            # Some servers say NO without ALREADYEXISTS: fine when the mailbox is there.
            listed = await self.checked(Command("", "LIST", (Quoted(b""), mailbox_token(name))))
            if not listed.data("LIST"):
                raise MigrateError(f"CREATE {name} failed: {answer.describe()}")

    async def subscribe(self, name: str) -> None:
        await self.command(Command("", "SUBSCRIBE", (mailbox_token(name),)))

    async def uidnext(self, name: str) -> int:
        answer = await self.checked(Command("", "STATUS", (mailbox_token(name),
                                                           ParenList((Atom("UIDNEXT"),)))))
        for response in answer.data("STATUS"):
            values = response.args[1] if len(response.args) > 1 else None
            if isinstance(values, ParenList):
                items = values.items
                for key, value in zip(items[::2], items[1::2], strict=False):
                    if isinstance(key, Atom) and key.upper() == "UIDNEXT":
                        number = number_value(value)
                        if number is not None:
                            return number
        raise MigrateError(f"STATUS {name}: no UIDNEXT in the answer")

    async def append(self, name: str, messages: list[Message]) -> Appended:
        """APPEND *messages* with their flags and INTERNALDATE: one MULTIAPPEND command for
        all when offered, else one APPEND each, two per round trip with LITERAL+. Literals
        are non-synchronising with LITERAL+. A message the server refuses is reported, not
        raised: the others stay appended."""
        if "MULTIAPPEND" in self.capabilities:
            groups = [messages]
        else:
            groups = [[m] for m in messages]
        commands = [Command("", "APPEND", (mailbox_token(name), *(
            token for m in group for token in _append_args(m)))) for group in groups]
        result = Appended()
        for group, answer in zip(groups, await self._pipelined(commands), strict=True):
            if not answer.ok:  # MULTIAPPEND appends all or nothing
                result.refused.update((m.meta.uid, answer.describe()) for m in group)
                continue
            result.stored += [m.meta.uid for m in group]
            if answer.status.code == "APPENDUID" and answer.status.code_data:
                validity, _, text = answer.status.code_data.decode("ascii", "replace") \
                    .partition(" ")
                new_uids = expand_set(text)
                if validity.isdigit():
                    result.uidvalidity = int(validity)
                if len(new_uids) == len(group):
                    result.uids.update(zip((m.meta.uid for m in group), new_uids, strict=True))
        return result

    async def _pipelined(self, commands: list[Command]) -> list[Answer]:
        """Answers to *commands* in order; two per round trip when the server has LITERAL+
        (the connection sends a second command right behind the first). A throttled one is
        sent again alone, through ``command``."""
        if "LITERAL+" not in self.capabilities:
            return [await self.command(c) for c in commands]
        answers: list[Answer] = []
        for index in range(0, len(commands), 2):
            first = commands[index]
            second = commands[index + 1] if index + 1 < len(commands) else None
            if second is None:
                answers.append(await self.command(first))
                continue
            finals: list[Answer] = []
            untagged: list[Response] = []
            try:
                async for item in self.conn.execute(first, then=second):
                    if is_final(item.response):
                        finals.append(Answer(untagged, item.response))
                        untagged = []
                    elif item.response is not None:
                        untagged.append(item.response)
            except (UpstreamLost, UpstreamUnavailable) as exc:
                raise ConnectionLost(f"APPEND: {exc}", self) from None
            # Tags are numbered in sending order; a server may answer pipelined commands in
            # any order (execute), so the answers are put back in the order sent.
            finals.sort(key=lambda answer: _tag_number(answer.status.tag))
            for command, answer in zip((first, second), [*finals, None, None], strict=False):
                if answer is None:  # not sent (the connection pipelines only when it can)
                    answer = await self.command(command)
                elif not answer.ok and is_throttled(answer.status.code, answer.status.text):
                    self.backoff.throttled()
                    answer = await self.command(command)
                answers.append(answer)
        return answers

    async def store_flags(self, uids: list[int], flags: tuple[str, ...]) -> None:
        await self.checked(Command("", "STORE", (
            Atom(uid_set(uids)), Atom("FLAGS.SILENT"),
            ParenList(tuple(Atom(f) for f in flags))), uid=True))

    async def expunge(self, uids: list[int]) -> None:
        """Remove exactly *uids*: ``UID EXPUNGE`` (UIDPLUS) only, so that other messages
        marked \\Deleted stay."""
        if not uids:
            return
        if "UIDPLUS" not in self.capabilities:
            raise MigrateError("cannot remove single messages: the server lacks UIDPLUS")
        await self.checked(Command("", "STORE", (Atom(uid_set(uids)), Atom("+FLAGS.SILENT"),
                                                 ParenList((Atom("\\Deleted"),))), uid=True))
        await self.checked(Command("", "EXPUNGE", (Atom(uid_set(uids)),), uid=True))

    async def logout(self) -> None:
        await self.conn.logout()


def _append_args(message: Message) -> tuple[Token, ...]:
    """``(flags) ["date"] literal`` of one message in an APPEND."""
    date = (Quoted(message.meta.internaldate.encode("ascii")),) \
        if message.meta.internaldate else ()
    return (ParenList(tuple(Atom(f) for f in message.meta.flags)), *date,
            Literal(message.body))


def _tag_number(tag: str | None) -> int:
    digits = "".join(c for c in tag or "" if c.isdigit())
    return int(digits) if digits else 0
