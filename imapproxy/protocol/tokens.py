"""IMAP tokens: the generic tree both commands and responses are made of, its reader and writer.

A token is an atom (including numbers, NIL, flags and section specs such as
``BODY.PEEK[HEADER.FIELDS (FROM)]<0.100>``), a quoted string, a literal, or a parenthesised
list of tokens. Reading is done on complete frames (see framing.py), so literals are present.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ProtocolError

MAX_DEPTH = 64  # nesting of parenthesised lists; deeper is refused, never recursed into


@dataclass(frozen=True, slots=True)
class Atom:
    value: str  # latin-1 decoded bytes, so any byte survives a round trip

    def upper(self) -> str:
        return self.value.upper()


@dataclass(frozen=True, slots=True)
class Quoted:
    value: bytes


@dataclass(frozen=True, slots=True)
class Literal:
    value: bytes
    binary: bool = False  # ~{n}
    nonsync: bool = False  # {n+}


@dataclass(frozen=True, slots=True)
class ParenList:
    items: tuple[Token, ...]


Token = Atom | Quoted | Literal | ParenList

NIL = Atom("NIL")

_SPECIALS = frozenset(b' ()"{\r\n') | frozenset(range(0x20)) | {0x7F}
_QUOTED_SAFE = frozenset(range(0x20, 0x100)) - {0x22, 0x5C, 0x7F}

# The reader is one regex match per token (a Python loop per byte cost ~25 % of the proxy's CPU
# on FETCH answers). Each alternative is wrapped so that ``lastindex`` names it; possessive
# quantifiers keep failures linear. An atom is a run of atom chars and ``[...]`` sections (which
# may hold spaces, lists and quoted strings with any escaped byte, as bracket_end reads them);
# it never starts with ``~{``, which always begins a binary literal, and an unclosed ``[``
# fails it. Plain atoms separated by single spaces (``UID 4711 RFC822.SIZE 23456``, SEARCH
# results) are taken in one match and split; the run gives back its last atom if a ``[`` follows.
_PLAIN = rb'(?!~\{)[^ ()"{\r\n\x00-\x1f\x7f\[]++'
_SECTION = rb'\[(?:[^\]"\r\n]++|"(?:[^"\\\r\n]++|\\[\x00-\xff])*+")*+\]'
_TOKEN = re.compile(
    rb' *+(?:'
    rb'(' + _PLAIN + rb'(?: ' + _PLAIN + rb')*)(?!\[)'  # 1 plain atoms
    rb'|((?!~\{)(?:[^ ()"{\r\n\x00-\x1f\x7f\[]++|' + _SECTION + rb')++)(?!\[)'  # 2 atom
    rb'|(\()'  # 3
    rb'|(\))'  # 4
    rb'|"((?:[^"\\\r\n\x00]++|\\["\\])*+)"'  # 5 quoted, still escaped
    rb'|((~?)\{([0-9]{1,21}+)(\+?)\}\r?\n)'  # 6 literal announcement: 7 ~, 8 size, 9 +
    rb'|(\r?\n|\Z)'  # 10 end of line
    rb')')
_PLAINS, _ATOM, _OPEN, _CLOSE, _QUOTED, _LITERAL, _EOL = 1, 2, 3, 4, 5, 6, 10
# Atoms are immutable, and names (UID, FLAGS, \Seen, NIL...) repeat on every line: building
# the frozen dataclass costs more than the regex match, so non-numeric ones are shared.
_ATOM_CACHE: dict[bytes, Atom] = {}
_ATOM_CACHE_SIZE = 4096
_UNESCAPE = re.compile(rb'\\(["\\])')


class TokenReader:
    """Reads tokens from one frame, starting at ``pos``. Raises ProtocolError, nothing else."""

    def __init__(self, data: bytes, pos: int = 0, *, tag: str | None = None,
                 max_depth: int = MAX_DEPTH) -> None:
        self.data = data
        self.pos = pos
        self.tag = tag
        self.max_depth = max_depth

    def error(self, message: str) -> ProtocolError:
        return ProtocolError(f"{message} at byte {self.pos}", self.tag)

    def at_end(self) -> bool:
        return self.data.startswith(b"\r\n", self.pos) or self.data.startswith(b"\n", self.pos) \
            or self.pos >= len(self.data)

    def skip_spaces(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] == 0x20:
            self.pos += 1

    def rest_of_line(self) -> bytes:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            end = len(self.data)
        text = self.data[self.pos:end]
        self.pos = end
        return text[:-1] if text.endswith(b"\r") else text

    def read_tokens(self) -> tuple[Token, ...]:
        """All tokens up to the end of the frame."""
        return tuple(self._read(single=False))

    def read_token(self) -> Token:
        """One token at ``pos`` exactly (no leading spaces); ``pos`` ends just after it."""
        if self.pos >= len(self.data):
            raise self.error("missing token")
        if self.data[self.pos] == 0x20:
            raise self.error("unexpected character ' '")
        return self._read(single=True)[0]

    def _read(self, single: bool) -> list[Token]:
        """Tokens (nested lists on an explicit stack, at most ``max_depth`` deep) up to the end
        of the line, then the line's end must be the frame's; or, if ``single``, one token."""
        data, pos, max_depth = self.data, self.pos, self.max_depth
        match, atoms = _TOKEN.match, _ATOM_CACHE
        items: list[Token] = []
        stack: list[list[Token]] = []
        while True:
            m = match(data, pos)
            if m is None:
                self.pos = pos
                raise self.error("unexpected character")
            kind = m.lastindex
            pos = m.end()
            if kind == _PLAINS:
                run = m.group(1).split(b" ")
                if single and not stack:  # one token asked for: give back the rest of the run
                    del run[1:]
                    pos = m.start(1) + len(run[0])
                for raw in run:
                    atom = atoms.get(raw)
                    if atom is None:
                        atom = Atom(raw.decode("latin-1"))
                        if not 0x30 <= raw[0] <= 0x39:
                            if len(atoms) >= _ATOM_CACHE_SIZE:
                                atoms.clear()
                            atoms[raw] = atom
                    items.append(atom)
            elif kind == _ATOM:
                items.append(Atom(m.group(2).decode("latin-1")))
            elif kind == _OPEN:
                if len(stack) >= max_depth:
                    self.pos = pos - 1
                    raise self.error("lists nested too deeply")
                stack.append(items)
                items = []
                continue
            elif kind == _CLOSE:
                if not stack:
                    self.pos = pos - 1
                    raise self.error("unexpected character ')'")
                done = ParenList(tuple(items))
                items = stack.pop()
                items.append(done)
            elif kind == _QUOTED:
                value = m.group(5)
                items.append(Quoted(_UNESCAPE.sub(rb"\1", value) if b"\\" in value else value))
            elif kind == _LITERAL:
                size_digits = m.group(8)
                nonsync = bool(m.group(9))
                if len(size_digits) + nonsync > 21:
                    self.pos = m.start(6)
                    raise self.error("bad literal")
                end = pos + int(size_digits)
                if end > len(data):
                    self.pos = m.start(6)
                    raise self.error("literal shorter than announced")
                items.append(Literal(data[pos:end], binary=bool(m.group(7)), nonsync=nonsync))
                pos = end
            else:  # end of line
                self.pos = m.start(10)
                if stack:
                    raise self.error("unterminated list")
                if single:
                    raise self.error("missing token")
                if pos != len(data):
                    raise self.error("data after end of line")
                self.pos = pos
                return items
            if single and not stack:
                self.pos = pos
                return items


def bracket_end(data: bytes, start: int) -> int:
    """Index of the ``]`` closing the ``[`` at ``start``, skipping quoted strings; -1 if none."""
    i = start + 1
    in_quote = False
    while i < len(data):
        c = data[i]
        if c in (0x0A, 0x0D):
            return -1
        if in_quote:
            if c == 0x5C:
                i += 2
                continue
            if c == 0x22:
                in_quote = False
        elif c == 0x22:
            in_quote = True
        elif c == 0x5D:
            return i
        i += 1
    return -1


# --- writing ---------------------------------------------------------------------------------

def is_atom_safe(value: bytes) -> bool:
    return bool(value) and not any(c in _SPECIALS or c in (0x5C, 0x25, 0x2A, 0x5D, 0x5B) or c > 0x7E
                                   for c in value)


def write_token(token: Token, out: bytearray, breaks: list[int] | None = None) -> None:
    """Append ``token``; ``breaks`` collects the offsets just after sync literal announcements
    (where a sender must wait for the peer's ``+``)."""
    if isinstance(token, Atom):
        out += token.value.encode("latin-1")
    elif isinstance(token, Quoted):
        out += b'"' + token.value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    elif isinstance(token, Literal):
        head = b"~{" if token.binary else b"{"
        out += head + str(len(token.value)).encode() + (b"+}\r\n" if token.nonsync else b"}\r\n")
        if breaks is not None and not token.nonsync:
            breaks.append(len(out))
        out += token.value
    else:
        out += b"("
        write_tokens(token.items, out, breaks)
        out += b")"


def write_tokens(tokens: Iterable[Token], out: bytearray, breaks: list[int] | None = None) -> None:
    first = True
    for token in tokens:
        if not first:
            out += b" "
        first = False
        write_token(token, out, breaks)


def serialize_tokens(tokens: Iterable[Token]) -> bytes:
    out = bytearray()
    write_tokens(tokens, out)
    return bytes(out)


def string_token(value: bytes) -> Token:
    """The simplest faithful form for a string: quoted when it can be, else a literal."""
    if all(c in _QUOTED_SAFE for c in value) and len(value) < 1024:
        return Quoted(value)
    return Literal(value)


def astring_token(value: bytes) -> Token:
    return Atom(value.decode("latin-1")) if is_atom_safe(value) else string_token(value)


def string_value(token: Token) -> bytes:
    """The bytes of an astring (atom, quoted or literal); lists are not strings."""
    if isinstance(token, Atom):
        return token.value.encode("latin-1")
    if isinstance(token, (Quoted, Literal)):
        return token.value
    raise ProtocolError("expected a string, got a list")


def is_nil(token: Token) -> bool:
    return isinstance(token, Atom) and token.value.upper() == "NIL"
