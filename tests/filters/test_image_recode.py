"""The image-recode filter on real images generated with Pillow, in messages built with the
email package: sizes, formats, orientation, metadata, headers, untouched bytes, and every
case that must leave a part alone."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from email import message_from_bytes
from email.policy import SMTP

import pytest
from PIL import Image

from filters._mime_splice import base64_lines, body_bytes, decoded_size
from filters.image_recode import ImageRecodeFilter, make_filter
from imapproxy.filtering.api import FilterContext, MessageFilter
from imapproxy.mime import bodystructure, parse_message
from tests.filters.images import (
    animated_gif,
    attachment_message,
    encode,
    image_of,
    jpeg_with_exif,
    odd_shapes,
    part_by_number,
    photo,
    png_bomb_header,
    png_with_alpha,
    related_message,
)
from tests.mailgen import corpus_messages, generated

CTX = FilterContext(user="alice")
IMAGE = "1.2.2"  # the inline image in related_message()


def run(raw: bytes, **settings: object) -> bytes | None:
    return make_filter(settings).apply(raw, CTX)


def run_small(raw: bytes, **settings: object) -> bytes | None:
    """With a 400x400 box, so that tests can use small (fast) pictures."""
    return run(raw, max_width=400, max_height=400, **settings)


def header(raw: bytes, number: str) -> bytes:
    part = part_by_number(raw, number)
    return raw[part.offset:part.body_offset]


def assert_valid(out: bytes) -> None:
    """Parses, renders a BODYSTRUCTURE, and has CRLF line ends only."""
    assert bodystructure(parse_message(out)).startswith(b"(")
    assert out.count(b"\n") == out.count(b"\r\n")


def assert_others_identical(raw: bytes, out: bytes, changed: set[str]) -> None:
    """Every leaf part not in ``changed`` is byte-identical, header and body."""
    before, after = dict(parse_message(raw).walk()), dict(parse_message(out).walk())
    assert before.keys() == after.keys()
    for number, part in before.items():
        if number and number not in changed and not part.children:
            new = after[number]
            assert raw[part.offset:part.end] == out[new.offset:new.end], number


def test_the_filter_follows_the_contract() -> None:
    f = make_filter({})
    assert isinstance(f, MessageFilter)
    assert (f.name, f.version, f.cache_output) == ("image-recode", "1", True)
    assert f.fingerprint() == make_filter({}).fingerprint()
    assert f.fingerprint() != make_filter({"quality": 60}).fingerprint()
    assert f.fingerprint() != make_filter({"format": "webp"}).fingerprint()


@pytest.mark.parametrize("table", [
    {"max_width": 0}, {"quality": 101}, {"format": "gif"}, {"strip_metadata": "yes"},
    {"max_bytes": "big"}, {"no_such_setting": 1}, {"max_height": True},
])
def test_bad_settings_are_value_errors(table: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="image-recode"):
        make_filter(table)


def test_big_jpeg_is_turned_upright_scaled_and_stripped() -> None:
    raw = related_message(jpeg_with_exif(2400, 1600, orientation=6), "jpeg")
    out = run(raw)
    assert out is not None
    assert_valid(out)
    im = image_of(out, IMAGE)
    # stored 2400x1600 with "rotate 90°": upright it is 1600x2400, fitted into 1280x1280
    assert (im.format, im.size) == ("JPEG", (853, 1280))
    assert dict(im.getexif()) == {}
    assert "comment" not in im.info
    assert len(out) < len(raw) / 5
    # the part's header is byte-identical (already base64, same format)
    assert header(out, IMAGE) == header(raw, IMAGE)
    assert_others_identical(raw, out, {IMAGE})


def test_base64_lines_are_76_characters() -> None:
    raw = related_message(jpeg_with_exif(2000, 1500, orientation=1), "jpeg")
    out = run(raw)
    assert out is not None
    part = part_by_number(out, IMAGE)
    lines = out[part.body_offset:part.end].split(b"\r\n")
    assert all(len(line) == 76 for line in lines[:-2]) and 0 < len(lines[-2]) <= 76


def test_metadata_is_kept_when_asked_with_orientation_reset() -> None:
    raw = attachment_message(jpeg_with_exif(2400, 1600, orientation=6), "image", "jpeg",
                             "p.jpg")
    out = run(raw, strip_metadata=False)
    assert out is not None
    exif = image_of(out, "2").getexif()
    assert exif.get(0x010F) == "TestCam" and exif.get(0x0112) == 1
    assert image_of(out, "2").size == (853, 1280)


def test_png_with_alpha_stays_png_even_when_jpeg_is_asked() -> None:
    raw = attachment_message(png_with_alpha(800, 600), "image", "png", "logo.png")
    for fmt in ("keep", "jpeg"):
        out = run_small(raw, format=fmt)
        assert out is not None
        im = image_of(out, "2")
        assert (im.format, im.mode, im.size) == ("PNG", "RGBA", (400, 300))
        assert im.getchannel("A").getextrema()[0] == 0  # transparency survived
        assert header(out, "2") == header(raw, "2")


def test_opaque_png_to_jpeg_updates_type_and_extension_only() -> None:
    png = encode(photo(800, 800), "PNG")
    raw = related_message(png, "png", filename="shot.png")
    out = run_small(raw, format="jpeg")
    assert out is not None
    im = image_of(out, IMAGE)
    assert (im.format, im.size) == ("JPEG", (400, 400))
    before, after = header(raw, IMAGE), header(out, IMAGE)
    assert b"Content-Type: image/jpeg\r\n" in after
    assert b'filename="shot.jpg"' in after
    assert before.replace(b"image/png", b"image/jpeg").replace(b"shot.png", b"shot.jpg") \
        == after
    assert bodystructure(parse_message(out)).count(b'"image" "jpeg"') == 1
    assert_others_identical(raw, out, {IMAGE})


def test_exact_part_header_after_a_format_change() -> None:
    png = encode(photo(600, 600), "PNG")
    part_header = (b"Content-Type: image/png;\r\n name=shot.png\r\n"
                   b"Content-Disposition: attachment; filename=\"shot.png\"; size=%d\r\n"
                   b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
                   b"Content-Transfer-Encoding: base64\r\nX-Attachment-Id: f_1\r\n\r\n"
                   % len(png))
    raw = (b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
           b"Content-Type: text/plain\r\n\r\nhi\r\n--b\r\n" + part_header
           + base64_lines(png) + b"\r\n--b--\r\n")
    out = run_small(raw, format="jpeg")
    assert out is not None
    size = len(body_bytes(out, part_by_number(out, "2")))
    assert header(out, "2") == (
        b"Content-Type: image/jpeg;\r\n name=shot.jpg\r\n"
        b"Content-Disposition: attachment; filename=\"shot.jpg\"; size=%d\r\n"
        b"Content-Transfer-Encoding: base64\r\nX-Attachment-Id: f_1\r\n\r\n" % size)
    assert size < len(png)
    assert_others_identical(raw, out, {"2"})


def test_webp_is_recoded_as_webp_and_format_webp_converts() -> None:
    webp = encode(photo(800, 800), "WEBP", quality=95)
    raw = attachment_message(webp, "image", "webp", "w.webp")
    out = run_small(raw)
    assert out is not None
    assert (image_of(out, "2").format, image_of(out, "2").size) == ("WEBP", (400, 400))
    jpeg_raw = attachment_message(jpeg_with_exif(1000, 500, 1), "image", "jpeg", "a.jpg")
    out = run_small(jpeg_raw, format="webp")
    assert out is not None
    assert image_of(out, "2").format == "WEBP"
    assert b'Content-Type: image/webp' in header(out, "2")
    assert b'filename="a.webp"' in header(out, "2")


def test_octet_stream_with_image_name_is_recoded_and_keeps_its_type() -> None:
    raw = attachment_message(jpeg_with_exif(2400, 1600, 1), "application", "octet-stream",
                             "IMG_0001.JPG")
    out = run(raw)
    assert out is not None
    assert image_of(out, "2").size == (1280, 853)
    assert header(out, "2") == header(raw, "2")


def test_bmp_and_still_gif_are_recoded() -> None:
    bmp = attachment_message(encode(photo(750, 500), "BMP"), "image", "bmp", "scan.bmp")
    out = run_small(bmp)
    assert out is not None
    assert image_of(out, "2").format == "JPEG"
    assert b"image/jpeg" in header(out, "2") and b"scan.jpg" in header(out, "2")
    gif = attachment_message(encode(photo(600, 600).convert("P"), "GIF"), "image", "gif",
                             "g.gif")
    out = run_small(gif)
    assert out is not None
    assert (image_of(out, "2").format, image_of(out, "2").size) == ("PNG", (400, 400))


def test_cmyk_jpeg_becomes_rgb_and_16_bit_grey_is_left_alone() -> None:
    cmyk = encode(photo(1600, 1200).convert("CMYK"), "JPEG", quality=95)
    out = run(attachment_message(cmyk, "image", "jpeg", "print.jpg"))
    assert out is not None
    assert (image_of(out, "2").mode, image_of(out, "2").size) == ("RGB", (1280, 960))
    grey = photo(1600, 1200).convert("L")
    deep = Image.frombytes("I;16", grey.size, grey.tobytes() * 2)
    assert run(attachment_message(encode(deep, "PNG"), "image", "png", "scan.png")) is None


def test_image_over_the_byte_cap_is_recompressed_at_its_size() -> None:
    data = encode(photo(1000, 800), "JPEG", quality=100)
    assert len(data) > 256 * 1024
    out = run(attachment_message(data, "image", "jpeg", "big.jpg"))
    assert out is not None
    im = image_of(out, "2")
    assert im.size == (1000, 800)
    part = part_by_number(out, "2")
    assert part.body_size < len(data)


LEFT_ALONE: dict[str, Callable[[], bytes]] = {
    "small": lambda: encode(photo(200, 100), "JPEG"),
    "animated-gif": lambda: animated_gif(800, 800),
    "bomb-10-gigapixels": lambda: png_bomb_header(),
    "bomb-400-megapixels": lambda: png_bomb_header(20_000, 20_000),
    "truncated-jpeg": lambda: jpeg_with_exif(1600, 1200, 1)[:150_000],
    "corrupt-jpeg": lambda: b"\xff\xd8\xff\xe0 this is not a jpeg" * 20_000,
    "empty": lambda: b"",
}


@pytest.mark.parametrize("case", LEFT_ALONE)
def test_parts_that_must_be_left_alone(case: str) -> None:
    raw = attachment_message(LEFT_ALONE[case](), "image", "jpeg", "x.jpg")
    assert run_small(raw) is None


def test_images_declaring_too_many_pixels_are_not_decoded() -> None:
    raw = attachment_message(jpeg_with_exif(2000, 1500, 1), "image", "jpeg", "x.jpg")
    assert run(raw) is not None
    assert run(raw, max_pixels=2_999_999) is None


def test_animated_webp_is_left_alone() -> None:
    frames = [photo(1500, 1500, seed) for seed in (0, 30)]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    assert run(attachment_message(buf.getvalue(), "image", "webp", "a.webp")) is None


def test_an_image_never_gets_bigger() -> None:
    data = encode(photo(300, 300), "JPEG", quality=10)
    raw = attachment_message(data, "image", "jpeg", "tiny.jpg")
    assert run(raw, max_bytes=1, quality=100) is None


def test_broken_base64_is_left_alone() -> None:
    raw = attachment_message(jpeg_with_exif(2000, 1500, 1), "image", "jpeg", "x.jpg")
    part = part_by_number(raw, "2")
    broken = raw[:part.body_offset + 10] + b"!!!!" + raw[part.body_offset + 10:]
    assert run(broken) is None


def test_root_image_message_and_non_base64_encoding() -> None:
    """A message that is one image part, sent as 8bit/binary: the transfer encoding header
    becomes base64 and the final newline stays."""
    data = encode(photo(800, 600), "PNG")
    raw = (b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: image/png\r\n"
           b"Content-Transfer-Encoding: binary\r\n\r\n" + data + b"\r\n")
    out = run_small(raw)
    assert out is not None
    assert out.startswith(b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
                          b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n")
    assert out.endswith(b"\r\n") and image_of(out, "1").size == (400, 300)
    no_cte = raw.replace(b"Content-Transfer-Encoding: binary\r\n", b"")
    out = run_small(no_cte)
    assert out is not None and b"Content-Transfer-Encoding: base64\r\n\r\n" in out


def test_signed_images_are_left_alone() -> None:
    """Under multipart/signed a changed byte makes a good signature look forged."""
    signed = attachment_message(encode(photo(800, 600), "JPEG"), "image", "jpeg", "s.jpg")
    signed_body = signed[signed.index(b"\r\n\r\n") + 4:]
    signed_type = next(line for line in signed.split(b"\r\n")
                       if line.startswith(b"Content-Type: multipart/mixed"))
    raw = (b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/signed; boundary="s"; protocol="application/pgp-signature"'
           b"\r\n\r\n--s\r\n" + signed_type + b"\r\n\r\n" + signed_body
           + b"\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--s--\r\n")
    assert part_by_number(raw, "1.2").content.type == b"image"
    assert run_small(raw) is None
    assert run_small(raw.replace(b"multipart/signed", b"multipart/mixed")) is not None


def test_attached_message_images_are_recoded() -> None:
    inner = attachment_message(jpeg_with_exif(2400, 1600, 1), "image", "jpeg", "x.jpg")
    raw = (b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
           b"Content-Type: text/plain\r\n\r\nfwd\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
           + inner + b"\r\n--b--\r\n")
    out = run(raw)
    assert out is not None
    assert_valid(out)
    assert image_of(out, "2.2").size == (1280, 853)
    assert_others_identical(raw, out, {"2.2"})


def test_base64_helper_round_trips() -> None:
    data = bytes(range(256)) * 10
    assert base64.b64decode(base64_lines(data)) == data


def test_every_test_message_is_left_alone_or_valid() -> None:
    """mailgen's messages, CPython's corpus and tests/mime/messages' odd shapes (their
    attachments are random bytes, not images): nothing raises, nothing changes."""
    f: ImageRecodeFilter = make_filter({})
    for raw in generated(60) + corpus_messages() + odd_shapes():
        assert f.apply(raw, CTX) is None


def test_several_images_in_one_message() -> None:
    msg = attachment_message(jpeg_with_exif(1200, 800, 1), "image", "jpeg", "one.jpg")
    m = message_from_bytes(msg, policy=SMTP)
    m.add_attachment(encode(photo(100, 100), "PNG"), "image", "png",
                     filename="small.png")
    m.add_attachment(encode(photo(900, 900), "PNG"), "image", "png", filename="b.png")
    raw = m.as_bytes(policy=SMTP)
    out = run_small(raw)
    assert out is not None
    assert image_of(out, "2").size == (400, 267)
    assert image_of(out, "4").size == (400, 400)
    assert_others_identical(raw, out, {"2", "4"})


def test_decoded_size_counts_base64_without_decoding() -> None:
    for n in (0, 1, 2, 3, 100, 1001):
        data = bytes(range(256)) * 4
        raw = attachment_message(data[:n] or b"x", "application", "octet-stream", "f.bin")
        part = part_by_number(raw, "2")
        assert decoded_size(raw, part) == len(body_bytes(raw, part)) == max(n, 1)
