"""The token reader as it was before the regex rewrite (commit 47007ec), kept verbatim as the
oracle for tests/protocol/test_tokens_equivalence.py and bench/bench_parse.py.

Not used by the proxy: the new reader must give the same tokens and reject the same inputs.
"""

from __future__ import annotations

from imapproxy.protocol.errors import ProtocolError
from imapproxy.protocol.tokens import MAX_DEPTH, Atom, Literal, ParenList, Quoted, Token

_SPECIALS = frozenset(b' ()"{\r\n') | frozenset(range(0x20)) | {0x7F}


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
        items = self._read_sequence(closing=None)
        if self.pos < len(self.data):
            self.pos += 2 if self.data.startswith(b"\r\n", self.pos) else 1
        if self.pos != len(self.data):
            raise self.error("data after end of line")
        return items

    def read_token(self) -> Token:
        return self._read_one(depth=0)

    def _read_sequence(self, closing: int | None, depth: int = 0) -> tuple[Token, ...]:
        items: list[Token] = []
        while True:
            self.skip_spaces()
            if closing is not None and self.pos < len(self.data) and self.data[self.pos] == closing:
                self.pos += 1
                return tuple(items)
            if self.at_end():
                if closing is not None:
                    raise self.error("unterminated list")
                return tuple(items)
            items.append(self._read_one(depth))

    def _read_one(self, depth: int) -> Token:
        data, pos = self.data, self.pos
        if pos >= len(data):
            raise self.error("missing token")
        c = data[pos]
        if c == 0x28:  # (
            if depth >= self.max_depth:
                raise self.error("lists nested too deeply")
            self.pos += 1
            return ParenList(self._read_sequence(closing=0x29, depth=depth + 1))
        if c == 0x22:  # "
            return self._read_quoted()
        if c == 0x7B or (c == 0x7E and data.startswith(b"{", pos + 1)):  # { or ~{
            return self._read_literal()
        return self._read_atom()

    def _read_quoted(self) -> Quoted:
        data = self.data
        out = bytearray()
        i = self.pos + 1
        while True:
            if i >= len(data):
                raise self.error("unterminated quoted string")
            c = data[i]
            if c == 0x22:
                self.pos = i + 1
                return Quoted(bytes(out))
            if c == 0x5C:
                if i + 1 < len(data) and data[i + 1] in (0x22, 0x5C):
                    out.append(data[i + 1])
                    i += 2
                    continue
                raise self.error("bad escape in quoted string")
            if c in (0x0D, 0x0A, 0x00):
                raise self.error("line break in quoted string")
            out.append(c)
            i += 1

    def _read_literal(self) -> Literal:
        data = self.data
        binary = data[self.pos] == 0x7E
        start = self.pos + (2 if binary else 1)
        close = data.find(b"}", start)
        if close < 0 or close - start > 21:
            raise self.error("bad literal")
        spec = data[start:close]
        nonsync = spec.endswith(b"+")
        digits = spec[:-1] if nonsync else spec
        if not digits.isdigit() or not digits.isascii():
            raise self.error("bad literal size")
        size = int(digits)
        i = close + 1
        if data.startswith(b"\r\n", i):
            i += 2
        elif data.startswith(b"\n", i):
            i += 1
        else:
            raise self.error("literal announcement not at end of line")
        if i + size > len(data):
            raise self.error("literal shorter than announced")
        self.pos = i + size
        return Literal(data[i:i + size], binary=binary, nonsync=nonsync)

    def _read_atom(self) -> Atom:
        """Atom chars, with ``[...]`` sections read whole (they may hold spaces and lists)."""
        data = self.data
        i = self.pos
        while i < len(data):
            c = data[i]
            if c == 0x5B:  # [
                close = bracket_end(data, i)
                if close < 0:
                    raise self.error("unterminated [")
                i = close + 1
                continue
            if c in _SPECIALS:
                break
            i += 1
        if i == self.pos:
            raise self.error(f"unexpected character {chr(data[i])!r}")
        value = data[self.pos:i].decode("latin-1")
        self.pos = i
        return Atom(value)


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
