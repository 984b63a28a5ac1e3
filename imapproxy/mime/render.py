"""The bridge to the FETCH handler (imapproxy/server/fetch.py): cache blobs and items.

- ``structure_blob(raw)``: parse once, serialise for the cache index.
- ``load_structure(blob)``: the Part tree back.
- ``render_item(item, raw, part)``: (response name, value bytes) for one content item, e.g.
  (b"BODY[1.MIME]<0>", b"{7}\\r\\n...").
"""

from __future__ import annotations

import functools
from typing import Protocol

from .fetch_items import fetch_value, literal
from .parse import parse_message
from .part import Part
from .section import crlf, parse_section

__all__ = ["load_structure", "render_item", "served_as_stored", "structure_blob",
           "whole_message", "whole_message_item"]


class ItemLike(Protocol):
    """What render_item needs of imapproxy.protocol.fetch.FetchItem."""

    @property
    def name(self) -> str: ...

    @property
    def section(self) -> str | None: ...

    @property
    def partial(self) -> tuple[int, int | None] | None: ...


def structure_blob(raw: bytes) -> bytes:
    return parse_message(raw).to_bytes()


@functools.lru_cache(maxsize=4096)
def load_structure(blob: bytes) -> Part:
    """The Part tree of an index blob. Memoised: a tree is a pure function of its blob and
    is never changed after loading, so messages read again (webmail re-listing a folder)
    are not decoded again."""
    return Part.from_bytes(blob)


def render_item(item: ItemLike, raw: bytes, part: Part) -> tuple[bytes, bytes]:
    """(name, value) as Dovecot writes them. ProtocolError for a bad section,
    MimeDecodeError (a CommandFailed) when a BINARY fetch cannot be served."""
    if item.section is None:
        return item.name.upper().encode("latin-1"), fetch_value(raw, part, item.name)
    text = f"{item.name}[{item.section}]"
    if item.partial is not None:
        offset, size = item.partial
        text += f"<{offset}>" if size is None else f"<{offset}.{size}>"
    spec = parse_section(text)
    return spec.response_name, fetch_value(raw, part, text)


def whole_message(raw: bytes) -> bytes:
    """BODY[] / RFC822 content without parsing: the bytes as served (bare LF as CRLF, NUL as
    0x80, as ``section`` does for the root)."""
    data = crlf(raw, 0, len(raw))
    return data.replace(b"\0", b"\x80") if b"\0" in data else data


def served_as_stored(raw: bytes) -> bool:
    """True when BODY[] is ``raw`` itself, so it may be copied straight from a cache file."""
    return b"\0" not in raw and raw.count(b"\n") == raw.count(b"\r\n")


def whole_message_item(item: ItemLike, raw: bytes) -> tuple[bytes, bytes] | None:
    """(name, value) for the items that need no part tree (BODY[], RFC822, RFC822.SIZE);
    None for the others."""
    if item.partial is None and (item.name == "RFC822" or (
            item.name in ("BODY", "BODY.PEEK") and item.section == "")):
        return (b"RFC822" if item.name == "RFC822" else b"BODY[]"), literal(whole_message(raw))
    if item.name == "RFC822.SIZE":
        return b"RFC822.SIZE", b"%d" % len(crlf(raw, 0, len(raw)))
    return None
