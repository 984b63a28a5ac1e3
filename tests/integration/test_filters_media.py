"""The real image-recode and plaintext filters behind the chain, end to end: a client of a
filtered listener reads the small / plain message, consistent in every item with what
Dovecot says of those bytes, while a client of a plain listener of the same proxy reads the
original."""

from __future__ import annotations

import imaplib
from typing import Any

from imapproxy.config import ListenerConfig
from imapproxy.protocol.tokens import serialize_tokens
from tests.filters.images import image_of, jpeg_with_exif, related_message
from tests.integration.conftest import TIMEOUT, RawClient
from tests.integration.test_filters import (  # noqa: F401 - fixtures
    Start,
    body_of,
    fetch_items,
    raw_login,
    start,
)
from tests.mailgen import seed_mailbox

ITEMS = "(RFC822.SIZE BODY.PEEK[] BODYSTRUCTURE ENVELOPE BODY.PEEK[1] BODY.PEEK[TEXT])"
IMAGE = "1.2.2"  # the inline image in related_message()


def _same_as_dovecot(account: Any, imap_direct: imaplib.IMAP4, mailbox: str,
                     filtered: bytes, got: dict[str, Any]) -> None:
    seed_mailbox(imap_direct, mailbox, [filtered])
    direct = RawClient(account.host, account.port, timeout=TIMEOUT)
    direct.login(account.user, account.password)
    direct.ok(f"EXAMINE {mailbox}")
    (want,) = fetch_items(direct, f"FETCH 1 {ITEMS}")
    for name, value in want.items():
        assert got[name] == value, name


def test_photos_are_recoded_for_the_mobile_listener_only(
        start: Start, account: Any, imap_direct: imaplib.IMAP4) -> None:  # noqa: F811
    original = related_message(jpeg_with_exif(2400, 1600, orientation=6), "jpeg")
    seed_mailbox(imap_direct, "INBOX", [original])
    proxy = start(listeners=(
        ListenerConfig("127.0.0.1", 0, filters=("image-recode",)),
        ListenerConfig("127.0.0.1", 0)))
    mobile = raw_login(proxy, account)
    mobile.ok("EXAMINE INBOX")
    (got,) = fetch_items(mobile, f"FETCH 1 {ITEMS}")
    small = body_of(got)
    assert len(small) < len(original) / 5
    assert image_of(small, IMAGE).size == (853, 1280)  # upright, fitted in 1280x1280
    assert int(got["RFC822.SIZE"].value) == len(small)
    _same_as_dovecot(account, imap_direct, "Expected", small, got)

    desk = raw_login(proxy, account, port=proxy.addresses[1][1])
    desk.ok("EXAMINE INBOX")
    (plain,) = fetch_items(desk, "FETCH 1 (BODY.PEEK[])")
    assert body_of(plain) == original


def test_plaintext_listener_serves_one_text_part(
        start: Start, account: Any, imap_direct: imaplib.IMAP4) -> None:  # noqa: F811
    original = related_message(jpeg_with_exif(400, 300, orientation=1), "jpeg")
    seed_mailbox(imap_direct, "INBOX", [original])
    proxy = start(("plaintext",))
    client = raw_login(proxy, account)
    client.ok("EXAMINE INBOX")
    (got,) = fetch_items(client, f"FETCH 1 {ITEMS}")
    text = body_of(got)
    structure = serialize_tokens((got["BODYSTRUCTURE"],))
    assert structure.startswith(b'("text" "plain" ("charset" "utf-8")')
    assert b"See the picture." in text
    assert b"[attachment: report.pdf, application/pdf, 1000 bytes]" in text
    assert b"\xff\xd8" not in text  # no JPEG bytes left
    assert int(got["RFC822.SIZE"].value) == len(text)
    _same_as_dovecot(account, imap_direct, "ExpectedPlain", text, got)
