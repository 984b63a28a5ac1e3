"""The PGP filter against the real gpg, with keys made by the fixtures (conftest.py).

Messages are built with Python's email package and gpg, as a mail client would, and every
output is checked for what a client relies on: CRLF lines, a MIME tree imapproxy.mime reads,
a body Python's email parser reads back, and the result header.
"""

from __future__ import annotations

import email
import email.policy
import time
from concurrent.futures import ThreadPoolExecutor
from email.encoders import encode_7or8bit
from email.message import EmailMessage, Message
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from filters.pgp import PgpFilter, make_filter
from imapproxy.filtering.api import FilterContext, FilterError, MessageFilter
from imapproxy.mime import bodystructure, parse_message

from .conftest import PASSPHRASE, Keys, Person

ALICE = FilterContext(user="alice", mailbox="INBOX", uid=1)
SECRET = "The launch code is 0000, tell nobody. Grüße"


@pytest.fixture(scope="module")
def pgp(pgp_keys: Keys) -> PgpFilter:
    return make_filter({"gnupg_home": pgp_keys.gnupg_home,
                        "encrypt_append_folders": ["Sent", "Drafts*"]})


def headers(msg: Message, sender: Person, subject: str) -> None:
    msg["From"] = f"{sender.name} <{sender.email}>"
    msg["To"] = "Alice <alice@example.org>"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 30 Nov 2026 12:00:00 +0000"
    msg["Message-ID"] = f"<{subject.replace(' ', '.')}@example.org>"


def wire(msg: Message) -> bytes:
    return msg.as_bytes(policy=email.policy.SMTP)


def secret_entity() -> MIMEText:
    return MIMEText(SECRET + "\n", "plain", "utf-8")


def pgp_mime(sender: Person, to: Person, entity: Message, sign: bool = False,
             base64_armor: bool = False) -> bytes:
    """RFC 3156 multipart/encrypted, as Thunderbird sends it (or with the armor base64
    encoded once more, as some clients do)."""
    armored = sender.encrypt(wire(entity), to, sign=sign)
    outer = MIMEMultipart("encrypted", protocol="application/pgp-encrypted")
    outer.attach(MIMEApplication(b"Version: 1\r\n", "pgp-encrypted", _encoder=encode_7or8bit))
    if base64_armor:
        outer.attach(MIMEApplication(armored, "octet-stream"))
    else:
        outer.attach(MIMEApplication(armored, "octet-stream", _encoder=encode_7or8bit))
    headers(outer, sender, "encrypted")
    return wire(outer)


def pgp_signed(signer: Person, text: str) -> bytes:
    """RFC 3156 multipart/signed: the signature over the first part's exact CRLF bytes."""
    content = MIMEText(text, "plain", "utf-8")
    signature = signer.detach_sign(wire(content))
    outer = MIMEMultipart("signed", protocol="application/pgp-signature", micalg="pgp-sha256")
    outer.attach(content)
    outer.attach(MIMEApplication(signature, "pgp-signature", _encoder=encode_7or8bit))
    headers(outer, signer, "signed")
    return wire(outer)


def inline(sender: Person, body: bytes, subject: str) -> bytes:
    msg = EmailMessage()
    headers(msg, sender, subject)
    msg.set_content(body.decode())
    return wire(msg)


def result_header(out: bytes) -> str:
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    values = parsed.get_all("X-Imapproxy-PGP") or []
    return "; ".join(str(value) for value in values)


def check_wire_form(out: bytes) -> Message:
    """CRLF everywhere, a tree imapproxy.mime serves, and a message Python's email reads."""
    assert b"\n" not in out.replace(b"\r\n", b"")
    root = parse_message(out)
    assert bodystructure(root, extended=True).startswith(b"(")
    assert root.body_size > 0
    return email.message_from_bytes(out, policy=email.policy.default)


def body_text(msg: Message) -> str:
    assert isinstance(msg, EmailMessage)
    part = msg.get_body(("plain",))
    assert part is not None
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")  # 7bit/8bit bodies keep the wire's CRLF


