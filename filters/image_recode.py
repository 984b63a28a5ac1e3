"""image-recode: downscale and recompress big images, for slow links and small screens.

Every image part (image/*, or application/octet-stream named like an image) larger than the
box or the byte cap is decoded with Pillow, turned upright (EXIF orientation), scaled to fit
the box, stripped of metadata and re-encoded; only that part's body and, when the format
changes, its Content-Type and filename extension are rewritten (see _mime_splice). Anything
doubtful is left as it was: images under a multipart/signed (the signature would then look
forged), animated or multi-frame images, data Pillow cannot read,
truncated data, decompression bombs (refused from the declared size, before decoding), and
results that are not smaller than the original. See docs/image-recode.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from imapproxy.filtering.api import FilterContext
from imapproxy.mime import parse_message
from imapproxy.mime.decode import CTE_BASE64
from imapproxy.mime.errors import MimeDecodeError
from imapproxy.mime.part import Part

from ._mime_splice import (
    CRLF,
    Edit,
    HeaderField,
    base64_lines,
    body_bytes,
    content_type,
    field_value,
    filename,
    header_end,
    header_fields,
    leaves,
    part_cte,
    splice,
)

FORMATS = ("keep", "jpeg", "webp")
IMAGE_EXTENSIONS = frozenset({
    "jpg", "jpeg", "jpe", "jfif", "png", "apng", "gif", "webp", "bmp", "dib", "tif", "tiff",
    "ico", "ppm", "pgm", "pbm", "pnm", "tga", "pcx", "jp2", "j2k", "heic", "heif", "avif",
})
# Pillow format name -> (MIME subtype, filename extension)
_OUTPUT = {"JPEG": ("jpeg", "jpg"), "PNG": ("png", "png"), "WEBP": ("webp", "webp")}
_PASSTHROUGH_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})  # what "keep" keeps
_RESAMPLABLE = frozenset({"RGB", "RGBA", "L", "LA", "CMYK"})
_SOURCE_MODES = _RESAMPLABLE | {"1", "P", "PA", "RGBX", "RGBa", "La", "YCbCr"}


@dataclass(frozen=True)
class Settings:
    """The ``[filters.image-recode]`` table."""

    max_width: int = 1280
    max_height: int = 1280
    max_bytes: int = 256 * 1024  # recode also an image in the box whose data is bigger
    quality: int = 75
    format: str = "keep"
    strip_metadata: bool = True
    # Images declaring more pixels are left alone, undecoded (a 50 MP phone photo passes;
    # decoding one takes ~150 MB). Pillow refuses over 2x89 MP whatever this says.
    max_pixels: int = 50_000_000

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Settings:
        """Validated settings; ValueError naming the bad key."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(table) - known)
        if unknown:
            raise ValueError(f"image-recode: unknown setting(s): {', '.join(unknown)}")
        settings = cls(**dict(table))
        for key in ("max_width", "max_height", "max_bytes", "max_pixels"):
            value = getattr(settings, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"image-recode: {key} must be a positive integer")
        if isinstance(settings.quality, bool) or not isinstance(settings.quality, int) \
                or not 1 <= settings.quality <= 100:
            raise ValueError("image-recode: quality must be an integer from 1 to 100")
        if settings.format not in FORMATS:
            raise ValueError(f"image-recode: format must be one of {', '.join(FORMATS)}")
        if not isinstance(settings.strip_metadata, bool):
            # ValueError, not TypeError: the FilterFactory contract (filtering/api.py)
            raise ValueError("image-recode: strip_metadata must be true or false")  # noqa: TRY004
        return settings


@dataclass(frozen=True)
class Recoded:
    data: bytes
    pil_format: str  # the output's Pillow format name
    source_format: str


