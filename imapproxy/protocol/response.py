"""Server responses: parse one frame into a Response, write a Response back to bytes.

Status responses (OK/NO/BAD/PREAUTH/BYE) end in free text that is not tokenised (it may hold
unbalanced quotes or brackets); the optional ``[CODE data]`` before it is kept as raw bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeGuard

from .errors import ProtocolError
from .framing import tag_of
from .tokens import Atom, ParenList, Token, TokenReader, bracket_end, write_tokens

STATUSES = frozenset({"OK", "NO", "BAD", "PREAUTH", "BYE"})
MAX_DIGITS = 20  # a number longer than any 64-bit value is refused, never converted
_WORD = re.compile(rb"[A-Za-z0-9.\-=]+")


@dataclass(frozen=True, slots=True)
class Continuation:
    text: bytes


@dataclass(frozen=True, slots=True)
class StatusResponse:
    """``tag OK [CODE data] text``; ``tag`` is None for untagged (``*``) ones."""

    tag: str | None
    status: str
    code: str | None = None
    code_data: bytes | None = None
    text: bytes = b""


@dataclass(frozen=True, slots=True)
class DataResponse:
    """Untagged data: ``* [number] NAME args`` (EXISTS, FETCH, LIST, CAPABILITY, ...)."""

    number: int | None
    name: str
    args: tuple[Token, ...] = ()


Response = Continuation | StatusResponse | DataResponse


def parse_response(frame: bytes) -> Response:
    if frame.startswith(b"+"):
        reader = TokenReader(frame, 1)
        reader.skip_spaces()
        return Continuation(reader.rest_of_line())
    if frame.startswith(b"* "):
        return _parse_untagged(frame)
    tag = tag_of(frame)
    if tag is None:
        raise ProtocolError("response has no tag")
    reader = TokenReader(frame, len(tag) + 1, tag=tag)
    status = _read_word(reader).upper()
    if status not in STATUSES:
        raise ProtocolError(f"unknown status {status!r}", tag)
    return _parse_status_rest(reader, tag, status)


def _parse_untagged(frame: bytes) -> Response:
    reader = TokenReader(frame, 2)
    word = _read_word(reader)
    number: int | None = None
    if word.isdigit():
        if len(word) > MAX_DIGITS:
            raise ProtocolError("number too big")
        number = int(word)
        if not frame.startswith(b" ", reader.pos):
            raise ProtocolError("number without a response name")
        reader.pos += 1
        word = _read_word(reader)
    name = word.upper()
    if number is None and name in STATUSES:
        return _parse_status_rest(reader, None, name)
    if not reader.at_end():
        if not frame.startswith(b" ", reader.pos):
            raise ProtocolError("expected a space after the response name")
        reader.pos += 1
    return DataResponse(number, name, reader.read_tokens())


def _read_word(reader: TokenReader) -> str:
    m = _WORD.match(reader.data, reader.pos)
    if m is None:
        raise reader.error("expected a word")
    reader.pos = m.end()
    return m.group().decode("ascii")


def _parse_status_rest(reader: TokenReader, tag: str | None, status: str) -> StatusResponse:
    data = reader.data
    code: str | None = None
    code_data: bytes | None = None
    if data.startswith(b" ", reader.pos):
        reader.pos += 1
    if data.startswith(b"[", reader.pos):
        close = bracket_end(data, reader.pos)
        if close < 0:
            raise ProtocolError("unterminated response code", tag)
        inner = data[reader.pos + 1:close]
        name, sep, rest = inner.partition(b" ")
        code = name.upper().decode("latin-1")  # ASCII case only, so it encodes back
        code_data = rest if sep else None
        reader.pos = close + 1
        if data.startswith(b" ", reader.pos):
            reader.pos += 1
    text = reader.rest_of_line()
    return StatusResponse(tag, status, code, code_data, text)


def serialize_response(response: Response) -> bytes:
    out = bytearray()
    if isinstance(response, Continuation):
        out += b"+ " + response.text
    elif isinstance(response, StatusResponse):
        out += (response.tag or "*").encode("ascii") + b" " + response.status.encode("ascii")
        if response.code is not None:
            out += b" [" + response.code.encode("latin-1")
            if response.code_data is not None:
                out += b" " + response.code_data
            out += b"]"
        if response.text:
            out += b" " + response.text
    else:
        out += b"*"
        if response.number is not None:
            out += b" " + str(response.number).encode()
        out += b" " + response.name.encode("ascii")
        if response.args:
            out += b" "
            write_tokens(response.args, out)
    out += b"\r\n"
    return bytes(out)


def is_final(response: Response | None) -> TypeGuard[StatusResponse]:
    """A tagged status: the last response of a command's answer."""
    return isinstance(response, StatusResponse) and response.tag is not None


def fetch_attributes(response: Response | None) -> dict[str, Token] | None:
    """``* n FETCH (NAME value ...)`` as {NAME: value} (names upper case); None for any other
    response."""
    if not isinstance(response, DataResponse) or response.name != "FETCH" \
            or len(response.args) != 1 or not isinstance(response.args[0], ParenList):
        return None
    tokens = response.args[0].items
    return {name.upper(): value for name, value in zip(tokens[::2], tokens[1::2], strict=False)
            if isinstance(name, Atom)}


def number_value(token: Token | None) -> int | None:
    """The number an atom like ``42`` holds, else None."""
    if isinstance(token, Atom) and token.value.isdigit() and token.value.isascii() \
            and len(token.value) <= MAX_DIGITS:
        return int(token.value)
    return None
