"""The bridge to the FETCH handler (imapproxy/server/fetch.py): cache blobs and items.

- ``structure_blob(raw)``: parse once, serialise for the cache index.
- ``load_structure(blob)``: the Part tree back.
- ``render_item(item, raw, part)``: (response name, value bytes) for one content item, e.g.
  (b"BODY[1.MIME]<0>", b"{7}\\r\\n...").
"""

from __future__ import annotations

from typing import Protocol

from .fetch_items import fetch_value
from .parse import parse_message
from .part import Part
from .section import parse_section

__all__ = ["load_structure", "render_item", "structure_blob"]


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


def load_structure(blob: bytes) -> Part:
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
