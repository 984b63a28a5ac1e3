"""The real PGP filter (filters/pgp.py, real gpg) behind the chain, end to end: what a client
reads is the decrypted message, consistent in every item, searchable, never on disk; what it
APPENDs to Sent reaches the upstream encrypted."""

from __future__ import annotations

import email
import email.policy
import imaplib
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from tests.filters.conftest import Keys, pgp_keys  # noqa: F401 - the session's gpg keys
from tests.filters.test_pgp import SECRET, pgp_mime, secret_entity
from tests.integration.conftest import TIMEOUT, RawClient
from tests.integration.test_filters import (  # noqa: F401 - fixtures
    Start,
    body_of,
    direct_bodies,
    fetch_items,
    raw_login,
    start,
)
from tests.mailgen import seed_mailbox

ITEMS = "(RFC822.SIZE BODY.PEEK[] BODYSTRUCTURE ENVELOPE BODY.PEEK[1] BODY.PEEK[HEADER])"


def gateway_home(tmp_path: Path, keys: Keys, user: str) -> str:
    """``gnupg_home`` with %u: the Dovecot account's home is Alice's keyring."""
    root = tmp_path / "gnupg"
    root.mkdir(mode=0o700)
    (root / user).symlink_to(keys.alice.home)
    return str(root / "%u")


def test_pgp_through_the_proxy(tmp_path: Path, start: Start, account: Any,  # noqa: F811
                               imap_direct: imaplib.IMAP4, pgp_keys: Keys) -> None:  # noqa: F811
    encrypted = pgp_mime(pgp_keys.bob, pgp_keys.alice, secret_entity())
    plain = b"Subject: plain\r\n\r\nnothing secret\r\n"
    seed_mailbox(imap_direct, "INBOX", [encrypted, plain])
    settings = {"gnupg_home": gateway_home(tmp_path, pgp_keys, account.user),
                "encrypt_append_folders": ["Sent"],
                "encrypt_append_key": pgp_keys.alice.fingerprint}
    proxy = start(("pgp",), settings={"pgp": settings})
    client = raw_login(proxy, account)
    client.ok("SELECT INBOX")
    got = fetch_items(client, f"FETCH 1:2 {ITEMS}")
    decrypted = body_of(got[0])
    assert b"X-Imapproxy-PGP: decrypted" in decrypted
    assert SECRET in text_of(decrypted)
    assert body_of(got[1]) == plain
    for items in got:
        assert int(items["RFC822.SIZE"].value) == len(body_of(items))  # type: ignore[union-attr]

    # Every item equals what Dovecot says of the decrypted bytes stored as they are.
    seed_mailbox(imap_direct, "Expected", [decrypted])
    direct = RawClient(account.host, account.port, timeout=TIMEOUT)
    direct.login(account.user, account.password)
    direct.ok("EXAMINE Expected")
    (want,) = fetch_items(direct, f"FETCH 1 {ITEMS}")
    for name, value in want.items():
        assert got[0][name] == value, name

    # SEARCH sees the decrypted words; the upstream alone cannot.
    assert client.ok("UID SEARCH BODY \"launch code\"") == [b"* SEARCH 1\r\n"]
    assert direct.ok("UID SEARCH BODY \"launch code\"") != []  # (the Expected copy)
    direct.ok("EXAMINE INBOX")
    assert direct.ok("UID SEARCH BODY \"launch code\"") == [b"* SEARCH\r\n"]

    # Decrypted text never reaches the disk; the encrypted upstream bytes are cached.
    stored = b"".join(p.read_bytes() for p in proxy.config.cache_dir.rglob("*") if p.is_file())
    body = decrypted.partition(b"\r\n\r\n")[2].strip()
    assert body not in stored and b"X-Imapproxy-PGP" not in stored
    assert b"BEGIN PGP MESSAGE" in stored

    # APPEND to Sent: encrypted before it goes upstream, readable through the proxy.
    client.ok("CREATE Sent")
    draft = b"Subject: reply\r\nFrom: alice@example.org\r\n\r\nmeet at the launch code site\r\n"
    client.send(b"a1 APPEND Sent {%d+}\r\n" % len(draft) + draft + b"\r\n")
    _, tagged = client.read_until_tagged("a1")
    assert tagged.startswith(b"a1 OK"), tagged
    (upstream_copy,) = direct_bodies(imap_direct, "Sent")
    assert b"launch code" not in upstream_copy and b"BEGIN PGP MESSAGE" in upstream_copy
    client.ok("SELECT Sent")
    (back,) = fetch_items(client, "FETCH 1 BODY.PEEK[]")
    assert "meet at the launch code site" in text_of(body_of(back))


def text_of(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())
