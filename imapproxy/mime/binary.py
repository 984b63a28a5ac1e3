"""BINARY[section] and BINARY.SIZE[section] (RFC 3516) as Dovecot 2.3 serves them
(lib-storage/index/index-mail-binary.c, lib-imap-storage/imap-msgpart.c).

A part's body is decoded by its own Content-Transfer-Encoding (the last such header; a
folded one counts as unknown). With headers included (``BINARY[]``, and every part below a
multipart or message/rfc822 being fetched), a decoded part's header loses its
Content-Transfer-Encoding lines and gets ``Content-Transfer-Encoding: binary`` before its
empty line; everything between parts is kept. ``~{n}`` is used when something was decoded or
the data has NULs. BINARY.SIZE decodes the whole message and adds up per-part size changes,
so one undecodable part anywhere makes every BINARY.SIZE of the message fail; sections other
than a part's body or the whole message are served as in BODY[].
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .decode import CTE_78BIT, CTE_BASE64, CTE_QP, CTE_UNKNOWN, base64_decode, parse_cte, qp_decode
from .errors import UnknownCte
from .headers import continues, read_line, split_name
from .part import HAS_NULS, RFC822, Part
from .section import SectionSpec, crlf, find_part, section

__all__ = ["binary", "binary_size"]

_CTE_NAME = b"content-transfer-encoding"
_CTE_BINARY_LINE = b"Content-Transfer-Encoding: binary\r\n"
_U64 = 2**64


@dataclass(slots=True)
class _Ctx:
    raw: bytes
    blocks: list[bytes] = field(default_factory=list)
    copy_start: int = 0
    converted: bool = False
    header_converted: bool = False
    has_nuls: bool = False
    # per part offset: (converted header size or None, converted body size or None)
    sizes: dict[int, list[int | None]] = field(default_factory=dict)

    def copy_to(self, end: int) -> None:
        if end > self.copy_start:
            self.blocks.append(crlf(self.raw, self.copy_start, end))


def _binary_target(root: Part, spec: SectionSpec) -> tuple[Part | None, bool] | None:
    """(part, include_header) for a decoding fetch; None if the section is not decoded."""
    if spec.text == "" and not spec.number:
        return root, True
    if spec.text == "":
        return find_part(root, spec.number), False
    if spec.text == "TEXT":
        if not spec.number:
            return root, False
        part = find_part(root, spec.number)
        if part is None or not part.flags & RFC822:
            return None, False
        return part.children[0], False
    return None


def binary(raw: bytes, root: Part, spec: SectionSpec) -> tuple[bytes, bool]:
    """(content, literal8) of ``BINARY[section]``, no partial applied. literal8 says the value
    is written as ``~{n}``. Raises UnknownCte / InvalidMimeData / TruncatedMimeData."""
    target = _binary_target(root, spec)
    if target is None:
        return section(raw, root, spec), False
    part, include_header = target
    if part is None:
        return b"", False
    ctx = _Ctx(raw)
    _add_part(ctx, part, include_header)
    data = b"".join(ctx.blocks)
    if ctx.header_converted and not ctx.converted:
        # Dovecot then serves the undecoded message cut to the decoded length.
        start = part.offset if include_header else part.body_offset
        data = crlf(raw, start, len(raw))[:len(data)]
    literal8 = ctx.converted or ctx.has_nuls
    if not literal8 and b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    return data, literal8


def binary_size(raw: bytes, root: Part, spec: SectionSpec) -> int:
    """The number ``BINARY.SIZE[section]`` answers."""
    target = _binary_target(root, spec)
    if target is None:
        return len(section(raw, root, spec))
    part, include_header = target
    if part is None:
        return 0
    ctx = _Ctx(raw)
    _add_part(ctx, root, True)
    by_offset: dict[int, Part] = {}
    for _, p in _all_parts(root):
        by_offset.setdefault(p.offset, p)
    # Dovecot compares physical offsets in its stored copy (CRLF saved as LF by default)
    # with a virtual end offset, so later parts can fall "inside" this one: replicated.
    start = _stored(raw, part.offset)
    size = part.header_vsize + part.body_vsize
    end = start + size
    root_header: int | None = None
    for offset, (header, body) in ctx.sizes.items():
        mp = by_offset[offset]
        if start <= _stored(raw, mp.offset) < end:
            bin_header = mp.header_vsize if header is None else header
            if mp.offset == part.offset:
                root_header = bin_header
            size += bin_header + (body or 0) - mp.header_vsize - mp.body_vsize
    if not include_header:
        size -= part.header_vsize if root_header is None else root_header
    return size % _U64


def _stored(raw: bytes, offset: int) -> int:
    """Where ``offset`` lies in Dovecot's stored copy, which has every CRLF as LF."""
    return offset - raw.count(b"\r\n", 0, offset)


