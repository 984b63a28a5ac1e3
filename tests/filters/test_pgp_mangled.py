"""Mangled PGP mail never breaks the PGP filter: whatever the damage (cut armor, broken
boundaries, stray bytes), ``apply`` answers with a valid CRLF message or None, and only
configuration problems raise. Real gpg runs on every example, so the examples are few.
"""

from __future__ import annotations

import email.policy
from email.encoders import encode_7or8bit
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filters.pgp import PgpFilter, make_filter
from imapproxy.filtering.api import FilterContext
from imapproxy.mime import bodystructure, parse_message

from .conftest import Keys

ALICE = FilterContext(user="alice")


@pytest.fixture(scope="module")
def samples(pgp_keys: Keys) -> list[bytes]:
    """A PGP/MIME encrypted+signed message, a multipart/signed one and an inline one."""
    content = MIMEText("Meet at noon.\n")
    content_bytes = content.as_bytes(policy=email.policy.SMTP)
    encrypted = MIMEMultipart("encrypted", protocol="application/pgp-encrypted")
    encrypted.attach(MIMEApplication(b"Version: 1\r\n", "pgp-encrypted",
                                     _encoder=encode_7or8bit))
    encrypted.attach(MIMEApplication(
        pgp_keys.bob.encrypt(content_bytes, pgp_keys.alice, sign=True), "octet-stream",
        _encoder=encode_7or8bit))
    signed = MIMEMultipart("signed", protocol="application/pgp-signature")
    signed.attach(content)
    signed.attach(MIMEApplication(pgp_keys.bob.detach_sign(content_bytes), "pgp-signature",
                                  _encoder=encode_7or8bit))
    inline = MIMEText(pgp_keys.bob.encrypt(b"Meet at noon.\n", pgp_keys.alice).decode())
    return [msg.as_bytes(policy=email.policy.SMTP) for msg in (encrypted, signed, inline)]


@pytest.fixture(scope="module")
def pgp(pgp_keys: Keys) -> PgpFilter:
    return make_filter({"gnupg_home": pgp_keys.gnupg_home})


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 2), start=st.floats(0, 1), length=st.integers(0, 200),
       junk=st.binary(max_size=40))
def test_mangled_pgp_never_breaks(pgp: PgpFilter, samples: list[bytes], which: int,
                                  start: float, length: int, junk: bytes) -> None:
    raw = samples[which]
    at = int(start * len(raw))
    mangled = raw[:at] + junk + raw[at + length:]
    out = pgp.apply(mangled, ALICE)
    if out is None:
        return
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert bodystructure(parse_message(out), extended=True).startswith(b"(")
    header = out.split(b"\r\n\r\n", 1)[0]
    assert b"X-Imapproxy-PGP: " in header  # a changed message always says why
    if b"X-Imapproxy-PGP: not decrypted" in header:
        original = mangled.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").rstrip(b"\r\n")
        assert original in out  # attached as it came
