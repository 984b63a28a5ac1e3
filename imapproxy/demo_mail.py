"""Sample mail for ``imapproxy demo``: a small, varied mailbox to point a client at.

Plain text, an HTML newsletter with a text alternative, attachments, non-ASCII subjects and
senders, a short thread, and a few older messages in "Archive".
"""

from __future__ import annotations

import email.policy
import email.utils
import struct
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"
DEMO_ADDRESS = "demo@demo.example"

_EPOCH = datetime(2024, 3, 4, 9, 30, tzinfo=timezone(timedelta(hours=1)))


def _png(width: int = 16, height: int = 16, rgb: tuple[int, int, int] = (34, 170, 102)) -> bytes:
    """A small solid-colour PNG, built here so the sample needs no binary files."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class SampleMessage:
    mailbox: str
    message: bytes  # RFC 5322, CRLF line endings
    flags: str = ""  # IMAP flags separated by spaces, e.g. "\\Seen \\Flagged"
    date: str | None = None  # IMAP date-time (INTERNALDATE), e.g. "04-Mar-2024 09:30:00 +0100"


def imap_date_time(when: datetime) -> str:
    """An IMAP date-time (RFC 9051 date-time, without the quotes), independent of locale."""
    offset = when.utcoffset() or timedelta()
    sign = "-" if offset < timedelta() else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return (f"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year:04d} "
            f"{when:%H:%M:%S} {sign}{minutes // 60:02d}{minutes % 60:02d}")


def _message(
    number: int,
    sender: str,
    subject: str,
    text: str,
    *,
    days_ago: float,
    to: str = f"Demo User <{DEMO_ADDRESS}>",
    in_reply_to: int | None = None,
) -> EmailMessage:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(_EPOCH - timedelta(days=days_ago))
    msg["Message-ID"] = f"<sample-{number}@demo.example>"
    if in_reply_to is not None:
        msg["In-Reply-To"] = f"<sample-{in_reply_to}@demo.example>"
        msg["References"] = f"<sample-{in_reply_to}@demo.example>"
    msg.set_content(text)
    return msg


def _welcome() -> EmailMessage:
    return _message(
        1, "imapproxy <proxy@demo.example>", "Welcome to the imapproxy demo",
        "Hello!\n\n"
        "You are reading this through imapproxy, which sits between your mail client and\n"
        "a throwaway Dovecot server. Everything here is sample mail; feel free to move,\n"
        "flag and delete it.\n\n"
        "The \"Archive\" folder holds a few older messages.\n",
        days_ago=0.1,
    )


def _newsletter() -> EmailMessage:
    msg = _message(
        2, "Weekly Digest <news@demo.example>", "This week: caching IMAP proxies",
        "This week's digest\n\n"
        "* Why a caching proxy makes slow links bearable\n"
        "* Filtering mail before your client sees it\n\n"
        "(Your client shows this text because it prefers plain text.)\n",
        days_ago=1,
    )
    msg.add_alternative(
        "<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif\">\n"
        "<h1 style=\"color: #2a6\">This week's digest</h1>\n<ul>\n"
        "<li>Why a <b>caching proxy</b> makes slow links bearable</li>\n"
        "<li>Filtering mail <i>before</i> your client sees it</li>\n</ul>\n"
        "<p><small>You receive this because you are a demo user.</small></p>\n"
        "</body></html>\n",
        subtype="html",
    )
    return msg


def _with_attachments() -> EmailMessage:
    msg = _message(
        3, "Alice Example <alice@demo.example>", "Quarterly numbers (2 attachments)",
        "Hi,\n\nattached are the numbers as CSV and the logo you asked for.\n\nAlice\n",
        days_ago=2,
    )
    msg.add_attachment(
        "quarter,revenue,cost\nQ1,1200,800\nQ2,1350,820\nQ3,1500,900\nQ4,1720,950\n",
        subtype="csv",
        filename="numbers.csv",
    )
    msg.add_attachment(_png(), maintype="image", subtype="png", filename="logo.png")
    return msg


def _non_ascii() -> EmailMessage:
    return _message(
        4, "Jürgen Größmann <juergen@demo.example>", "Grüße aus Köln – Ünïcödé-Test ✓",
        "Hallo!\n\nDiese Nachricht enthält Umlaute (äöüß), einen Gedankenstrich – und "
        "ein Häkchen ✓.\n\nViele Grüße\nJürgen\n",
        days_ago=3,
    )


def _japanese() -> EmailMessage:
    return _message(
        5, "山田太郎 <taro@demo.example>", "会議の議事録について",
        "お疲れ様です。\n\n昨日の会議の議事録を送ります。\n\n山田\n",
        days_ago=4,
    )


def _thread() -> list[EmailMessage]:
    question = _message(
        6, "Bob Example <bob@demo.example>", "Lunch on Friday?",
        "Shall we try the new place around the corner on Friday?\n\nBob\n",
        days_ago=1.5,
    )
    answer = _message(
        7, f"Demo User <{DEMO_ADDRESS}>", "Re: Lunch on Friday?",
        "Sure, 12:30?\n\n> Shall we try the new place around the corner on Friday?\n",
        days_ago=1.4, to="Bob Example <bob@demo.example>", in_reply_to=6,
    )
    return [question, answer]


def _important() -> EmailMessage:
    return _message(
        8, "Ops Team <ops@demo.example>", "[Action needed] Renew the TLS certificate",
        "The certificate for imap.demo.example expires in 14 days.\n",
        days_ago=0.5,
    )


def _archive() -> list[EmailMessage]:
    return [
        _message(
            9, "Carol Example <carol@demo.example>", "Holiday photos",
            "The photos from last summer are on the shared drive.\n", days_ago=200,
        ),
        _message(
            10, "Billing <billing@demo.example>", "Your invoice 2023-117",
            "Invoice 2023-117: 42.00 EUR, paid. Thank you!\n", days_ago=150,
        ),
        _message(
            11, "Dave Example <dave@demo.example>", "Old project notes",
            "Notes from the kickoff meeting:\n\n1. Scope\n2. Timeline\n3. Budget\n",
            days_ago=365,
        ),
    ]


def sample_messages() -> list[SampleMessage]:
    """The demo mailbox: 8 messages in INBOX and 3 in "Archive"."""

    def sample(msg: EmailMessage, mailbox: str = "INBOX", flags: str = "") -> SampleMessage:
        # The INTERNALDATE ("arrival") matches the Date header, so sorting by either agrees.
        date = imap_date_time(email.utils.parsedate_to_datetime(str(msg["Date"])))
        return SampleMessage(mailbox, msg.as_bytes(policy=email.policy.SMTP), flags, date)

    question, answer = _thread()
    inbox = [
        sample(_welcome()),
        sample(_newsletter(), flags="\\Seen"),
        sample(_with_attachments()),
        sample(_non_ascii()),
        sample(_japanese(), flags="\\Seen"),
        sample(question, flags="\\Seen \\Answered"),
        sample(answer, flags="\\Seen"),
        sample(_important(), flags="\\Flagged"),
    ]
    archive = [sample(msg, "Archive", "\\Seen") for msg in _archive()]
    return inbox + archive
