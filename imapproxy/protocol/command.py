"""Client commands: parse one frame into a Command, write a Command back to bytes."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from .errors import ProtocolError
from .framing import tag_of
from .tokens import MAX_DEPTH, Token, TokenReader, write_tokens

_NAME = re.compile(rb"[A-Za-z][A-Za-z0-9.\-]*")


@dataclass(frozen=True, slots=True)
class Command:
    """``tag [UID] NAME args...``. ``name`` is upper case; ``uid`` marks the UID form."""

    tag: str
    name: str
    args: tuple[Token, ...] = ()
    uid: bool = False

    @property
    def full_name(self) -> str:
        return f"UID {self.name}" if self.uid else self.name

    def with_tag(self, tag: str) -> Command:
        return Command(tag, self.name, self.args, self.uid)


def parse_command(frame: bytes, *, max_depth: int = MAX_DEPTH) -> Command:
    """``max_depth``: deepest nesting of parenthesised lists accepted (limits.max_nesting_depth)."""
    tag = tag_of(frame)
    if tag is None:
        raise ProtocolError("missing or invalid tag")
    if tag == "*" or "+" in tag:
        raise ProtocolError("invalid tag", tag)
    reader = TokenReader(frame, len(tag) + 1, tag=tag, max_depth=max_depth)
    name = _read_name(reader, tag)
    uid = False
    if name == "UID":
        if not frame.startswith(b" ", reader.pos):
            raise ProtocolError("UID needs a command", tag)
        reader.pos += 1
        name = _read_name(reader, tag)
        uid = True
    if not reader.at_end():
        if not frame.startswith(b" ", reader.pos):
            raise ProtocolError("expected a space after the command name", tag)
        reader.pos += 1
    args = reader.read_tokens()
    return Command(tag, name, args, uid)


def _read_name(reader: TokenReader, tag: str) -> str:
    m = _NAME.match(reader.data, reader.pos)
    if m is None:
        raise ProtocolError("missing command name", tag)
    reader.pos = m.end()
    return m.group().decode("ascii").upper()


def serialize_command(command: Command) -> bytes:
    return b"".join(command_chunks(command))


def command_chunks(command: Command) -> list[bytes]:
    """The command's bytes, split after each synchronising literal announcement.

    The sender writes a chunk, then waits for the peer's ``+`` before the next one.
    """
    out = bytearray(command.tag.encode("ascii") + b" " + command.full_name.encode("ascii"))
    breaks: list[int] = []
    if command.args:
        out += b" "
        write_tokens(command.args, out, breaks)
    out += b"\r\n"
    bounds = [0, *breaks, len(out)]
    return [bytes(out[a:b]) for a, b in itertools.pairwise(bounds)]
