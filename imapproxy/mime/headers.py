"""Header lines as Dovecot's message-header-parser.c cuts them, on offsets into the raw message.

A physical line runs to its LF (a missing final LF is allowed); a line starting with a space or
tab continues the previous one; an empty line ends the header. The name is what precedes the
first colon, trailing blanks removed; a line without a colon, or with a name over 1000 bytes,
has the name ``b""`` and is all value. Nothing here copies more than one header line.
"""

from __future__ import annotations

from typing import NamedTuple

NAME_MAX_LEN = 1000  # MESSAGE_HEADER_NAME_MAX_LEN
NUL_REPLACEMENT = "\ufffd".encode()


class Line(NamedTuple):
    """One physical header line: ``raw[start:content_end]`` without its newline."""

    start: int
    content_end: int
    next: int  # offset just after the newline (== content_end when there is none)
    newline: int  # bytes of newline: 0 (end of data), 1 (LF) or 2 (CRLF)


def read_line(raw: bytes, pos: int, end: int) -> Line | None:
    """The physical line at ``pos``, or None at the end of the data."""
    if pos >= end:
        return None
    lf = raw.find(b"\n", pos, end)
    if lf < 0:
        return Line(pos, end, end, 0)
    if lf > pos and raw[lf - 1] == 0x0D:
        return Line(pos, lf - 1, lf + 1, 2)
    return Line(pos, lf, lf + 1, 1)


def continues(raw: bytes, line: Line, end: int) -> bool:
    """Whether the next physical line is a continuation of ``line``."""
    return line.newline > 0 and line.next < end and raw[line.next] in (0x20, 0x09)


class Field(NamedTuple):
    """One logical header: its name and where its first line's value starts."""

    name: bytes
    value_start: int  # in the first line, after the colon and the skipped blanks
    lines: tuple[Line, ...]


def split_name(raw: bytes, line: Line, skip_all_lwsp: bool) -> tuple[bytes, int]:
    """(name, value start) of a first header line. ``skip_all_lwsp`` is Dovecot's
    SKIP_INITIAL_LWSP flag (used for parsing), else at most one blank is skipped."""
    start, stop = line.start, line.content_end
    colon = raw.find(b":", start, stop)
    if colon < 0:
        return b"", start
    value = colon + 1
    if skip_all_lwsp:
        p = value
        while p < stop and raw[p] in (0x20, 0x09):
            p += 1
        if p == stop and stop > value:
            p = value + 1  # only blanks: skip just one
        value = p
    elif value < stop and raw[value] in (0x20, 0x09):
        value += 1
    name_end = colon
    while name_end > start and raw[name_end - 1] in (0x20, 0x09):
        name_end -= 1
    if name_end - start > NAME_MAX_LEN:
        return b"", start
    return raw[start:name_end], value


def full_value(raw: bytes, field: Field) -> bytes:
    """The unfolded value as Dovecot's parser gives it with DROP_CR: continuation lines joined
    with a bare LF, their leading blanks kept."""
    first = field.lines[0]
    value = raw[field.value_start:first.content_end]
    if len(field.lines) > 1:
        value = b"\n".join([value] + [raw[ln.start:ln.content_end] for ln in field.lines[1:]])
    return value


def strdup(value: bytes) -> bytes:
    """message_header_strdup: NULs become U+FFFD."""
    return value.replace(b"\0", NUL_REPLACEMENT) if b"\0" in value else value
