"""``parse_message(raw)``: the MIME part tree of a raw message, as Dovecot 2.3's message-parser.c
and message-part-data.c build it.

The rules that decide byte equality with Dovecot:

- A header ends at an empty line, at the end of the data, or at a line that is a boundary of
  an enclosing multipart (the newline before that line then belongs to the parent's body).
- Content-Type counts only once MIME is on: a MIME-Version or Content-Type header, or being a
  part of a multipart. Without it every Content-* header is forgotten and the part is
  text/plain (message/rfc822 directly under multipart/digest).
- A multipart needs a boundary parameter (cut to 80 bytes); without one it has no children.
  A boundary line is ``--`` + a boundary at a line start; the longest active boundary that
  prefixes the line wins (innermost first on ties), so a line of an outer boundary also ends
  every inner part. ``--boundary--`` closes that multipart; what follows is its epilogue.
- The [CR]LF before a boundary line belongs to the multipart, not to the part that ends.
- message/rfc822 has exactly one child, the embedded message, even if it is empty.
- Sizes count every bare LF as CRLF (virtual sizes) and lines are LFs.
- At most 100 nested and 10000 total parts; beyond that parts are flattened (OVERFLOW).

The whole message is in memory, so the streaming parser's buffer-size effects are not
modelled: a boundary or header line longer than Dovecot's read buffer could in principle be
cut differently there (header lines of 200 KB are not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from .address import parse_addresses
from .headers import Field, Line, continues, full_value, read_line, split_name, strdup
from .part import (
    DIGEST,
    HAS_NULS,
    IS_MIME,
    MULTIPART,
    OVERFLOW,
    RFC822,
    TEXT,
    Content,
    Envelope,
    Part,
)
from .rfc822 import Rfc822Parser, rfc2231_parse

__all__ = ["parse_message"]

MAX_NESTED_PARTS = 100
MAX_TOTAL_PARTS = 10000
BOUNDARY_STRING_MAX_LEN = 80
BOUNDARY_END_MAX_LEN = BOUNDARY_STRING_MAX_LEN + 4

# The parser is a state machine: each step consumes input and returns the next step.
_Step: TypeAlias = "Callable[[], _Step] | None"


def parse_message(raw: bytes) -> Part:
    """The part tree of ``raw`` (any bytes: CRLF or LF lines, broken MIME, truncation)."""
    return _Parser(raw).run()


class _Boundary:
    __slots__ = ("epilogue", "part", "value")

    def __init__(self, value: bytes, part: Part) -> None:
        self.value = value
        self.part = part
        self.epilogue = False


class _Parser:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.end = len(raw)
        self.pos = 0
        self.last_chr = 0
        self.boundaries: list[_Boundary] = []  # innermost last
        self.stack: list[Part] = []  # ancestors of self.part, root first
        self.nested = 0
        self.total = 0

    # --- the state machine ----------------------------------------------------------------

    def run(self) -> Part:
        root = Part()
        self.part = root
        step = self._headers(root)
        while step is not None:
            step = step()
        while self.stack:  # end of data: close every open part
            self._finish_part()
        return root

    def _append_child(self, flags: int) -> Part:
        # Placed by the parent's sizes, as Dovecot does: when a boundary cut the parent's
        # header, the child starts at the newline that went to the grandparent.
        parent = self.part
        child = Part(offset=parent.offset + parent.header_size + parent.body_size, flags=flags)
        self.part.children.append(child)
        self.stack.append(self.part)
        self.part = child
        self.nested += 1
        self.total += 1
        return child

    def _finish_part(self) -> None:
        child = self.part
        parent = self.stack.pop()
        self.nested -= 1
        parent.body_size += child.body_size + child.header_size
        parent.body_vsize += child.body_vsize + child.header_vsize
        parent.body_lines += child.body_lines + child.header_lines
        self.part = parent

    def _add_body(self, start: int, stop: int) -> None:
        """parse_body_add_block: ``raw[start:stop]`` belongs to the current part's body."""
        if stop <= start:
            return
        raw = self.raw
        part = self.part
        lines = raw.count(b"\n", start, stop)
        if lines:
            crlf = raw.count(b"\r\n", start, stop)
            if raw[start] == 0x0A and self.last_chr == 0x0D:
                crlf += 1
            part.body_vsize += lines - crlf
        if raw.find(b"\0", start, stop) >= 0:
            part.flags |= HAS_NULS
        part.body_size += stop - start
        part.body_vsize += stop - start
        part.body_lines += lines
        self.last_chr = raw[stop - 1]

    # --- headers --------------------------------------------------------------------------

    def _headers(self, part: Part) -> _Step:
        raw, end = self.raw, self.end
        reader = _PartHeaders(part, self.stack[-1] if self.stack else None)
        last_boundary: bytes | None = None
        seen_content_type = False
        multipart = False
        prev_newline = 0
        eoh = False
        while True:
            pos = self.pos
            if (last_boundary is not None and part.flags & IS_MIME and pos < end
                    and (raw[pos] == 0x0A or raw.startswith(b"\r\n", pos))):
                # The multipart's own boundary starts counting at its empty line.
                if self.nested + 1 >= MAX_NESTED_PARTS:
                    part.flags = (part.flags | OVERFLOW) & ~MULTIPART
                else:
                    self.boundaries.append(_Boundary(last_boundary, part))
                    last_boundary = None
                    multipart = True
            if self.boundaries:
                found = self._boundary_at(pos)
                if found is not None and found.part is not part:
                    if prev_newline:  # the newline before a boundary is the parent's
                        part.header_lines -= 1
                        part.header_size -= prev_newline
                        part.header_vsize -= 2
                        parent = self.stack[-1]
                        parent.body_lines += 1
                        parent.body_size += prev_newline
                        parent.body_vsize += 2
                    break
            if eoh:
                break
            line = read_line(raw, pos, end)
            if line is None:
                break
            self._count_header_line(part, line)
            prev_newline = line.newline
            if line.content_end == line.start:
                eoh = True
                continue
            lines = [line]
            while continues(raw, line, end):
                line = read_line(raw, line.next, end)
                assert line is not None
                self._count_header_line(part, line)
                lines.append(line)
            prev_newline = line.newline
            name, value_start = split_name(raw, lines[0], skip_all_lwsp=True)
            hdr = Field(name, value_start, tuple(lines))
            lname = name.lower()
            if lname == b"mime-version":
                part.flags |= IS_MIME
            elif lname == b"content-type":
                part.flags |= IS_MIME
                if not seen_content_type:
                    seen_content_type = True
                    last_boundary = _content_type(part, reader.content,
                                                  full_value(raw, hdr))
            reader.header(lname, raw, hdr)

        # end of headers
        if not part.flags & IS_MIME:
            part.flags = 0
        if not seen_content_type or not part.flags & IS_MIME:
            if self.stack and self.stack[-1].flags & DIGEST:
                part.flags |= RFC822
            else:
                part.flags |= TEXT
        if raw.find(b"\0", part.offset, part.offset + part.header_size) >= 0:
            part.flags |= HAS_NULS
        reader.finish()
        self.last_chr = 0x0A
        if multipart:
            return self._body_to_boundary
        if not part.flags & RFC822:
            return self._body_to_boundary if self.boundaries else self._body_to_eof
        if self.nested + 1 < MAX_NESTED_PARTS and self.total < MAX_TOTAL_PARTS:
            return self._message_child
        part.flags = (part.flags | OVERFLOW) & ~RFC822
        return self._body_to_boundary if self.boundaries else self._body_to_eof

    def _count_header_line(self, part: Part, line: Line) -> None:
        part.header_size += line.next - line.start
        part.header_vsize += line.next - line.start
        if line.newline:
            part.header_lines += 1
            if line.newline == 1:
                part.header_vsize += 1
        self.pos = line.next

    def _message_child(self) -> _Step:
        return self._headers(self._append_child(0))

    # --- bodies ---------------------------------------------------------------------------

    def _boundary_at(self, pos: int) -> _Boundary | None:
        """boundary_line_find: the boundary whose line starts at ``pos``, if any."""
        raw, end = self.raw, self.end
        if end - pos < 2 or raw[pos] != 0x2D or raw[pos + 1] != 0x2D:
            return None
        if self.total >= MAX_TOTAL_PARTS:
            self.part.flags |= OVERFLOW
            return None
        data = pos + 2
        lf = raw.find(b"\n", data, end)
        trailing_dashes = False
        if lf >= 0:
            find_size = lf - data
            if find_size > 0 and raw[data + find_size - 1] == 0x0D:
                find_size -= 1
            if find_size > 2 and raw[data + find_size - 2:data + find_size] == b"--":
                trailing_dashes = True
        else:
            find_size = min(end - data, BOUNDARY_END_MAX_LEN)
        best: _Boundary | None = None
        for boundary in reversed(self.boundaries):
            size = len(boundary.value)
            if size <= find_size and (best is None or len(best.value) < size) \
                    and raw.startswith(boundary.value, data):
                best = boundary
                if size == find_size or (trailing_dashes and size == find_size - 2):
                    break
        if best is not None:
            size = len(best.value)
            best.epilogue = raw.startswith(b"--", data + size) and end - data >= size + 2
        return best

    def _body_to_boundary(self) -> _Step:
        raw, end = self.raw, self.end
        pos = self.pos
        if self.last_chr == 0x0A:
            found = self._boundary_at(pos)
            if found is not None:
                return self._part_finish(found, pos, first_line=True)
        search = pos
        while True:
            lf = raw.find(b"\n--", search, end)
            if lf < 0:
                self._add_body(pos, end)
                self.pos = end
                return None
            found = self._boundary_at(lf + 1)
            if found is not None:
                start = lf - 1 if lf > pos and raw[lf - 1] == 0x0D else lf
                self._add_body(pos, start)
                return self._part_finish(found, start, first_line=False)
            search = lf + 1

    def _body_to_eof(self) -> _Step:
        self._add_body(self.pos, self.end)
        self.pos = self.end
        return None

    def _part_finish(self, boundary: _Boundary, start: int, first_line: bool) -> _Step:
        while self.part is not boundary.part:
            self._finish_part()
        index = self.boundaries.index(boundary)
        del self.boundaries[index + (0 if boundary.epilogue else 1):]
        raw = self.raw
        if first_line:
            newline = 0
        else:
            newline = 2 if raw[start] == 0x0D else 1
        stop = start + newline + 2 + len(boundary.value) + (2 if boundary.epilogue else 0)
        self._add_body(start, stop)
        self.pos = stop
        return self._skip_boundary_line

    def _skip_boundary_line(self) -> _Step:
        raw, end = self.raw, self.end
        pos = self.pos
        if pos >= end:
            return None
        lf = raw.find(b"\n", pos, end)
        if lf < 0:
            self._add_body(pos, end)
            self.pos = end
            return None
        self._add_body(pos, lf + 1)
        self.pos = lf + 1
        if not self.boundaries or self.boundaries[-1].part is not self.part:
            return self._body_to_boundary if self.boundaries else self._body_to_eof
        return self._mime_child

    def _mime_child(self) -> _Step:
        return self._headers(self._append_child(IS_MIME))


