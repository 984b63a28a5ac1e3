"""Filtered messages are valid MIME for a real server: Dovecot, given the filtered bytes,
computes the same BODYSTRUCTURE and RFC822.SIZE as imapproxy.mime does."""

from __future__ import annotations

import imaplib
import re

from filters.image_recode import make_filter as make_image_filter
from filters.plaintext import make_filter as make_plaintext_filter
from imapproxy.filtering.api import FilterContext
from imapproxy.mime import bodystructure, parse_message
from tests.filters.images import attachment_message, encode, jpeg_with_exif, photo, related_message
from tests.mailgen import generated

CTX = FilterContext(user="alice")


def filtered_messages() -> list[bytes]:
    images = make_image_filter({"format": "jpeg"})
    plain = make_plaintext_filter({})
    sources = [
        related_message(encode(photo(1600, 1200), "PNG"), "png", filename="a.png"),
        attachment_message(jpeg_with_exif(2000, 1500, 8), "image", "jpeg", "b.jpg"),
    ]
    out = [m for m in (images.apply(raw, CTX) for raw in sources) if m is not None]
    assert len(out) == 2
    for raw in sources + generated(40):
        flat = plain.apply(raw, CTX)
        if flat is not None and b"\x1b" not in flat and flat.isascii():
            out.append(flat)
    return out


def test_dovecot_agrees_on_structure_and_size(imap_direct: imaplib.IMAP4) -> None:
    messages = filtered_messages()
    assert len(messages) >= 20
    for raw in messages:
        typ, _ = imap_direct.append("INBOX", None, None, raw)
        assert typ == "OK"
    imap_direct.select("INBOX")
    for number, raw in enumerate(messages, 1):
        typ, data = imap_direct.fetch(str(number), "(RFC822.SIZE BODYSTRUCTURE)")
        assert typ == "OK" and isinstance(data[0], bytes)
        root = parse_message(raw)
        size = re.search(rb"RFC822\.SIZE (\d+)", data[0])
        assert size is not None and int(size.group(1)) == root.vsize
        assert b"BODYSTRUCTURE " + bodystructure(root) in data[0], number
