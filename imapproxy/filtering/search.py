"""SEARCH on filtered content: the keys that look at message content are evaluated here, on
the bytes the client sees; every other key stays the upstream's business.

The program is rewritten rather than re-implemented: each content key (BODY, TEXT, HEADER,
SUBJECT, FROM, TO, CC, BCC, LARGER, SMALLER) is replaced by a key naming the messages whose
filtered bytes match it (``UID <set>``, or ``NOT ALL`` when none do: see the session hooks),
and the rewritten program goes to the upstream. NOT, OR, parentheses, flags, dates and sequence sets keep their meaning, and
the answer (SEARCH or UID SEARCH numbering) is the upstream's own.

Matching follows Dovecot's defaults: case-insensitive substring; BODY looks at the decoded
text of every text part (and the raw body), HEADER at the decoded field values, an empty
HEADER string matches a message that has the field.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message

from ..protocol.errors import ProtocolError
from ..protocol.tokens import Atom, ParenList, Token, string_value

NO_ARGS = frozenset({
    "ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN",
    "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN",
})
ONE_ARG = frozenset({
    "BCC", "BEFORE", "BODY", "CC", "FROM", "KEYWORD", "LARGER", "ON", "SENTBEFORE", "SENTON",
    "SENTSINCE", "SINCE", "SMALLER", "SUBJECT", "TEXT", "TO", "UID", "UNKEYWORD", "OLDER",
    "YOUNGER",
})
HEADER_KEYS = frozenset({"BCC", "CC", "FROM", "SUBJECT", "TO"})
CONTENT_KEYS = HEADER_KEYS | {"BODY", "TEXT", "HEADER", "LARGER", "SMALLER"}


@dataclass(frozen=True)
class ContentKey:
    """One content key of a program: (name, arguments) with arguments decoded."""

    name: str
    args: tuple[bytes, ...]


Found = tuple[ContentKey | None, tuple[int, int]]  # a key (None: a group) and its token span


def content_keys(args: tuple[Token, ...]) -> list[ContentKey]:
    """The content keys of a SEARCH program, in order (ProtocolError if it cannot be read)."""
    out: list[ContentKey] = []
    items = list(args)
    for key, span in _walk(items):
        group = items[span[0]]
        if key is not None:
            out.append(key)
        elif isinstance(group, ParenList):
            out += content_keys(group.items)
    return out


def has_content_keys(args: tuple[Token, ...]) -> bool:
    try:
        return bool(content_keys(args))
    except ProtocolError:
        return False  # the upstream gives its own BAD


def rewrite(args: tuple[Token, ...], replacement: Callable[[ContentKey], list[Token]]
            ) -> tuple[Token, ...]:
    """The program with every content key replaced by the tokens ``replacement`` gives."""
    out: list[Token] = []
    items = list(args)
    position = 0
    for key, span in _walk(items):
        out.extend(items[position:span[0]])
        position = span[1]
        if key is None:  # a parenthesised group: rewrite inside
            group = items[span[0]]
            assert isinstance(group, ParenList)
            out.append(ParenList(rewrite(group.items, replacement)))
        else:
            out.extend(replacement(key))
    out.extend(items[position:])
    return tuple(out)


def _walk(items: list[Token]) -> Iterator[Found]:
    """Content keys (and parenthesised groups, as None) with their token spans."""
    i = 0
    if i < len(items) and _name(items[i]) == "CHARSET":
        i += 2
    while i < len(items):
        i = yield from _key(items, i)


def _key(items: list[Token], i: int) -> Generator[Found, None, int]:
    if i >= len(items):
        raise ProtocolError("incomplete SEARCH program")
    token = items[i]
    if isinstance(token, ParenList):
        if _group_has_content(token):
            yield None, (i, i + 1)
        return i + 1
    name = _name(token)
    if name in ("NOT",):
        return (yield from _key(items, i + 1))
    if name == "OR":
        after_first = yield from _key(items, i + 1)
        return (yield from _key(items, after_first))
    if name in NO_ARGS or _is_set(token):
        return i + 1
    if name == "HEADER":
        _need(items, i, 2)
        yield ContentKey(name, (string_value(items[i + 1]), string_value(items[i + 2]))), \
            (i, i + 3)
        return i + 3
    if name == "MODSEQ":
        count = 3 if _is_string(items, i + 1) else 1
        _need(items, i, count)
        return i + 1 + count
    if name in ONE_ARG:
        _need(items, i, 1)
        if name in CONTENT_KEYS:
            yield ContentKey(name, (string_value(items[i + 1]),)), (i, i + 2)
        return i + 2
    raise ProtocolError(f"unknown SEARCH key {name!r}")


def _group_has_content(group: ParenList) -> bool:
    return any(True for _ in _walk(list(group.items)))


def _need(items: list[Token], i: int, count: int) -> None:
    if len(items) - 1 - i < count:
        raise ProtocolError(f"SEARCH key {_name(items[i])} needs {count} argument(s)")


def _is_string(items: list[Token], i: int) -> bool:
    return i < len(items) and not isinstance(items[i], (Atom, ParenList))


def _name(token: Token) -> str:
    return token.value.upper() if isinstance(token, Atom) else ""


def _is_set(token: Token) -> bool:
    return isinstance(token, Atom) and token.value != "" and \
        all(c.isdigit() or c in ":,*" for c in token.value)


# --- matching one message ---------------------------------------------------------------------


class SearchableMessage:
    """One message's text as SEARCH sees it, decoded once."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.size = len(raw)
        header_end = raw.find(b"\r\n\r\n")
        cut = header_end + 4 if header_end >= 0 else len(raw)
        self.message: Message = email.message_from_bytes(raw, policy=email.policy.compat32)
        self.raw_body = _fold(raw[cut:].decode("utf-8", "replace"))
        self._body: str | None = None
        self._header = _fold(raw[:cut].decode("utf-8", "replace"))

    def field_values(self, name: str) -> list[str]:
        return [_fold(_decoded(v)) for v in self.message.get_all(name, [])]

    @property
    def body(self) -> str:
        if self._body is None:
            texts = [self.raw_body]
            for part in self.message.walk():
                if part.get_content_maintype() == "text":
                    texts.append(_fold(_part_text(part)))
            self._body = "\n".join(texts)
        return self._body

    def matches(self, key: ContentKey) -> bool:
        if key.name in ("LARGER", "SMALLER"):
            limit = int(key.args[0]) if key.args[0].isdigit() else -1
            return self.size > limit if key.name == "LARGER" else self.size < limit
        needle = _fold(key.args[-1].decode("utf-8", "replace"))
        if key.name == "BODY":
            return needle in self.body
        if key.name == "TEXT":
            decoded = " ".join(_fold(_decoded(v)) for v in self.message.values())
            return needle in self._header or needle in decoded or needle in self.body
        field = key.args[0].decode("utf-8", "replace") if key.name == "HEADER" else key.name
        values = self.field_values(field)
        return bool(values) and (not needle or any(needle in v for v in values))


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _decoded(value: object) -> str:
    try:
        return str(make_header(decode_header(str(value))))
    except (ValueError, LookupError, UnicodeDecodeError, HeaderParseError):
        return str(value)


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "us-ascii"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("latin-1")