class _PartHeaders:
    """message_part_data_parse_from_header: Content-* data and the envelope of one part."""

    def __init__(self, part: Part, parent: Part | None) -> None:
        self.part = part
        self.content = Content()
        self.want_envelope = parent is None or bool(parent.flags & RFC822)
        self.envelope = Envelope() if self.want_envelope else None

    def header(self, lname: bytes, raw: bytes, hdr: Field) -> None:
        if lname.startswith(b"content-"):
            self._content(lname[8:], raw, hdr)
        if self.envelope is not None:
            _envelope_header(self.envelope, lname, raw, hdr)

    def _content(self, name: bytes, raw: bytes, hdr: Field) -> None:
        """parse_content_header: the first header of each kind counts (Content-Disposition:
        the first one with parameters). Content-Type is done by _content_type."""
        c = self.content
        if name == b"transfer-encoding" and c.transfer_encoding is None:
            parser = Rfc822Parser(full_value(raw, hdr))
            parser.skip_lwsp()
            token = bytearray()
            if parser.parse_mime_token(token) >= 0 and parser.skip_lwsp() == 0 and token:
                c.transfer_encoding = bytes(token)
        elif name == b"id" and c.id is None:
            c.id = strdup(full_value(raw, hdr))
        elif name == b"md5" and c.md5 is None:
            c.md5 = strdup(full_value(raw, hdr))
        elif name == b"description" and c.description is None:
            c.description = strdup(full_value(raw, hdr))
        elif name == b"location" and c.location is None:
            c.location = strdup(full_value(raw, hdr))
        elif name == b"language" and c.language is None:
            c.language = _parse_language(full_value(raw, hdr))
        elif name == b"disposition" and not c.disposition_params:
            parser = Rfc822Parser(full_value(raw, hdr))
            parser.skip_lwsp()
            token = bytearray()
            if parser.parse_mime_token(token) >= 0:
                c.disposition = bytes(token)
                c.disposition_params = tuple(rfc2231_parse(parser))

    def finish(self) -> None:
        part = self.part
        part.content = self.content if part.flags & IS_MIME else Content()
        if self.want_envelope:
            part.envelope = self.envelope