# --- the contract ------------------------------------------------------------------------------


def test_filter_identity(pgp: PgpFilter, pgp_keys: Keys) -> None:
    assert isinstance(pgp, MessageFilter)
    assert (pgp.name, pgp.version, pgp.cache_output) == ("pgp", "1", False)
    other = make_filter({"gnupg_home": pgp_keys.gnupg_home})
    assert pgp.fingerprint() != other.fingerprint()
    assert other.fingerprint() == make_filter({"gnupg_home": pgp_keys.gnupg_home}).fingerprint()


def test_registered_as_entry_point(pgp_keys: Keys) -> None:
    (entry,) = entry_points(group="imapproxy.filters", name="pgp")
    made = entry.load()({"gnupg_home": pgp_keys.gnupg_home})
    assert isinstance(made, PgpFilter)


@pytest.mark.parametrize("settings", [
    {},
    {"gnupg_home": ""},
    {"gnupg_home": "/x", "timeout": 0},
    {"gnupg_home": "/x", "max_plaintext_mb": 1.5},
    {"gnupg_home": "/x", "encrypt_append_folders": "Sent"},
    {"gnupg_home": "/x", "gpg_binary": 3},
    {"gnupg_home": "/x", "surprise": True},
])
def test_bad_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"\[filters\.pgp\]"):
        make_filter(settings)


def test_plain_message_is_left_alone(pgp: PgpFilter, pgp_keys: Keys) -> None:
    msg = EmailMessage()
    headers(msg, pgp_keys.bob, "hello")
    msg.set_content("Nothing to see here, no PGP.\n")
    assert pgp.apply(wire(msg), ALICE) is None


def test_pgp_words_in_plain_text_need_no_gpg(pgp: PgpFilter, pgp_keys: Keys) -> None:
    msg = EmailMessage()
    headers(msg, pgp_keys.bob, "about PGP")
    msg.set_content("PGP/MIME uses application/pgp-encrypted; armor starts "
                    "with -----BEGIN PGP MESSAGE----- (not at a line start here).\n")
    # A user without any GnuPG home: nothing here needs gpg, so nothing fails.
    assert pgp.apply(wire(msg), FilterContext(user="nobody")) is None


def test_forged_result_header_is_removed(pgp: PgpFilter, pgp_keys: Keys) -> None:
    msg = EmailMessage()
    headers(msg, pgp_keys.carol, "forged")
    msg["X-Imapproxy-PGP"] = "signature good by 0xDEADBEEF <bank@example.org>"
    msg.set_content("Trust me.\n")
    out = pgp.apply(wire(msg), ALICE)
    assert out is not None
    assert "X-Imapproxy-PGP" not in check_wire_form(out)
    assert b"Trust me." in out


def test_user_without_home_is_a_filter_error(pgp: PgpFilter, pgp_keys: Keys) -> None:
    raw = pgp_mime(pgp_keys.bob, pgp_keys.alice, secret_entity())
    with pytest.raises(FilterError, match="no GnuPG home"):
        pgp.apply(raw, FilterContext(user="nobody"))
    with pytest.raises(FilterError, match="cannot name"):
        pgp.apply(raw, FilterContext(user="../alice"))


# --- decryption --------------------------------------------------------------------------------


def test_pgp_mime_encrypted(pgp: PgpFilter, pgp_keys: Keys) -> None:
    raw = pgp_mime(pgp_keys.bob, pgp_keys.alice, secret_entity())
    assert SECRET.encode() not in raw
    out = pgp.apply(raw, ALICE)
    assert out is not None
    msg = check_wire_form(out)
    assert body_text(msg) == SECRET + "\n"
    assert msg["Subject"] == "encrypted" and msg["From"] == "Bob <bob@example.org>"
    assert msg.get_content_type() == "text/plain"
    assert result_header(out) == f"decrypted with key 0x{pgp_keys.alice.fingerprint}"
    assert parse_message(out).content.subtype == b"plain"
    assert pgp.apply(raw, ALICE) == out


