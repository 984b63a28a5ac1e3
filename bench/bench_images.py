"""Filter benchmark: image-recode on photo-heavy mail, plaintext on the test mailbox.

    python bench/bench_images.py                    # 50 photo messages (~1-2 min)
    python bench/bench_images.py --messages 10      # quick run
    python bench/bench_images.py --json out.json

What runs (in this process, one thread, no network): the filters as the chain calls them,
``apply(raw, context)`` on whole messages.

- image-recode: ``--messages`` messages built with the email package, each a text and an
  HTML part, one inline photo (multipart/related, Content-ID) and one attached photo, drawn
  from a pool of generated pictures: JPEGs of 3000x2000 and 4000x3000 (some with an EXIF
  orientation) at camera-like quality 92, and a 2000x1500 PNG screenshot. The pictures are
  gradients plus grain, so they compress like photos (a few MB each). Reported: messages/s,
  input MB/s, and the size ratio (output bytes / input bytes), for the default settings
  (1280x1280 box, quality 75, format "keep") and for format "webp".
- plaintext: ``tests.mailgen`` messages (200 generated + CPython's email corpus), repeated
  ``--plaintext-rounds`` times: messages/s and MB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import PIL
from PIL import Image, ImageDraw

from filters.image_recode import make_filter as make_image_filter
from filters.plaintext import make_filter as make_plaintext_filter
from imapproxy.filtering.api import FilterContext
from tests.filters.images import encode
from tests.mailgen import corpus_messages, generated

CTX = FilterContext(user="bench")
MB = 1024 * 1024


def textured(width: int, height: int, seed: int) -> Image.Image:
    """A picture with detail at every scale (noise from 1/64 to full resolution, on
    gradients), so that, like a photo, it still has texture once scaled down."""
    channels = []
    for c in range(3):
        im = Image.linear_gradient("L").rotate(90 * c + seed).resize((width, height))
        for scale, weight in ((64, 0.5), (16, 0.4), (4, 0.3), (1, 0.2)):
            noise = Image.effect_noise((max(1, width // scale), max(1, height // scale)), 70)
            im = Image.blend(im, noise.resize((width, height), Image.Resampling.BICUBIC),
                             weight)
        channels.append(im)
    return Image.merge("RGB", channels)


def camera_jpeg(width: int, height: int, orientation: int, seed: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "BenchCam"
    return encode(textured(width, height, seed), "JPEG", quality=92, exif=exif.tobytes())


def screenshot(width: int, height: int) -> bytes:
    """Flat UI-like areas and text, as PNG."""
    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    for i in range(0, height, 40):
        draw.rectangle((0, i, width // 5, i + 38), fill=(40 + i % 90, 60, 120))
        draw.text((width // 5 + 20, i + 10), f"Row {i}: the quick brown fox " * 6, fill="black")
    return encode(im, "PNG")


def photo_pool() -> list[tuple[bytes, str, str]]:
    """(data, subtype, filename) of the pictures messages are made from."""
    return [
        (camera_jpeg(3000, 2000, 1, 0), "jpeg", "IMG_1001.jpg"),
        (camera_jpeg(3000, 2000, 6, 10), "jpeg", "IMG_1002.jpg"),
        (camera_jpeg(4000, 3000, 1, 20), "jpeg", "IMG_1003.jpg"),
        (camera_jpeg(3000, 2000, 1, 30), "jpeg", "DSC_0042.JPG"),
        (camera_jpeg(2000, 3000, 8, 40), "jpeg", "portrait.jpg"),
        (screenshot(2560, 1600), "png", "screen.png"),
    ]


def photo_message(index: int, pool: list[tuple[bytes, str, str]]) -> bytes:
    inline = pool[index % len(pool)]
    attached = pool[(index * 7 + 3) % len(pool)]
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.org>"
    msg["To"] = "bob@example.org"
    msg["Subject"] = f"Holiday pictures {index}"
    msg.set_content("Pictures from the trip.\n")
    msg.add_alternative('<p>Pictures from the trip.</p><img src="cid:p@example.org">\n',
                        subtype="html")
    html = list(msg.iter_parts())[1]
    html.add_related(inline[0], "image", inline[1], cid="<p@example.org>",
                     filename=inline[2], disposition="inline")
    msg.add_attachment(attached[0], "image", attached[1], filename=attached[2])
    return msg.as_bytes(policy=SMTP)


def run_filter(apply, messages: list[bytes]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    per_message: list[float] = []
    out_bytes = 0
    start = time.perf_counter()
    for raw in messages:
        t0 = time.perf_counter()
        out = apply(raw, CTX)
        per_message.append(time.perf_counter() - t0)
        out_bytes += len(raw if out is None else out)
    elapsed = time.perf_counter() - start
    in_bytes = sum(len(raw) for raw in messages)
    return {
        "messages": len(messages),
        "seconds": round(elapsed, 3),
        "messages_per_s": round(len(messages) / elapsed, 2),
        "mb_per_s": round(in_bytes / MB / elapsed, 2),
        "input_mb": round(in_bytes / MB, 2),
        "output_mb": round(out_bytes / MB, 3),
        "size_ratio": round(out_bytes / in_bytes, 4),
        "median_ms": round(statistics.median(per_message) * 1000, 1),
        "max_ms": round(max(per_message) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--plaintext-rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not 1 <= args.messages <= 200:
        parser.error("--messages must be 1..200")

    results: dict[str, object] = {
        "python": platform.python_version(), "pillow": PIL.__version__,
        "machine": platform.machine(), "cpus": os.cpu_count(),
    }
    # plaintext first: with the photo mailbox (~400 MB) in memory, the garbage collector's
    # full passes would be measured too
    mail = generated(200) + corpus_messages()
    plain = make_plaintext_filter({})
    results["plaintext"] = run_filter(plain.apply, mail * args.plaintext_rounds)
    print("plaintext", results["plaintext"])

    t0 = time.perf_counter()
    pool = photo_pool()
    messages = [photo_message(i, pool) for i in range(args.messages)]
    print(f"built {len(messages)} photo messages, {sum(map(len, messages)) / MB:.1f} MB, "
          f"pictures {', '.join(f'{len(p[0]) / MB:.1f}' for p in pool)} MB "
          f"({time.perf_counter() - t0:.1f} s)")

    for label, settings in (("image-recode", {}), ("image-recode webp", {"format": "webp"})):
        results[label] = run_filter(make_image_filter(settings).apply, messages)
        print(label, results[label])

    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
