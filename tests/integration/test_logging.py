"""Passwords never reach the logs, at any level, whether the login works or fails."""

from __future__ import annotations

import base64
import imaplib
import logging
from typing import Any

import pytest


def test_no_password_in_logs_at_debug(caplog: pytest.LogCaptureFixture, proxy: Any,
                                      account: Any) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = account.password + "-wrong"

    imap = imaplib.IMAP4(proxy.host, proxy.port, timeout=10)
    imap.login(account.user, account.password)
    imap.select("INBOX")
    imap.logout()

    imap = imaplib.IMAP4(proxy.host, proxy.port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login(account.user, wrong)
    plain = f"\0{account.user}\0{account.password}".encode()
    imap.authenticate("PLAIN", lambda _: plain)
    imap.logout()

    text = caplog.text
    assert f"login ok user={account.user}" in text  # the logs were really captured
    assert "login failed" in text
    for secret in (account.password, wrong, base64.b64encode(plain).decode()):
        assert secret not in text