def test_pgp_mime_armor_in_base64(pgp: PgpFilter, pgp_keys: Keys) -> None:
    raw = pgp_mime(pgp_keys.bob, pgp_keys.alice, secret_entity(), base64_armor=True)
    assert b"BEGIN PGP MESSAGE" not in raw
    out = pgp.apply(raw, ALICE)
    assert out is not None
    assert body_text(check_wire_form(out)) == SECRET + "\n"


def test_pgp_mime_encrypted_and_signed(pgp: PgpFilter, pgp_keys: Keys) -> None:
    raw = pgp_mime(pgp_keys.bob, pgp_keys.alice, secret_entity(), sign=True)
    out = pgp.apply(raw, ALICE)
    assert out is not None
    assert body_text(check_wire_form(out)) == SECRET + "\n"
    assert result_header(out) == (
        f"decrypted with key 0x{pgp_keys.alice.fingerprint}; signature good by "
        f"0x{pgp_keys.bob.fingerprint} Bob <bob@example.org> (trust undefined)")


def test_pgp_mime_signed_by_unknown_key_still_decrypts(pgp: PgpFilter, pgp_keys: Keys) -> None:
    """gpg exits 2 when it cannot check the signature: the decryption still counts."""
    out = pgp.apply(pgp_mime(pgp_keys.carol, pgp_keys.alice, secret_entity(), sign=True), ALICE)
    assert out is not None
    assert body_text(check_wire_form(out)) == SECRET + "\n"
    assert result_header(out) == (f"decrypted with key 0x{pgp_keys.alice.fingerprint}; "
                                  f"signature unknown key 0x{pgp_keys.carol.fingerprint}")


def test_pgp_mime_bare_text_inside(pgp: PgpFilter, pgp_keys: Keys) -> None:
    """Some senders encrypt plain text instead of a MIME entity: it is served as text/plain."""
    armored = pgp_keys.bob.encrypt(b"Just text: no header here.\n", pgp_keys.alice)
    outer = MIMEMultipart("encrypted", protocol="application/pgp-encrypted")
    outer.attach(MIMEApplication(b"Version: 1\r\n", "pgp-encrypted", _encoder=encode_7or8bit))
    outer.attach(MIMEApplication(armored, "octet-stream", _encoder=encode_7or8bit))
    headers(outer, pgp_keys.bob, "bare")
    out = pgp.apply(wire(outer), ALICE)
    assert out is not None
    msg = check_wire_form(out)
    assert msg.get_content_type() == "text/plain"
    assert body_text(msg) == "Just text: no header here.\n"


def test_pgp_mime_inside_multipart_mixed(pgp: PgpFilter, pgp_keys: Keys) -> None:
    """A mailing list wraps the encrypted message and adds a footer: decrypted in place."""
    encrypted = email.message_from_bytes(pgp_mime(pgp_keys.bob, pgp_keys.alice, secret_entity()))
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        del encrypted[name]
    wrapper = MIMEMultipart("mixed")
    headers(wrapper, pgp_keys.bob, "list")
    wrapper.attach(encrypted)
    wrapper.attach(MIMEText("-- \nlist footer\n"))
    out = pgp.apply(wire(wrapper), ALICE)
    assert out is not None
    msg = check_wire_form(out)
    first, footer = msg.iter_parts()  # type: ignore[attr-defined]
    assert first.get_content() == SECRET + "\n"
    assert "list footer" in footer.get_content()
    assert result_header(out) == f"decrypted with key 0x{pgp_keys.alice.fingerprint}"


