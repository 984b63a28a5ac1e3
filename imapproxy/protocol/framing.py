"""Frame a byte stream into whole IMAP messages (lines plus their literals) before any grammar.

Like imap-codec's fragmentizer: the framer only knows lines and ``{n}`` / ``{n+}`` / ``~{n}``
literal announcements. It enforces the line-length and literal-size caps while reading, so an
oversized literal is refused before its bytes are buffered, and it resynchronises after junk
(skipping to the end of the offending line). Parsing the grammar happens on complete frames.

Usage (sans-I/O, like h11)::

    framer.receive_data(chunk)
    while (event := framer.next_event()) is not None:
        ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LITERAL_AT_END = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}\r?\n\Z")
_TAIL = 32  # enough for the longest literal announcement, ~{20 digits+}CRLF
_TAG = re.compile(rb"[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c\x7e]+")


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete message: its lines and literals, byte for byte, ending with its newline."""

    data: bytes


@dataclass(frozen=True, slots=True)
class NeedContinuation:
    """A synchronising literal was announced: a server must now send ``+`` to receive it."""

    size: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message was too big; its bytes are being (or were) discarded.

    ``code`` is ``TOOBIG`` for literals. A refused synchronising literal is never sent by
    the peer (it waits for ``+``), so nothing is skipped for it.
    """

    tag: str | None
    reason: str
    code: str | None = None


FramerEvent = Frame | NeedContinuation | Rejected


class Framer:
    """Incremental framer for either direction.

    ``server_side``: emit :class:`NeedContinuation` for synchronising literals (a client
    waits for ``+`` before sending them). A client-side framer reading server responses
    gets literal bytes straight away.
    """

    def __init__(
        self,
        *,
        max_line_length: int = 64 * 1024,
        max_literal_size: int = 64 * 1024 * 1024,
        max_message_size: int | None = None,
        server_side: bool = True,
    ) -> None:
        self.max_line_length = max_line_length
        self.max_literal_size = max_literal_size
        self.max_message_size = (
            max_message_size if max_message_size is not None else max_literal_size + 1024 * 1024
        )
        self.server_side = server_side
        self._buf = bytearray()
        self._frame = bytearray()
        self._literal_remaining = 0
        self._discard_remaining = 0
        self._skipping_line = False
        self._skip_tail = b""  # the last bytes of a line being skipped: it may announce a literal

    @property
    def buffered(self) -> int:
        """Bytes held (pending input plus the partial message): bounded by the caps."""
        return len(self._buf) + len(self._frame)

    @property
    def in_message(self) -> bool:
        """True while part of a message (a line or a literal) has been read but not all."""
        return bool(self._frame) or self._literal_remaining > 0

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_event(self) -> FramerEvent | None:
        while True:
            if self._discard_remaining:
                n = min(self._discard_remaining, len(self._buf))
                del self._buf[:n]
                self._discard_remaining -= n
                if self._discard_remaining:
                    return None
                continue
            if self._literal_remaining:
                n = min(self._literal_remaining, len(self._buf))
                self._frame += self._buf[:n]
                del self._buf[:n]
                self._literal_remaining -= n
                if self._literal_remaining:
                    return None
                continue
            end = self._buf.find(b"\n")
            if self._skipping_line:
                if end < 0:
                    self._skip_tail = (self._skip_tail + self._buf)[-_TAIL:]
                    self._buf.clear()
                    return None
                skipped = self._skip_tail + self._buf[: end + 1]
                del self._buf[: end + 1]
                self._skipping_line = False
                self._skip_tail = b""
                m = _LITERAL_AT_END.search(skipped)
                if m and m.group(3):  # a non-synchronising literal follows: skip it too
                    self._discard_remaining = int(m.group(2))
                    self._skipping_line = True
                continue
            if end < 0:
                if len(self._buf) > self.max_line_length:  # skipped from the next call on
                    return self._reject("line too long", None, skip_line=True)
                return None
            if end + 1 > self.max_line_length:
                # Skipped on the next call, like a line still arriving: a literal it announces
                # ({n+}) is skipped with it, never read as commands.
                return self._reject("line too long", None, skip_line=True)
            line = bytes(self._buf[: end + 1])
            del self._buf[: end + 1]
            self._frame += line
            m = _LITERAL_AT_END.search(line)
            if m is None:
                frame = Frame(bytes(self._frame))
                self._frame.clear()
                return frame
            size = int(m.group(2))
            sync = not m.group(3)
            if size > self.max_literal_size or len(self._frame) + size > self.max_message_size:
                if sync and self.server_side:
                    # The peer waits for "+": it will not send the literal, so nothing to skip.
                    return self._reject("literal too big", "TOOBIG", skip_line=False)
                self._discard_remaining = size
                return self._reject("literal too big", "TOOBIG", skip_line=True)
            self._literal_remaining = size
            if sync and self.server_side:
                return NeedContinuation(size)

    def _reject(self, reason: str, code: str | None, *, skip_line: bool) -> Rejected:
        tag = tag_of(bytes(self._frame) or bytes(self._buf[:200]))
        self._frame.clear()
        self._skipping_line = skip_line
        return Rejected(tag, reason, code)


def tag_of(data: bytes) -> str | None:
    """The tag a message starts with, if it has a valid one (to answer ``tag BAD``)."""
    m = _TAG.match(data)
    if m is None or m.end() >= len(data) or data[m.end()] != 0x20:
        return None
    return m.group().decode("ascii")
