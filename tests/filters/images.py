"""Test images made with Pillow and messages that carry them, built with the email package;
and the hand-made odd MIME shapes of tests/mime/messages.

The pictures are "photo-like" (smooth gradients plus noise) so that JPEG sizes behave like
real photos: a flat colour would compress to nothing and prove little.
"""

from __future__ import annotations

import io
import struct
import zlib
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from PIL import Image

from filters._mime_splice import body_bytes
from imapproxy.mime import parse_message
from imapproxy.mime.part import Part

ODD_SHAPES = Path(__file__).resolve().parents[1] / "mime" / "messages"


def odd_shapes() -> list[bytes]:
    """tests/mime/messages: broken boundaries, bad encodings, NULs, deep nesting, ..."""
    found = [path.read_bytes() for path in sorted(ODD_SHAPES.glob("*.eml"))]
    assert len(found) > 40
    return found



def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """An RGB picture with gradients and grain."""
    x = Image.linear_gradient("L").resize((width, height))
    y = x.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    noise = Image.effect_noise((width, height), 40 + seed)
    return Image.merge("RGB", (x, y, noise))


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def jpeg_with_exif(width: int, height: int, orientation: int, make: str = "TestCam") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = make
    return encode(photo(width, height), "JPEG", quality=92, exif=exif.tobytes(),
                  comment=b"secret comment")


def png_with_alpha(width: int, height: int) -> bytes:
    im = photo(width, height).convert("RGBA")
    alpha = Image.linear_gradient("L").resize((width, height))  # 0 (transparent) at the top
    im.putalpha(alpha)
    return encode(im, "PNG")


def animated_gif(width: int, height: int) -> bytes:
    frames = [photo(width, height, seed).convert("P") for seed in (0, 30)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG signature and IHDR declaring a huge image, and a tiny IDAT: decoding it
    would need width*height*3 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def related_message(image: bytes, subtype: str, filename: str = "photo.jpg",
                    cid: str = "img1@example.org") -> bytes:
    """multipart/mixed: multipart/related (HTML + inline image with Content-ID), a PDF."""
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.org>"
    msg["To"] = "bob@example.org"
    msg["Subject"] = "Holiday pictures"
    msg.set_content("See the picture.\n")
    msg.add_alternative(f'<p>See <img src="cid:{cid}"></p>\n', subtype="html")
    html = list(msg.iter_parts())[1]
    html.add_related(image, "image", subtype, cid=f"<{cid}>", filename=filename,
                     disposition="inline")
    inline = list(html.iter_parts())[1]
    inline["Content-Description"] = "The beach"
    msg.add_attachment(b"%PDF-1.4 not really\n" * 50, "application", "pdf",
                       filename="report.pdf")
    return msg.as_bytes(policy=SMTP)


def attachment_message(image: bytes, maintype: str, subtype: str, filename: str) -> bytes:
    """A text part and one image attachment with a filename."""
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["Subject"] = "attachment"
    msg.set_content("Attached.\n")
    msg.add_attachment(image, maintype, subtype, filename=filename)
    return msg.as_bytes(policy=SMTP)


def part_by_number(raw: bytes, number: str) -> Part:
    return dict(parse_message(raw).walk())[number]


def image_of(raw: bytes, number: str) -> Image.Image:
    """The decoded image of part ``number``."""
    im = Image.open(io.BytesIO(body_bytes(raw, part_by_number(raw, number))))
    im.load()
    return im