def test_protected_headers_win(pgp: PgpFilter, pgp_keys: Keys) -> None:
    """Thunderbird encrypts the subject: the outer one is "...", the real one is inside."""
    inner = MIMEText(SECRET + "\n", "plain", "utf-8")
    inner.set_param("protected-headers", "v1")
    inner["Subject"] = "the real subject"
    raw = pgp_mime(pgp_keys.bob, pgp_keys.alice, inner)
    raw = raw.replace(b"Subject: encrypted", b"Subject: ...")
    out = pgp.apply(raw, ALICE)
    assert out is not None
    msg = check_wire_form(out)
    assert msg.get_all("Subject") == ["the real subject"]
    assert msg["From"] == "Bob <bob@example.org>"
    root = parse_message(out)
    assert root.envelope is not None and root.envelope.subject == b"the real subject"


def test_missing_gpg_binary_is_a_filter_error(pgp_keys: Keys) -> None:
    pgp = make_filter({"gnupg_home": pgp_keys.gnupg_home, "gpg_binary": "/nonexistent/gpg"})
    with pytest.raises(FilterError, match="cannot run"):
        pgp.apply(pgp_mime(pgp_keys.bob, pgp_keys.alice, secret_entity()), ALICE)


def test_pgp_mime_encrypted_multipart_signed_inside(pgp: PgpFilter, pgp_keys: Keys) -> None:
    """RFC 3156 section 6.1: sign (multipart/signed), then encrypt that whole entity."""
    content = MIMEText(SECRET, "plain", "utf-8")
    signed = MIMEMultipart("signed", protocol="application/pgp-signature", micalg="pgp-sha256")
    signed.attach(content)
    signed.attach(MIMEApplication(pgp_keys.bob.detach_sign(wire(content)), "pgp-signature",
                                  _encoder=encode_7or8bit))
    out = pgp.apply(pgp_mime(pgp_keys.bob, pgp_keys.alice, signed), ALICE)
    assert out is not None
    msg = check_wire_form(out)
    assert msg.get_content_type() == "multipart/signed"
    assert body_text(msg) == SECRET
    assert f"signature good by 0x{pgp_keys.bob.fingerprint}" in result_header(out)


def test_inline_encrypted(pgp: PgpFilter, pgp_keys: Keys) -> None:
    armored = pgp_keys.bob.encrypt(SECRET.encode() + b"\n", pgp_keys.alice)
    raw = inline(pgp_keys.bob, b"Hi Alice,\n\n" + armored + b"\nBob\n", "inline encrypted")
    out = pgp.apply(raw, ALICE)
    assert out is not None
    text = body_text(check_wire_form(out))
    assert text == f"Hi Alice,\n\n{SECRET}\n\nBob\n"
    assert result_header(out) == f"decrypted with key 0x{pgp_keys.alice.fingerprint}"


def test_inline_encrypted_in_base64_body(pgp: PgpFilter, pgp_keys: Keys) -> None:
    armored = pgp_keys.bob.encrypt(SECRET.encode(), pgp_keys.alice)
    msg = EmailMessage()
    headers(msg, pgp_keys.bob, "base64 inline")
    msg.set_content(armored.decode(), cte="base64")
    out = pgp.apply(wire(msg), ALICE)
    assert out is not None
    assert body_text(check_wire_form(out)) == SECRET + "\n"


def test_inline_encrypted_in_quoted_printable_body(pgp: PgpFilter, pgp_keys: Keys) -> None:
    armored = pgp_keys.bob.encrypt(SECRET.encode(), pgp_keys.alice)
    msg = EmailMessage()
    headers(msg, pgp_keys.bob, "qp inline")
    msg.set_content("Grüße vorab,\n\n" + armored.decode(), cte="quoted-printable")
    raw = wire(msg)
    assert b"=C3=BC" in raw
    out = pgp.apply(raw, ALICE)
    assert out is not None
    assert body_text(check_wire_form(out)) == f"Grüße vorab,\n\n{SECRET}\n"