def _content_type(part: Part, c: Content, value: bytes) -> bytes | None:
    """The first Content-Type of a part: its data (message-part-data.c) and the part flags
    and boundary (message-parser.c), from one parse."""
    parser = Rfc822Parser(value)
    parser.skip_lwsp()
    out = bytearray()
    ret = parser.parse_content_type(out)
    slash = out.find(b"/")
    if slash < 0:
        c.type, c.subtype = bytes(out), b""
    else:
        c.type, c.subtype = bytes(out[:slash]), bytes(out[slash + 1:])
    if ret >= 0:
        c.params = tuple(rfc2231_parse(parser))
    lower = bytes(out).lower()
    if lower == b"message/rfc822":
        part.flags |= RFC822
    elif lower.startswith(b"text") and (len(lower) == 4 or lower[4] == 0x2F):
        part.flags |= TEXT
    elif lower.startswith(b"multipart/"):
        part.flags |= MULTIPART
        if lower[10:] == b"digest":
            part.flags |= DIGEST
    if ret < 0 or not part.flags & MULTIPART:
        return None
    for key, val in c.params:
        if key.lower() == b"boundary":
            return val[:BOUNDARY_STRING_MAX_LEN]
    return None


def _parse_language(value: bytes) -> tuple[bytes, ...] | None:
    parser = Rfc822Parser(value)
    langs: list[bytes] = []
    parser.skip_lwsp()
    atom = bytearray()
    while parser.parse_atom(atom) >= 0:
        langs.append(bytes(atom))
        del atom[:]
        if parser.pos >= parser.end or parser.data[parser.pos] != 0x2C:
            break
        parser.pos += 1
        parser.skip_lwsp()
    return tuple(langs) if langs else None


_ENVELOPE_STRINGS = {
    b"date": "date", b"subject": "subject", b"message-id": "message_id",
    b"in-reply-to": "in_reply_to",
}
_ENVELOPE_ADDRESSES = {
    b"from": "from_", b"sender": "sender", b"reply-to": "reply_to", b"to": "to",
    b"cc": "cc", b"bcc": "bcc",
}


def _envelope_header(env: Envelope, lname: bytes, raw: bytes, hdr: Field) -> None:
    attr = _ENVELOPE_STRINGS.get(lname)
    if attr is not None:
        setattr(env, attr, strdup(full_value(raw, hdr)))  # the last one wins
        return
    attr = _ENVELOPE_ADDRESSES.get(lname)
    if attr is not None:
        addrs = parse_addresses(full_value(raw, hdr))
        if addrs:
            old: tuple[object, ...] | None = getattr(env, attr)
            setattr(env, attr, addrs if old is None else old + addrs)

