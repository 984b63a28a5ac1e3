"""Deterministic test mail: ~200 messages of mixed MIME shapes, plus CPython's email test corpus.

``messages(n, seed)`` builds the raw bytes by hand (not with the ``email`` package) so that the
awkward shapes real mailboxes hold are exact: 8-bit bodies in latin-1 and UTF-8,
quoted-printable, base64 attachments up to ~300 KB, multipart/alternative, multipart/mixed
nested three deep, attached message/rfc822, RFC 2047 encoded words, RFC 2231 parameters,
messages without Content-Type, LF-only sources, long and folded header lines, raw UTF-8
headers, preambles and epilogues. Every message has CRLF line endings (what IMAP APPEND
wants), no NUL bytes and ends with CRLF. The same (n, seed) always gives the same bytes.

``seed_mailbox(imap, mailbox, msgs)`` APPENDs them with a varied mix of flags and fixed
INTERNALDATEs, and returns the UIDs Dovecot assigned (UIDPLUS).
"""

from __future__ import annotations

import base64
import imaplib
import quopri
import random
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from email.header import Header
from email.utils import format_datetime
from pathlib import Path

from imapproxy.devserver import ensure_mailbox, mailbox_arg

CORPUS_DIR = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "cpython-test-email"

# The flags seed_mailbox cycles through (7 entries: coprime with most test sizes).
FLAGS_CYCLE: tuple[str, ...] = (
    "",
    "\\Seen",
    "\\Seen \\Flagged",
    "\\Answered \\Seen",
    "$Label1",
    "\\Flagged $Label1",
    "\\Seen \\Answered \\Flagged $Label1",
)

BASE_DATE = datetime(2023, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))

CRLF = b"\r\n"

_WORDS = (
    "imap", "proxy", "cache", "mailbox", "fetch", "envelope", "structure", "literal", "append",
    "flag", "keyword", "idle", "server", "client", "session", "upstream", "message", "header",
    "body", "part", "boundary", "charset", "encoding", "quoted", "printable", "base64",
    "attachment", "alternative", "mixed", "related", "digest", "thread", "reply", "forward",
    "draft", "sent", "junk", "trash", "archive", "inbox", "folder", "label", "search", "sort",
)
_UTF8_WORDS = ("Grüße", "naïve", "café", "Ærøskøbing", "Ελληνικά", "Привет", "日本語",
               "中文", "한국어", "emoji🙂", "façade", "straße", "Smørrebrød", "piñata")
_LATIN1_WORDS = ("Grüße", "naïve", "café", "Ærøskøbing", "façade", "straße", "piñata",
                 "señor", "déjà", "über", "élève", "Smørrebrød")
_NAMES = ("Alice Example", "Bob Müller", "Chloé Dupont", "Dmitri Иванов", "Eve", "Frank O'Hara",
          "Günter Grün", "Hiroshi 山田", "Ingrid Øvrebø", "José Núñez")