def test_inline_encrypted_inside_multipart(pgp: PgpFilter, pgp_keys: Keys) -> None:
    armored = pgp_keys.bob.encrypt(SECRET.encode(), pgp_keys.alice)
    msg = MIMEMultipart("mixed")
    headers(msg, pgp_keys.bob, "inline in multipart")
    msg.attach(MIMEText(armored.decode(), "plain"))
    msg.attach(MIMEApplication(b"\x00\x01binary", "octet-stream", Name="data.bin"))
    raw = wire(msg)
    out = pgp.apply(raw, ALICE)
    assert out is not None
    parsed = check_wire_form(out)
    assert body_text(parsed) == SECRET + "\n"  # utf-8 plaintext: the charset follows
    parts = list(parsed.iter_attachments())  # type: ignore[attr-defined]
    assert [p.get_filename() for p in parts] == ["data.bin"]
    assert parts[0].get_content() == b"\x00\x01binary"


def test_inline_clearsigned(pgp: PgpFilter, pgp_keys: Keys) -> None:
    signed = pgp_keys.bob.clearsign(b"I owe Alice 10 EUR.\n")
    out = pgp.apply(inline(pgp_keys.bob, signed, "clearsigned"), ALICE)
    assert out is not None
    assert "I owe Alice 10 EUR." in body_text(check_wire_form(out))
    assert result_header(out).startswith(f"signature good by 0x{pgp_keys.bob.fingerprint} Bob")


def test_inline_clearsigned_tampered(pgp: PgpFilter, pgp_keys: Keys) -> None:
    signed = pgp_keys.bob.clearsign(b"I owe Alice 10 EUR.\n").replace(b"10 EUR", b"99 EUR")
    out = pgp.apply(inline(pgp_keys.bob, signed, "clearsigned"), ALICE)
    assert out is not None
    assert result_header(out).startswith("signature bad by 0x")


# --- PGP/MIME signatures -------------------------------------------------------------------------


def test_multipart_signed_good(pgp: PgpFilter, pgp_keys: Keys) -> None:
    raw = pgp_signed(pgp_keys.bob, "Signed, sealed, delivered.\n")
    out = pgp.apply(raw, ALICE)
    assert out is not None
    msg = check_wire_form(out)
    assert msg.get_content_type() == "multipart/signed"
    assert body_text(msg) == "Signed, sealed, delivered.\n"
    assert result_header(out) == (
        f"signature good by 0x{pgp_keys.bob.fingerprint} Bob <bob@example.org> (trust undefined)")
    # The signed part is served byte for byte as it was signed.
    assert raw.split(b"\r\n\r\n", 1)[1] in out


def test_multipart_signed_tampered(pgp: PgpFilter, pgp_keys: Keys) -> None:
    raw = pgp_signed(pgp_keys.bob, "Pay 10 EUR to Bob.\n")
    tampered = raw.replace(b"UGF5IDEwIEVVUiB0byBCb2IuCg==", b"UGF5IDk5IEVVUiB0byBCb2IuCg==")
    assert tampered != raw
    out = pgp.apply(tampered, ALICE)
    assert out is not None
    assert result_header(out) == f"signature bad by 0x{pgp_keys.bob.fingerprint[-16:]} " \
                                 "Bob <bob@example.org>"


def test_multipart_signed_by_unknown_key(pgp: PgpFilter, pgp_keys: Keys) -> None:
    out = pgp.apply(pgp_signed(pgp_keys.carol, "Who am I?\n"), ALICE)
    assert out is not None
    check_wire_form(out)
    assert result_header(out) == f"signature unknown key 0x{pgp_keys.carol.fingerprint}"


def test_multipart_signed_with_bare_lf(pgp: PgpFilter, pgp_keys: Keys) -> None:
    """A server that stores LF lines: the signature is still checked over CRLF."""
    raw = pgp_signed(pgp_keys.bob, "Line one.\nLine two.\n").replace(b"\r\n", b"\n")
    out = pgp.apply(raw, ALICE)
    assert out is not None
    check_wire_form(out)
    assert result_header(out).startswith("signature good by")


# --- what cannot be decrypted ---------------------------------------------------------------------


