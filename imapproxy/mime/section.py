"""BODY[section]<partial>: the client's spec, and the bytes Dovecot 2.3 serves for it
(imap/imap-fetch-body.c, lib-imap-storage/imap-msgpart.c, lib-mail/istream-header-filter.c).

Rules replicated:

- Part numbers: in a multipart, n is the n-th child (0 counts as 1); in anything else only 1
  exists and means the part itself; inside a message/rfc822 the numbering goes on in the
  embedded message. A part that does not exist gives an empty string, not an error.
- ``n.MIME`` is the part's own header; ``HEADER``, ``TEXT``, ``HEADER.FIELDS[.NOT]`` after a
  number need a message/rfc822 part and address its embedded message (else empty).
- HEADER.FIELDS keeps the matching header lines (folded lines stay whole) and the empty line;
  on the root message the empty line is added even when the header has none.
  HEADER.FIELDS.NOT keeps the others. Lines come out with CRLF.
- Everything is served with bare LFs as CRLF and NULs as 0x80; a partial counts in those
  bytes and is empty past the end.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from imapproxy.protocol.errors import ProtocolError
from imapproxy.protocol.tokens import Atom, ParenList, Quoted, TokenReader, bracket_end

from .headers import continues, read_line, split_name
from .part import MULTIPART, RFC822, Part

__all__ = ["SectionSpec", "apply_partial", "find_part", "parse_section", "section"]

OFF_T_MAX = 2**63 - 1
_KINDS = ("BINARY.SIZE", "BINARY.PEEK", "BINARY", "BODY.PEEK", "BODY")
_BARE_LF = re.compile(rb"(?<!\r)\n")


@dataclass(frozen=True, slots=True)
class SectionSpec:
    """A parsed ``BODY[...]`` / ``BINARY[...]`` / ``BINARY.SIZE[...]`` fetch attribute."""

    kind: str  # "BODY", "BINARY" or "BINARY.SIZE"
    peek: bool
    number: str  # "" for the whole message, else "1.2.3" as the client wrote it
    text: str  # "", "HEADER", "TEXT", "MIME", "HEADER.FIELDS" or "HEADER.FIELDS.NOT"
    fields: tuple[bytes, ...] = ()  # upper-cased header names of HEADER.FIELDS[.NOT]
    section: str = ""  # as Dovecot echoes it between the brackets
    partial: tuple[int, int | None] | None = None  # (offset, size or None = to the end)

    @property
    def response_name(self) -> bytes:
        """The item name Dovecot puts before the value, e.g. ``BODY[HEADER]<0>``."""
        name = f"{self.kind}[{self.section}]"
        if self.partial is not None and self.kind != "BINARY.SIZE":
            name += f"<{self.partial[0]}>"
        return name.encode("latin-1")


@functools.lru_cache(maxsize=1024)
def parse_section(item: str | bytes) -> SectionSpec:
    """Parse a fetch attribute such as ``BODY.PEEK[1.2.HEADER.FIELDS (From "X-A")]<0.100>``.
    Raises ProtocolError for anything Dovecot would answer with BAD."""
    text = item.decode("latin-1") if isinstance(item, bytes) else item
    upper = text.upper()
    for kind in _KINDS:
        if upper.startswith(kind + "["):
            break
    else:
        raise ProtocolError(f"not a BODY[] or BINARY[] fetch attribute: {text!r}")
    peek = kind.endswith(".PEEK")
    base = kind.removesuffix(".PEEK")
    open_at = len(kind)
    raw = text.encode("latin-1")
    close = bracket_end(raw, open_at)
    if close < 0:
        raise ProtocolError(f"Invalid {base}[..] parameter: Missing ']'")
    inner = text[open_at + 1:close]
    after = text[close + 1:]
    paren = inner.find("(")
    if paren >= 0:
        prefix = inner[:paren].rstrip(" ").upper()
        fields, shown = _header_list(inner[paren:])
        section_text = f"{prefix} ({' '.join(shown)})"
    else:
        prefix = inner.upper()
        fields = ()
        section_text = prefix
    number, rest = _split_number(prefix)
    if rest in ("", "MIME", "TEXT", "HEADER"):
        if paren >= 0:
            raise ProtocolError(f"Invalid {base}[..] section")
        if rest == "MIME" and not number:
            raise ProtocolError(f"Invalid {base}[..] section")
    elif rest in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        if paren < 0:
            raise ProtocolError(f"Invalid {base}[..] section")
    else:
        raise ProtocolError(f"Invalid {base}[..] section")
    partial = None if base == "BINARY.SIZE" else _parse_partial(after, base)
    return SectionSpec(base, peek, number, rest, fields, section_text, partial)


def _split_number(section: str) -> tuple[str, str]:
    """imap_msgpart_parse: leading ``1.2.3`` and the rest; ProtocolError if malformed."""
    i = 0
    next_digit = True
    while i < len(section):
        c = section[i]
        if c.isdigit() and c.isascii():
            next_digit = False
        elif not next_digit and c == ".":
            next_digit = True
        else:
            break
        i += 1
    if i == 0:
        return "", section
    if i == len(section):
        if section[-1] == ".":
            raise ProtocolError("Invalid BODY[..] section")
        return section, ""
    if section[i - 1] != ".":
        raise ProtocolError("Invalid BODY[..] section")
    return section[:i - 1], section[i:]


def _header_list(text: str) -> tuple[tuple[bytes, ...], list[str]]:
    """The ``(field ...)`` list: (upper-cased names, as echoed: atoms bare, strings quoted)."""
    reader = TokenReader(text.encode("latin-1"))
    try:
        token = reader.read_token()
    except ProtocolError:
        raise ProtocolError("Invalid BODY[..] parameter: bad header list") from None
    if not isinstance(token, ParenList) or not token.items or \
            text.encode("latin-1")[reader.pos:].strip(b" "):
        raise ProtocolError("Invalid BODY[..] section")
    fields: list[bytes] = []
    shown: list[str] = []
    for item in token.items:
        if isinstance(item, Atom):
            value = item.value.encode("latin-1").upper()
            shown.append(value.decode("latin-1"))
        elif isinstance(item, Quoted):
            value = item.value.upper()
            shown.append('"' + value.decode("latin-1").replace("\\", "\\\\")
                         .replace('"', '\\"') + '"')
        else:
            raise ProtocolError("Invalid BODY[..] parameter: "
                                "Header list contains non-strings")
        fields.append(value)
    return tuple(fields), shown


def _parse_partial(after: str, base: str) -> tuple[int, int | None] | None:
    if not after:
        return None
    m = re.fullmatch(r"<(\d+)(?:\.(\d+))?>", after)
    if m is None:
        raise ProtocolError(f"Invalid {base}[..] parameter: bad partial {after!r}")
    if max(len(g.lstrip("0")) for g in m.groups(default="")) > 19:  # beyond int conversion
        raise ProtocolError(f"Invalid {base}[..] parameter: Too big partial")
    offset = int(m.group(1))
    size = None if m.group(2) is None else int(m.group(2))
    if offset > OFF_T_MAX or (size is not None and size > OFF_T_MAX):
        raise ProtocolError(f"Invalid {base}[..] parameter: Too big partial")
    return offset, size


# --- serving ---------------------------------------------------------------------------------

def find_part(root: Part, number: str) -> Part | None:
    """imap_msgpart_find: the part a section number names, or None."""
    if not number:
        return root
    part: Part | None = root
    nums = number.split(".")
    for i, text in enumerate(nums):
        if part is None:
            return None
        if len(text) > 10:  # beyond any part count (and Python's int-conversion limit)
            return None
        num = int(text)
        more = i + 1 < len(nums)
        if part.flags & MULTIPART:
            part = part.children[max(num, 1) - 1] if max(num, 1) <= len(part.children) else None
        elif num != 1 or (more and not part.flags & RFC822):
            return None
        if part is not None and part.flags & RFC822 and more:
            part = part.children[0]
    return part


def crlf(raw: bytes, start: int, stop: int) -> bytes:
    """``raw[start:stop]`` as served: bare LFs become CRLF."""
    data = raw[start:stop]
    if b"\n" in data and data.count(b"\n") != data.count(b"\r\n"):
        data = _BARE_LF.sub(b"\r\n", data)
    return data


def section(raw: bytes, root: Part, spec: SectionSpec) -> bytes:
    """The whole content of ``spec``'s section (no partial applied), as Dovecot serves it."""
    data = _section_bytes(raw, root, spec)
    return data.replace(b"\0", b"\x80") if b"\0" in data else data