def _all_parts(part: Part) -> list[tuple[int, Part]]:
    out = [(0, part)]
    for child in part.children:
        out.extend(_all_parts(child))
    return out


def _header_cte(ctx: _Ctx, part: Part) -> tuple[int, list[tuple[int, int, bool]], bool]:
    """Scan a part's header like Dovecot does for BINARY: (cte, the lines as (start, stop,
    is_cte_line), whether an empty line ended it). Reads past a header cut by a boundary."""
    raw = ctx.raw
    end = len(raw)
    cte = CTE_78BIT
    lines: list[tuple[int, int, bool]] = []
    pos = part.offset
    eoh = False
    while True:
        line = read_line(raw, pos, end)
        if line is None:
            break
        if line.content_end == line.start and line.newline:
            eoh = True
            pos = line.next
            break
        name, value_start = split_name(raw, line, skip_all_lwsp=False)
        is_cte = name.lower() == _CTE_NAME
        folded = continues(raw, line, end)
        if is_cte:
            cte = CTE_UNKNOWN if folded else parse_cte(raw[value_start:line.content_end])
        lines.append((line.start, line.content_end, is_cte))
        if line.newline:
            lines[-1] = (line.start, line.next, is_cte)
        pos = line.next
        while folded:
            next_line = read_line(raw, pos, end)
            assert next_line is not None
            line = next_line
            lines.append((line.start, line.next, is_cte))
            pos = line.next
            folded = continues(raw, line, end)
    if raw.find(b"\0", part.offset, pos) >= 0:
        ctx.has_nuls = True
    return cte, lines, eoh


def _add_part(ctx: _Ctx, part: Part, include_header: bool) -> None:
    cte, lines, eoh = _header_cte(ctx, part)
    if cte == CTE_UNKNOWN:
        raise UnknownCte()
    decoded = cte in (CTE_QP, CTE_BASE64)
    if include_header:
        if decoded:
            if ctx.copy_start != 0:
                ctx.copy_to(part.offset)
            header = bytearray()
            for start, stop, is_cte in lines:
                if not is_cte:
                    header += crlf(ctx.raw, start, stop)
            if eoh:
                header += _CTE_BINARY_LINE + b"\r\n"
            ctx.blocks.append(bytes(header))
            ctx.header_converted = True
            ctx.sizes.setdefault(part.offset, [None, None])[0] = len(header)
        else:
            ctx.copy_to(part.body_offset)
    ctx.copy_start = part.body_offset
    part_end = part.end
    if part.children:
        for child in part.children:
            _add_part(ctx, child, True)
        ctx.copy_to(part_end)
        ctx.copy_start = part_end
        return
    if part.body_size == 0:
        ctx.copy_start = part_end
        return
    raw = ctx.raw
    if cte == CTE_QP:
        body = qp_decode(raw[part.body_offset:part_end])
    elif cte == CTE_BASE64:
        body = base64_decode(raw[part.body_offset:part_end])
    else:
        if part.flags & HAS_NULS:
            ctx.has_nuls = True
        ctx.blocks.append(crlf(raw, part.body_offset, part_end))
        ctx.copy_start = part_end
        return
    ctx.converted = True
    ctx.blocks.append(body)
    ctx.sizes.setdefault(part.offset, [None, None])[1] = len(body)
    ctx.copy_start = part_end