def test_encrypted_to_another_key_is_explained(pgp: PgpFilter, pgp_keys: Keys) -> None:
    raw = pgp_mime(pgp_keys.bob, pgp_keys.carol, secret_entity())
    out = pgp.apply(raw, ALICE)
    assert out is not None
    msg = check_wire_form(out)
    carol_key = f"0x{pgp_keys.carol.encryption_key_id}"
    assert result_header(out) == f"not decrypted: no secret key for {carol_key}"
    assert msg["Subject"] == "encrypted" and msg.get_content_type() == "multipart/mixed"
    explanation, attached = msg.iter_parts()  # type: ignore[attr-defined]
    text = explanation.get_content()
    assert "could not decrypt" in text and carol_key in text
    assert attached.get_content_type() == "message/rfc822"
    assert attached.get_content().as_bytes(policy=email.policy.SMTP) == raw
    tree = parse_message(out)
    assert tree.children[1].children[0].body_size > 0  # the original, as an embedded message
    assert pgp.apply(raw, ALICE) == out  # the same bytes every time: sizes never change


def test_corrupt_armor_is_explained(pgp: PgpFilter, pgp_keys: Keys) -> None:
    armored = pgp_keys.bob.encrypt(b"short secret\n", pgp_keys.alice)
    lines = armored.split(b"\n")
    lines[3] = b"!!!!" + lines[3][4:]  # break the base64 of the first data line
    raw = inline(pgp_keys.bob, b"\n".join(lines), "corrupt")
    out = pgp.apply(raw, ALICE)
    assert out is not None
    msg = check_wire_form(out)
    assert result_header(out).startswith("not decrypted:")
    explanation, attached = msg.iter_parts()  # type: ignore[attr-defined]
    assert "Reason:" in explanation.get_content()
    assert b"short secret" not in out
    assert attached.get_content_type() == "message/rfc822"


def test_pgp_mime_garbage_is_explained(pgp: PgpFilter, pgp_keys: Keys) -> None:
    outer = MIMEMultipart("encrypted", protocol="application/pgp-encrypted")
    outer.attach(MIMEApplication(b"Version: 1\r\n", "pgp-encrypted", _encoder=encode_7or8bit))
    outer.attach(MIMEApplication(b"-----BEGIN PGP MESSAGE-----\r\n\r\nbm9wZQ==\r\n"
                                 b"-----END PGP MESSAGE-----\r\n", "octet-stream",
                                 _encoder=encode_7or8bit))
    headers(outer, pgp_keys.bob, "garbage")
    out = pgp.apply(wire(outer), ALICE)
    assert out is not None
    check_wire_form(out)
    assert result_header(out).startswith("not decrypted: not valid OpenPGP data")


# --- encrypting APPENDs -----------------------------------------------------------------------------


def test_append_round_trip(pgp: PgpFilter, pgp_keys: Keys) -> None:
    msg = EmailMessage()
    headers(msg, pgp_keys.alice, "my draft")
    msg["Reply-To"] = "alice+replies@example.org"
    msg.set_content(SECRET + "\n")
    raw = wire(msg)
    sent = FilterContext(user="alice", mailbox="Sent")
    encrypted = pgp.apply_append(raw, sent)
    assert encrypted is not None
    assert SECRET.encode() not in encrypted and b"alice+replies" not in encrypted
    outer = check_wire_form(encrypted)
    assert outer.get_content_type() == "multipart/encrypted"
    assert outer["Subject"] == "my draft" and outer["Message-ID"] == msg["Message-ID"]
    # Only Alice can read it, and the filter gives back what she wrote.
    pgp_keys.alice.gpg("--decrypt", data=encrypted)
    back = pgp.apply(encrypted, ALICE)
    assert back is not None
    restored = check_wire_form(back)
    assert body_text(restored) == SECRET + "\n"
    assert restored["Reply-To"] == "alice+replies@example.org"
    assert result_header(back) == f"decrypted with key 0x{pgp_keys.alice.fingerprint}"
    # Not twice, and only into the configured folders.
    assert pgp.apply_append(encrypted, sent) is None
    assert pgp.apply_append(raw, FilterContext(user="alice", mailbox="Drafts/2026")) is not None
    assert pgp.apply_append(raw, FilterContext(user="alice", mailbox="INBOX")) is None