def normalize_crlf(data: bytes) -> bytes:
    """Every line ending (LF, CR or CRLF) as CRLF, and a final CRLF."""
    lines = data.splitlines()
    return CRLF.join(lines) + CRLF


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.counter = 0

    # --------------------------------------------------------------- small pieces

    def words(self, n: int, pool: Sequence[str] = _WORDS) -> str:
        return " ".join(self.rng.choice(pool) for _ in range(n))

    def paragraph(self, n_lines: int, width: int = 72, pool: Sequence[str] = _WORDS) -> str:
        out = []
        for _ in range(n_lines):
            line = self.words(self.rng.randint(4, 14), pool)
            out.append(line[:width])
        return "\n".join(out)

    def address(self, encoded: bool = True) -> str:
        name = self.rng.choice(_NAMES)
        local = re.sub(r"[^a-z]", "", name.lower().split()[0].encode("ascii", "ignore").decode())
        domain = self.rng.choice(["org", "net", "com"])
        addr = f"{local or 'user'}{self.rng.randint(1, 99)}@example.{domain}"
        if name.isascii():
            return f'"{name}" <{addr}>' if "'" in name else f"{name} <{addr}>"
        if encoded:
            return f"{Header(name, 'utf-8').encode()} <{addr}>"
        return f"{name} <{addr}>"  # raw UTF-8 (RFC 6532)

    def message_id(self) -> str:
        self.counter += 1
        return f"<{self.counter}.{self.rng.getrandbits(48):012x}@mailgen.example>"

    def date(self, index: int) -> str:
        return format_datetime(BASE_DATE + timedelta(hours=index * 7, minutes=index % 60))

    def boundary(self) -> str:
        styles = (
            "b{:016x}", "----=_Part_{:d}", "=_{:x}", "==boundary '()+_,-./:=? {:x}",
            "{:x}-with-long-tail-" + "x" * 40,
        )
        style = self.rng.choice(styles)
        text = style.format(self.rng.getrandbits(40))
        return text.strip()

    def headers(self, index: int, subject: str, extra: Sequence[str] = (),
                mime: bool = True) -> list[str]:
        hdrs = [
            f"Return-Path: <bounce{index}@example.org>",
            (
                f"Received: from mx{index % 5}.example.org (mx{index % 5}.example.org "
                f"[192.0.2.{index % 250 + 1}])\n"
                f"\tby imap.example.net with ESMTPS id {self.rng.getrandbits(40):010x}\n"
                f"\tfor <user@example.net>; {self.date(index)}"
            ),
            f"From: {self.address()}",
            f"To: {self.address()}, {self.address()}",
            f"Subject: {subject}",
            f"Date: {self.date(index)}",
            f"Message-ID: {self.message_id()}",
        ]
        if self.rng.random() < 0.3:
            hdrs.append(f"Cc: {self.address()}")
        if mime:
            hdrs.append("MIME-Version: 1.0")
        hdrs.extend(extra)
        return hdrs

    @staticmethod
    def join(headers: Sequence[str], body: str | bytes) -> bytes:
        head = "\n".join(headers).encode("utf-8")
        raw_body = body.encode("utf-8") if isinstance(body, str) else body
        return normalize_crlf(head + b"\n\n" + raw_body)

    def blob(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    def b64(self, data: bytes) -> str:
        encoded = base64.b64encode(data).decode("ascii")
        return "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))

    def qp(self, text: str, charset: str = "utf-8") -> str:
        return quopri.encodestring(text.encode(charset)).decode("ascii")

    # --------------------------------------------------------------- body parts (text, no CRLF)

    def part_text(self, charset: str = "us-ascii") -> str:
        if charset == "us-ascii":
            return f"Content-Type: text/plain; charset=us-ascii\n\n{self.paragraph(5)}\n"
        body = self.paragraph(4, pool=_UTF8_WORDS + tuple(_WORDS))
        return (f"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: "
                f"quoted-printable\n\n{self.qp(body)}\n")

    def part_html(self) -> str:
        items = "".join(f"<li>{self.words(4)}</li>" for _ in range(self.rng.randint(2, 6)))
        html = (f"<html><head><meta charset=\"utf-8\"></head><body><h1>{self.words(3)}</h1>"
                f"<p>{self.words(30, _UTF8_WORDS + tuple(_WORDS))}</p><ul>{items}</ul>"
                "</body></html>")
        return (f"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: "
                f"quoted-printable\n\n{self.qp(html)}\n")

    def part_attachment(self, size: int, filename: str | None = None,
                        ctype: str = "application/octet-stream") -> str:
        name = filename or f"file{self.rng.randint(1, 9999)}.bin"
        return (f'Content-Type: {ctype}; name="{name}"\nContent-Transfer-Encoding: base64\n'
                f'Content-Disposition: attachment; filename="{name}"\n\n'
                f"{self.b64(self.blob(size))}\n")

    def multipart(self, subtype: str, parts: Sequence[str], preamble: str = "",
                  epilogue: str = "", params: str = "") -> tuple[str, str]:
        """(Content-Type value, body) of a multipart with the given parts."""
        boundary = self.boundary()
        # A token unless it holds tspecials or spaces (RFC 2045), then a quoted-string.
        quoted = boundary if re.fullmatch(r"[A-Za-z0-9'+_.-]+", boundary) else f'"{boundary}"'
        body = preamble + "".join(f"--{boundary}\n{part}" for part in parts)
        body += f"--{boundary}--\n{epilogue}"
        return f"multipart/{subtype}; boundary={quoted}{params}", body

    def nested_part(self, subtype: str, parts: Sequence[str]) -> str:
        ctype, body = self.multipart(subtype, parts)
        return f"Content-Type: {ctype}\n\n{body}"

    # --------------------------------------------------------------- whole messages

    def m_plain_ascii(self, i: int) -> bytes:
        hdrs = self.headers(i, f"Plain message {i}: {self.words(4)}",
                            ["Content-Type: text/plain; charset=us-ascii"])
        return self.join(hdrs, self.paragraph(self.rng.randint(1, 40)) + "\n")

    def m_utf8_8bit(self, i: int) -> bytes:
        hdrs = self.headers(i, f"8bit UTF-8 body {i}", [
            "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"])
        return self.join(hdrs, self.paragraph(self.rng.randint(2, 20),
                                              pool=_UTF8_WORDS + tuple(_WORDS)) + "\n")

    def m_latin1_8bit(self, i: int) -> bytes:
        hdrs = self.headers(i, f"8bit latin-1 body {i}", [
            "Content-Type: text/plain; charset=iso-8859-1", "Content-Transfer-Encoding: 8bit"])
        body = self.paragraph(self.rng.randint(2, 20), pool=_LATIN1_WORDS + tuple(_WORDS))
        head = "\n".join(hdrs).encode("utf-8")
        return normalize_crlf(head + b"\n\n" + body.encode("latin-1") + b"\n")

    def m_quoted_printable(self, i: int) -> bytes:
        text = "\n".join(
            self.words(self.rng.randint(20, 60), _UTF8_WORDS + tuple(_WORDS))  # long lines
            for _ in range(self.rng.randint(2, 10))
        ) + "\nTrailing space \nTabs\tand = signs and =3D literal\n"
        hdrs = self.headers(i, f"Quoted-printable {i}", [
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable"])
        return self.join(hdrs, self.qp(text))

    _SIZES = (0, 1, 57, 1000, 4096, 12_345, 57_000, 100_000, 150_000, 220_000, 300_000)

    def m_attachment(self, i: int) -> bytes:
        size = self._SIZES[i % len(self._SIZES)]
        parts = [self.part_text(), self.part_attachment(size)]
        if self.rng.random() < 0.4:
            parts.append(self.part_attachment(self.rng.randint(10, 5000),
                                              f"image{i}.png", "image/png"))
        ctype, body = self.multipart("mixed", parts)
        return self.join(self.headers(i, f"Attachment of {size} bytes", [f"Content-Type: {ctype}"]),
                         body)

    def m_alternative(self, i: int) -> bytes:
        ctype, body = self.multipart("alternative", [self.part_text("utf-8"), self.part_html()])
        return self.join(self.headers(i, f"Newsletter {i}: {self.words(3)}",
                                      [f"Content-Type: {ctype}"]), body)

    def m_nested(self, i: int) -> bytes:
        # mixed > (alternative > (text, related > (html, image)), mixed > (text, attachment))
        related = self.nested_part("related", [
            self.part_html(),
            (
                "Content-Type: image/gif\nContent-Transfer-Encoding: base64\n"
                f"Content-ID: <img{i}@mailgen.example>\n\n{self.b64(self.blob(300))}\n"
            ),
        ])
        alternative = self.nested_part("alternative", [self.part_text(), related])
        inner_mixed = self.nested_part("mixed", [self.part_text("utf-8"),
                                                 self.part_attachment(self.rng.randint(1, 3000))])
        ctype, body = self.multipart("mixed", [alternative, inner_mixed],
                                     preamble="This is a multi-part message in MIME format.\n",
                                     epilogue="epilogue text\n")
        return self.join(self.headers(i, f"Nested three deep {i}", [f"Content-Type: {ctype}"]),
                         body)

    def m_rfc822(self, i: int) -> bytes:
        inner = self.m_alternative(i + 1000) if i % 2 else self.m_plain_ascii(i + 1000)
        inner_text = inner.decode("utf-8", "surrogateescape").replace("\r\n", "\n")
        ctype, body = self.multipart("mixed", [
            self.part_text(),
            f"Content-Type: message/rfc822\nContent-Disposition: inline\n\n{inner_text}",
        ])
        raw = self.join(self.headers(i, f"Fwd: forwarded message {i}", [f"Content-Type: {ctype}"]),
                        body.encode("utf-8", "surrogateescape"))
        return raw

    def m_rfc2047(self, i: int) -> bytes:
        first, last = self.rng.choice(_UTF8_WORDS), self.rng.choice(_UTF8_WORDS)
        subject_text = f"{first} {self.words(3)} {last}"
        if i % 2:
            subject = Header(subject_text, "utf-8").encode()  # B-encoded
        else:
            q = quopri.encodestring(subject_text.encode("utf-8"), header=True).decode()
            subject = f"=?utf-8?Q?{q}?="
        hdrs = self.headers(i, subject, ["Content-Type: text/plain; charset=utf-8",
                                         "Content-Transfer-Encoding: 8bit"])
        hdrs.append("X-Latin1: =?iso-8859-1?q?Gr=FC=DFe_aus_K=F6ln?=")
        return self.join(hdrs, self.paragraph(3, pool=_UTF8_WORDS) + "\n")

    def m_rfc2231(self, i: int) -> bytes:
        long_name = "Jahresübersicht " + "sehr lang " * 8 + f"{i}.pdf"
        encoded = "".join(
            ch if ch.isascii() and (ch.isalnum() or ch in ".-_") else
            "".join(f"%{b:02X}" for b in ch.encode("utf-8"))
            for ch in long_name
        )
        chunks = [encoded[k:k + 40] for k in range(0, len(encoded), 40)]
        continued = ";\n".join(f" filename*{n}*={'utf-8' + chr(39) * 2 if n == 0 else ''}{c}"
                               for n, c in enumerate(chunks))
        attachment = (
            "Content-Type: application/pdf; name*=utf-8''R%C3%A9sum%C3%A9.pdf\n"
            "Content-Transfer-Encoding: base64\n"
            f"Content-Disposition: attachment;\n{continued}\n\n"
            f"{self.b64(self.blob(self.rng.randint(100, 20000)))}\n"
        )
        simple = (
            "Content-Type: text/plain; charset=iso-8859-1\n"
            "Content-Disposition: attachment; filename*=iso-8859-1'de'R%E9sum%E9.txt\n\n"
            "plain text attachment\n"
        )
        ctype, body = self.multipart("mixed", [self.part_text(), attachment, simple])
        return self.join(self.headers(i, f"RFC 2231 file names {i}", [f"Content-Type: {ctype}"]),
                         body)

    def m_no_content_type(self, i: int) -> bytes:
        hdrs = self.headers(i, f"No Content-Type {i}", mime=self.rng.random() < 0.5)
        return self.join(hdrs, self.paragraph(self.rng.randint(1, 10)) + "\n")

    def m_lf_only(self, i: int) -> bytes:
        # Written with bare LFs (as a Unix MTA stores it); normalize_crlf makes it CRLF.
        hdrs = self.headers(i, f"LF-only source {i}", ["Content-Type: text/plain"])
        raw = ("\n".join(hdrs) + "\n\n" + self.paragraph(6) + "\n\n\n").encode()
        return normalize_crlf(raw)

    def m_long_headers(self, i: int) -> bytes:
        refs = " ".join(self.message_id() for _ in range(self.rng.randint(10, 60)))
        folded_refs = re.sub(r" ", "\n ", refs)
        long_subject = f"Long subject {i} " + self.words(120)
        long_subject = long_subject[:900]  # one unfolded line, under the 998 limit
        hdrs = self.headers(i, long_subject, [
            "Content-Type: text/plain; charset=us-ascii",
            f"References: {folded_refs}",
            f"In-Reply-To: {self.message_id()}",
            "X-Long-Unfolded: " + "x" * 950,
            "X-Folded-Tabs:\tfirst\n\tsecond\n\tthird",
            "X-Empty:",
        ])
        return self.join(hdrs, self.paragraph(3) + "\n")

    def m_headers_only(self, i: int) -> bytes:
        hdrs = self.headers(i, f"Headers only {i}", ["Content-Type: text/plain"])
        return self.join(hdrs, "")

    def m_raw_utf8_headers(self, i: int) -> bytes:
        hdrs = [
            f"From: {self.address(encoded=False)}",
            f"To: {self.address(encoded=False)}",
            f"Subject: Raw UTF-8 header {i} {self.rng.choice(_UTF8_WORDS)}",
            f"Date: {self.date(i)}",
            f"Message-ID: {self.message_id()}",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
        ]
        return self.join(hdrs, self.paragraph(2, pool=_UTF8_WORDS) + "\n")

    def m_signed(self, i: int) -> bytes:
        sig = ("Content-Type: application/pgp-signature; name=\"signature.asc\"\n\n"
               "-----BEGIN PGP SIGNATURE-----\n\n" + self.b64(self.blob(200)) +
               "\n-----END PGP SIGNATURE-----\n")
        ctype, body = self.multipart(
            "signed", [self.part_text(), sig],
            params='; micalg=pgp-sha256; protocol="application/pgp-signature"')
        return self.join(self.headers(i, f"Signed {i}", [f"Content-Type: {ctype}"]), body)

    def m_digest(self, i: int) -> bytes:
        inner = [
            "\n" + self.m_plain_ascii(i + 2000 + k).decode().replace("\r\n", "\n")
            for k in range(3)
        ]
        ctype, body = self.multipart("digest", inner)
        return self.join(self.headers(i, f"Digest {i}", [f"Content-Type: {ctype}"]), body)

    def shapes(self) -> list[Callable[[int], bytes]]:
        return [
            self.m_plain_ascii, self.m_utf8_8bit, self.m_latin1_8bit, self.m_quoted_printable,
            self.m_attachment, self.m_alternative, self.m_nested, self.m_rfc822, self.m_rfc2047,
            self.m_rfc2231, self.m_no_content_type, self.m_lf_only, self.m_long_headers,
            self.m_headers_only, self.m_raw_utf8_headers, self.m_signed, self.m_digest,
        ]


def generated(n: int = 200, seed: int = 0) -> list[bytes]:
    """*n* generated messages, cycling through every shape."""
    gen = _Gen(seed)
    shapes = gen.shapes()
    return [shapes[i % len(shapes)](i) for i in range(n)]


def corpus_messages() -> list[bytes]:
    """CPython's email test messages (../shared/corpus/cpython-test-email) as CRLF, or []."""
    if not CORPUS_DIR.is_dir():
        return []
    return [normalize_crlf(path.read_bytes()) for path in sorted(CORPUS_DIR.glob("*.txt"))]


def messages(n: int = 200, seed: int = 0) -> list[bytes]:
    """*n* generated messages followed by the CPython corpus when present (so the list has
    ``n + len(corpus_messages())`` entries). All CRLF; deterministic for a given seed."""
    return generated(n, seed) + corpus_messages()


def internal_date(index: int) -> str:
    """The fixed INTERNALDATE seed_mailbox gives message *index*, as an IMAP date-time."""
    when = BASE_DATE + timedelta(days=index, minutes=index * 13 % 60, seconds=index % 60)
    return when.strftime('"%d-%b-%Y %H:%M:%S %z"')


def seed_mailbox(
    imap: imaplib.IMAP4,
    mailbox: str,
    msgs: Sequence[bytes],
    flags_cycle: Sequence[str] = FLAGS_CYCLE,
) -> list[int]:
    """APPEND *msgs* to *mailbox* (created if missing) on a logged-in connection: message i
    gets ``flags_cycle[i % len]`` and INTERNALDATE ``internal_date(i)``. Returns the UIDs
    (from APPENDUID)."""
    ensure_mailbox(imap, mailbox)
    uids: list[int] = []
    for index, msg in enumerate(msgs):
        flags = flags_cycle[index % len(flags_cycle)] if flags_cycle else ""
        typ, data = imap.append(
            mailbox_arg(mailbox),
            f"({flags})" if flags else None,
            internal_date(index),
            msg,
        )
        if typ != "OK":
            raise AssertionError(f"APPEND of message {index} failed: {data!r}")
        match = re.search(rb"\[APPENDUID \d+ (\d+)\]", data[0] or b"")
        if match:
            uids.append(int(match.group(1)))
    return uids
