"""Deterministic benchmark mail: a mailbox of N messages, ~20 KB mean, a few of several MB.

``mailbox(n, seed)`` returns the raw messages (CRLF, ending in CRLF, no NUL), in APPEND order:

- about half are text/plain, a quarter multipart/alternative (text + HTML), a quarter
  multipart/mixed with a base64 attachment; body sizes are log-normal (median ~9 KB, capped at
  400 KB), so most messages are small and a few are a few hundred KB;
- ``max(1, round(n / 700))`` messages of 2, 3, 4, 2, 3, 4 ... MB (a base64 attachment),
  spread evenly through the mailbox;

so 2,000 messages are ~41 MB (mean ~20 KB). ``big_message(mb)`` is one message of about
``mb`` MB (for the memory test). Same arguments, same bytes: text comes from one seeded word
pool, attachments from ``random.Random(seed).randbytes``.
"""

from __future__ import annotations

import base64
import math
import random

CRLF = b"\r\n"
_WORDS = (
    "imap", "proxy", "cache", "mailbox", "fetch", "envelope", "structure", "literal", "append",
    "flag", "keyword", "idle", "server", "client", "session", "upstream", "message", "header",
    "body", "part", "boundary", "charset", "encoding", "quoted", "printable", "attachment",
    "alternative", "mixed", "related", "digest", "thread", "reply", "forward", "draft", "sent",
    "junk", "trash", "archive", "inbox", "folder", "label", "search", "sort", "latency", "window",
    "batch", "the", "a", "of", "to", "and", "in", "is", "it", "that", "for", "on", "with", "as",
    "was", "at", "by", "be", "this", "have", "from", "or", "one"
)
_NAMES = ("Alice Example", "Bob Mueller", "Chloe Dupont", "Dmitri Ivanov", "Eve",
          "Frank O'Hara", "Guenter Gruen", "Hiroshi Yamada", "Ingrid Ovrebo", "Jose Nunez")


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        lines = []
        for _ in range(6000):  # ~430 KB of text lines to slice bodies from
            words = [self.rng.choice(_WORDS) for _ in range(self.rng.randint(8, 13))]
            lines.append(" ".join(words).capitalize().encode() + b".")
        self.pool = CRLF.join(lines) + CRLF
        self.line_starts = [0]
        for i, byte in enumerate(self.pool):
            if byte == 10:
                self.line_starts.append(i + 1)
        self.line_starts.pop()

    def text(self, size: int) -> bytes:
        """About ``size`` bytes of CRLF text lines (a slice of the pool, repeated if needed)."""
        out = []
        have = 0
        while have < size:
            start = self.line_starts[self.rng.randrange(len(self.line_starts))]
            piece = self.pool[start : start + min(size - have, len(self.pool) - start)]
            cut = piece.rfind(CRLF)
            if cut < 0:  # shorter than one line: the whole line
                cut = self.pool.index(CRLF, start)
                piece = self.pool[start : cut + 2]
            else:
                piece = piece[: cut + 2]
            out.append(piece)
            have += len(piece)
        return b"".join(out)

    def attachment(self, size: int) -> bytes:
        """``size`` random bytes as base64, 76-character CRLF lines."""
        return base64.encodebytes(self.rng.randbytes(size)).replace(b"\n", CRLF)

    def headers(self, i: int, content_type: bytes) -> bytes:
        sender = self.rng.choice(_NAMES)
        to = self.rng.choice(_NAMES)
        day = 1 + i % 28
        return CRLF.join([
            b"Return-Path: <sender%d@example.org>" % (i % 97),
            b"From: %s <%s@example.org>" % (sender.encode(), sender.split()[0].lower().encode()),
            b"To: %s <%s@example.net>" % (to.encode(), to.split()[0].lower().encode()),
            b"Subject: Benchmark message %d: %s" % (i, " ".join(
                self.rng.choice(_WORDS) for _ in range(5)).encode()),
            b"Date: Mon, %02d Jan 2024 %02d:%02d:%02d +0100" % (day, i % 24, i % 60, i * 7 % 60),
            b"Message-ID: <bench-%d@example.org>" % i,
            b"MIME-Version: 1.0",
            b"Content-Type: " + content_type,
        ]) + CRLF + CRLF

    def message(self, i: int, size: int, kind: str) -> bytes:
        if kind == "plain":
            return self.headers(i, b"text/plain; charset=utf-8") + self.text(size)
        boundary = b"=_bench_%d_=" % i
        if kind == "alternative":
            text = self.text(size // 3)
            html = b"<html><body><p>" + self.text(size - len(text)) + b"</p></body></html>\r\n"
            parts = [(b"text/plain; charset=utf-8", b"", text),
                     (b"text/html; charset=utf-8", b"", html)]
            ctype = b"multipart/alternative"
        else:
            text = self.text(min(size // 5 + 200, 4000))
            raw = max(100, (size - len(text)) * 3 // 4)
            parts = [(b"text/plain; charset=utf-8", b"", text),
                     (b"application/octet-stream; name=\"data-%d.bin\"" % i,
                      b"Content-Transfer-Encoding: base64\r\n"
                      b"Content-Disposition: attachment; filename=\"data-%d.bin\"\r\n" % i,
                      self.attachment(raw))]
            ctype = b"multipart/mixed"
        body = [b"This is a multi-part message in MIME format.\r\n"]
        for part_type, extra, content in parts:
            body.append(b"--" + boundary + CRLF + b"Content-Type: " + part_type + CRLF + extra
                        + CRLF + content)
        body.append(b"--" + boundary + b"--" + CRLF)
        return self.headers(i, ctype + b"; boundary=\"" + boundary + b"\"") + b"".join(body)


def mailbox(n: int, seed: int = 1) -> list[bytes]:
    gen = _Gen(seed)
    n_big = max(1, round(n / 700))
    big_at = {(k + 1) * n // (n_big + 1): (2 + k % 3) * 1_000_000 for k in range(n_big)}
    out = []
    for i in range(n):
        if i in big_at:
            out.append(gen.message(i, big_at[i], "mixed"))
            continue
        size = min(400_000, int(math.exp(gen.rng.gauss(math.log(9_000), 1.05))))
        roll = gen.rng.random()
        kind = "plain" if roll < 0.5 else "alternative" if roll < 0.75 else "mixed"
        out.append(gen.message(i, size, kind))
    return out


def big_message(mb: float, seed: int = 2) -> bytes:
    gen = _Gen(seed)
    return gen.message(0, int(mb * 1_000_000), "mixed")


if __name__ == "__main__":
    import statistics
    import time

    t = time.perf_counter()
    msgs = mailbox(2000)
    sizes = sorted(len(m) for m in msgs)
    print(f"{len(msgs)} messages, {sum(sizes) / 1e6:.1f} MB, mean {statistics.mean(sizes):.0f}, "
          f"median {statistics.median(sizes):.0f}, largest {sizes[-4:]}, "
          f"built in {time.perf_counter() - t:.2f} s")