def test_append_to_unknown_key_is_a_filter_error(pgp_keys: Keys) -> None:
    pgp = make_filter({"gnupg_home": pgp_keys.gnupg_home, "encrypt_append_folders": ["Sent"],
                       "encrypt_append_key": "nobody@example.org"})
    with pytest.raises(FilterError, match="cannot encrypt"):
        pgp.apply_append(b"Subject: x\r\n\r\nhello\r\n", FilterContext("alice", "Sent"))


# --- gpg runs: passphrases, timeouts, concurrency ------------------------------------------------


def test_protected_key_needs_the_passphrase_file(pgp_keys: Keys, tmp_path: Path) -> None:
    """No prompt ever: without the passphrase the message is explained; with the file (loopback
    pinentry) it is decrypted."""
    raw = pgp_mime(pgp_keys.bob, pgp_keys.dave, secret_entity())
    dave = FilterContext(user="dave")
    without = make_filter({"gnupg_home": pgp_keys.gnupg_home}).apply(raw, dave)
    assert without is not None
    assert result_header(without) == (
        "not decrypted: the secret key needs a passphrase and no passphrase_file is set")
    (tmp_path / "dave.pass").write_text(PASSPHRASE + "\n")
    with_file = make_filter({"gnupg_home": pgp_keys.gnupg_home,
                             "passphrase_file": str(tmp_path / "%u.pass")}).apply(raw, dave)
    assert with_file is not None
    assert body_text(check_wire_form(with_file)) == SECRET + "\n"


def test_decompression_bomb_is_refused(pgp_keys: Keys) -> None:
    """8 MB of zeros compress to a few KB: over max_plaintext_mb, gpg is stopped and the
    message explained; memory never holds more than the cap."""
    bomb = MIMEText("0" * (8 << 20))
    raw = pgp_mime(pgp_keys.bob, pgp_keys.alice, bomb)
    assert len(raw) < 100_000
    pgp = make_filter({"gnupg_home": pgp_keys.gnupg_home, "max_plaintext_mb": 1})
    out = pgp.apply(raw, ALICE)
    assert out is not None
    assert result_header(out) == "not decrypted: too large to decrypt: the output is over 1 MB"
    assert len(out) < 2 * len(raw) + 2000


def test_slow_gpg_is_killed(pgp_keys: Keys, tmp_path: Path) -> None:
    """A gpg that hangs (here: the real gpg behind a sleep on --decrypt) is killed at the
    timeout and the message is left to the chain (FilterError), never waited for."""
    slow = tmp_path / "slow-gpg"
    slow.write_text('#!/bin/sh\ncase " $* " in *" --decrypt "*) sleep 20;; esac\nexec gpg "$@"\n')
    slow.chmod(0o755)
    pgp = make_filter({"gnupg_home": pgp_keys.gnupg_home, "gpg_binary": str(slow),
                       "timeout": 1})
    started = time.monotonic()
    with pytest.raises(FilterError, match="longer than 1 s"):
        pgp.apply(pgp_mime(pgp_keys.bob, pgp_keys.alice, secret_entity()), ALICE)
    assert time.monotonic() - started < 10


def test_concurrent_messages_of_one_home(pgp: PgpFilter, pgp_keys: Keys) -> None:
    """The proxy filters from several threads; one home's gpg runs take turns (one lock)."""
    messages = [pgp_mime(pgp_keys.bob, pgp_keys.alice, MIMEText(f"message {n}\n"))
                for n in range(6)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        outs = list(pool.map(lambda raw: pgp.apply(raw, ALICE), messages, timeout=60))
    for n, out in enumerate(outs):
        assert out is not None
        assert body_text(check_wire_form(out)) == f"message {n}\n"