class ImageRecodeFilter:
    """The MessageFilter (imapproxy/filtering/api.py) for image recoding."""

    name = "image-recode"
    version = "1"
    cache_output = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def fingerprint(self) -> str:
        text = json.dumps(asdict(self.settings), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def apply(self, raw: bytes, context: FilterContext) -> bytes | None:
        root = parse_message(raw)
        edits: list[Edit] = []
        for part in leaves(root, signed=False):  # a changed signed part looks forged
            if is_image_part(part):
                edits.extend(self._part_edits(raw, part))
        return splice(raw, edits) if edits else None

    def _part_edits(self, raw: bytes, part: Part) -> list[Edit]:
        try:
            data = body_bytes(raw, part)
        except MimeDecodeError:
            return []  # broken transfer encoding: not ours to repair
        recoded = recode(data, self.settings)
        if recoded is None:
            return []
        body = base64_lines(recoded.data)
        if raw[part.body_offset:part.end].endswith(b"\n"):
            body += CRLF  # the part ends the message: keep its final newline
        return [*_header_edits(raw, part, recoded), Edit(part.body_offset, part.end, body)]


def make_filter(settings: Mapping[str, Any]) -> ImageRecodeFilter:
    """The FilterFactory of the ``imapproxy.filters`` entry point ``image-recode``."""
    try:
        return ImageRecodeFilter(Settings.from_table(settings))
    except TypeError as exc:  # a value of the wrong type reached a comparison
        raise ValueError(f"image-recode: bad settings: {exc}") from exc


def is_image_part(part: Part) -> bool:
    kind, subtype = content_type(part)
    if kind == "image":
        return True
    if (kind, subtype) == ("application", "octet-stream"):
        name = filename(part) or ""
        return name.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS and "." in name
    return False


def recode(data: bytes, settings: Settings) -> Recoded | None:
    """The smaller image, or None when it is left alone (see the module docstring)."""
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            return _recode_open(im, data, settings)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError, EOFError, MemoryError):
        # unreadable, truncated or corrupt data, or a bomb: served as it is
        return None