def apply_partial(data: bytes, partial: tuple[int, int | None] | None) -> bytes:
    if partial is None:
        return data
    offset, size = partial
    if offset >= len(data):
        return b""
    return data[offset:] if size is None else data[offset:offset + size]


def locate(root: Part, spec: SectionSpec) -> Part | None:
    """The part whose bytes the section is cut from (the embedded message for HEADER/TEXT
    after a number), or None when the section does not exist."""
    part = find_part(root, spec.number)
    if part is None or not spec.number or spec.text in ("", "MIME"):
        return part
    if not part.flags & RFC822:
        return None
    return part.children[0]


def _section_bytes(raw: bytes, root: Part, spec: SectionSpec) -> bytes:
    part = locate(root, spec)
    if part is None:
        return b""
    text = spec.text
    if text == "":
        if not spec.number:
            return crlf(raw, root.offset, root.end)
        return crlf(raw, part.body_offset, part.end)
    if text in ("MIME", "HEADER"):
        return crlf(raw, part.offset, part.body_offset)
    if text == "TEXT":
        return crlf(raw, part.body_offset, part.end)
    include = text == "HEADER.FIELDS"
    return header_filter(raw, part.offset, set(spec.fields), include,
                         from_cache=include and not spec.number)


def header_filter(raw: bytes, start: int, fields: set[bytes], include: bool,
                  from_cache: bool = False) -> bytes:
    """istream-header-filter with HIDE_BODY: the header at ``start`` (read up to its empty
    line, or the end of the data), keeping lines whose name is (not) in ``fields``.

    ``from_cache``: Dovecot serves the root message's HEADER.FIELDS from its cache of header
    lines (once the mailbox has seen such fetches) with one LF appended, so the result always
    ends with CRLF: an empty line, or the newline of a last header line that had none."""
    end = len(raw)
    out = bytearray()
    pos = start
    seen_eoh = False
    while True:
        line = read_line(raw, pos, end)
        if line is None:
            break
        if line.content_end == line.start and line.newline:
            out += b"\r\n"
            seen_eoh = True
            break
        name, _ = split_name(raw, line, skip_all_lwsp=False)
        keep = (name.upper() in fields) == include
        while True:
            if keep:
                out += raw[line.start:line.content_end]
                if line.newline:
                    out += b"\r\n"
            pos = line.next
            if not continues(raw, line, end):
                break
            next_line = read_line(raw, pos, end)
            assert next_line is not None
            line = next_line
    if from_cache and not seen_eoh:
        out += b"\r\n"
    return bytes(out)