def _recode_open(im: Image.Image, data: bytes, settings: Settings) -> Recoded | None:
    width, height = im.size  # from the header: nothing is decoded yet
    if width < 1 or height < 1 or width * height > settings.max_pixels:
        return None
    if im.mode not in _SOURCE_MODES:  # 16-bit or float samples: no safe 8-bit mapping
        return None
    if getattr(im, "n_frames", 1) > 1 or getattr(im, "is_animated", False):
        return None
    source_format = im.format or ""
    rotated = _orientation(im) in (5, 6, 7, 8)
    upright = (height, width) if rotated else (width, height)
    scale = min(1.0, settings.max_width / upright[0], settings.max_height / upright[1])
    if scale >= 1.0 and len(data) <= settings.max_bytes:
        return None
    if scale < 1.0 and source_format == "JPEG":
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (its DCT scaling averages, so this is
        # a good first reduction and 2-3x faster), never below the target size.
        im.draft(im.mode, (math.ceil(width * scale), math.ceil(height * scale)))
    im.load()
    icc = im.info.get("icc_profile") if im.mode != "CMYK" else None  # a CMYK profile
    exif = None if settings.strip_metadata else im.getexif()
    source_mode = im.mode
    alpha = _uses_alpha(im)
    im = ImageOps.exif_transpose(im)
    if im.mode not in _RESAMPLABLE:  # Pillow scales palette images with NEAREST: ugly
        im = im.convert("RGBA" if alpha else "RGB")
    if scale < 1.0:
        box = (max(1, round(upright[0] * scale)), max(1, round(upright[1] * scale)))
        im = im.resize(box, Image.Resampling.LANCZOS, reducing_gap=3.0)
    out_format = _output_format(source_format, settings.format, alpha, source_mode)
    im = _convert_for(im, out_format, alpha)
    if out_format == "PNG" and source_mode == "P":  # a palette image stays one (small PNG)
        im = im.quantize(256, Image.Quantize.FASTOCTREE if alpha else Image.Quantize.MEDIANCUT)
    im.info = {}  # comments, XMP, text chunks: only what is passed below is written
    buf = io.BytesIO()
    save: dict[str, Any] = {}
    if icc:
        save["icc_profile"] = icc
    if exif is not None:
        exif[0x0112] = 1  # the pixels are upright now
        save["exif"] = exif.tobytes()
    if out_format == "JPEG":
        save.update(quality=settings.quality, optimize=True, progressive=True)
    elif out_format == "WEBP":
        save.update(quality=settings.quality, method=4)
    else:
        save.update(compress_level=6)
    im.save(buf, out_format, **save)
    out = buf.getvalue()
    if len(out) >= len(data):
        return None  # never make an image bigger
    return Recoded(out, out_format, source_format)


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except (ValueError, TypeError, OSError, SyntaxError):
        return 1


def _uses_alpha(im: Image.Image) -> bool:
    """Whether some pixel is not fully opaque (an unused alpha channel is dropped)."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        low, _high = im.convert("RGBA").getchannel("A").getextrema()
        return isinstance(low, int | float) and low < 255
    return False


def _output_format(source: str, wanted: str, alpha: bool, mode: str) -> str:
    """JPEG/WebP/PNG. Transparent images never become JPEG (they stay PNG, or WebP when asked);
    "keep" keeps JPEG, PNG and WebP, and turns other formats (GIF, BMP, TIFF, ...) into PNG
    for transparent, palette or bilevel images, JPEG otherwise."""
    if wanted == "webp":
        return "WEBP"
    if wanted == "jpeg":
        return "PNG" if alpha else "JPEG"
    if source in _PASSTHROUGH_FORMATS:
        return source
    return "PNG" if alpha or mode in ("P", "1") else "JPEG"


def _convert_for(im: Image.Image, out_format: str, alpha: bool) -> Image.Image:
    """RGB(A) or L for the encoder (CMYK becomes RGB: CMYK JPEGs show wrongly in clients)."""
    if alpha:
        return im if im.mode in ("RGBA", "LA") and out_format == "PNG" else im.convert("RGBA")
    if im.mode in ("L", "LA") and out_format != "WEBP":
        return im if im.mode == "L" else im.convert("L")
    return im if im.mode == "RGB" else im.convert("RGB")


# --- headers ---------------------------------------------------------------------------------

_TYPE = re.compile(rb"^([ \t\r\n]*)([^/;\s]+)/([^;\s]+)")
_NAME_PARAM = re.compile(rb"((?:file)?name=\"?[^\";\r\n]*\.)([A-Za-z0-9]{2,5})(?=[\"\s;]|$)",
                         re.IGNORECASE)
_SIZE_PARAM = re.compile(rb"(;\s*size=)(\"?)\d+\2", re.IGNORECASE)
_STALE = (b"content-md5", b"content-length")  # would describe the old data


def _header_edits(raw: bytes, part: Part, recoded: Recoded) -> list[Edit]:
    """The header lines that must change; every other header byte stays.

    Content-Transfer-Encoding becomes base64; Content-MD5 and Content-Length go; a
    Content-Disposition ``size`` parameter gets the new size. When the format changed, an
    image/* Content-Type gets the new subtype, and plain (not RFC 2231-encoded) filename and
    name parameters the new extension."""
    edits: list[Edit] = []
    seen_type = seen_cte = False
    for field in header_fields(raw, part):
        text = raw[field.start:field.stop]
        new = text
        if field.name == b"content-transfer-encoding" and not seen_cte:
            seen_cte = True
            if part_cte(part) != CTE_BASE64 or field_value(raw, field).lower() != b"base64":
                new = b"Content-Transfer-Encoding: base64" + CRLF
        elif field.name in _STALE:
            new = b""
        elif field.name in (b"content-type", b"content-disposition"):
            if field.name == b"content-disposition":
                new = _SIZE_PARAM.sub(lambda m: m.group(1) + m.group(2)
                                      + b"%d" % len(recoded.data) + m.group(2), new)
            if recoded.pil_format != recoded.source_format:
                new = _renamed(new, field, recoded.pil_format, first_type=not seen_type)
            seen_type = seen_type or field.name == b"content-type"
        if new != text:
            edits.append(Edit(field.start, field.stop, new))
    if not seen_cte:
        at = header_end(raw, part)
        edits.append(Edit(at, at, b"Content-Transfer-Encoding: base64" + CRLF))
    return edits


def _renamed(text: bytes, field: HeaderField, pil_format: str, first_type: bool) -> bytes:
    """A Content-Type or Content-Disposition field for the new format."""
    subtype, extension = _OUTPUT[pil_format]
    text = _NAME_PARAM.sub(lambda m: m.group(1) + extension.encode(), text)
    if field.name != b"content-type" or not first_type:
        return text
    cut = field.value_start - field.start
    head, value = text[:cut], text[cut:]
    match = _TYPE.match(value)
    if match and match.group(2).lower() == b"image":
        value = value[:match.start(3)] + subtype.encode() + value[match.end(3):]
    return head + value
