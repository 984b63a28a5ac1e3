"""Failures are listed, the rest is copied, and the exit status says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapproxy.devserver import DovecotServer
from tests.conftest import Account
from tests.mailgen import generated
from tests.migrate.conftest import login, maildir_account, migrate_maildir, run_migrate, url


def test_a_message_that_cannot_be_written_is_listed_and_exits_non_zero(
        account: Account, maildir_dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A Maildir holds 26 keywords per mailbox: the message bringing the 27th fails alone."""
    imap = login(account)
    try:
        bodies = generated(3, 8)
        imap.append("INBOX", "(" + " ".join(f"kw{i}" for i in range(26)) + ")", None, bodies[0])
        imap.append("INBOX", "(kw99 \\Seen)", None, bodies[1])
        imap.append("INBOX", "(kw3)", None, bodies[2])
    finally:
        imap.logout()
    _, path = maildir_account(maildir_dovecot)
    assert migrate_maildir(monkeypatch, account, maildir_dovecot, path) == 1
    err = capsys.readouterr().err
    assert "2 messages copied" in err and "1 messages FAILED:" in err
    assert "  INBOX UID 2: keyword 'kw99'" in err
    assert len(list((path / "cur").iterdir())) == 2


def test_missing_password_and_bad_urls_exit_2(
        account: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from imapproxy.cli import main
    monkeypatch.delenv("IMAPPROXY_FROM_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["migrate", "--from", url(account), "--to", f"maildir:{tmp_path}"]) == 2
    assert "IMAPPROXY_FROM_PASSWORD" in capsys.readouterr().err
    assert run_migrate(monkeypatch, account, "ftp://nowhere") == 2
    monkeypatch.setenv("IMAPPROXY_FROM_PASSWORD", "wrong")
    assert main(["migrate", "--from", url(account), "--to", f"maildir:{tmp_path}"]) == 1
    assert "login failed" in capsys.readouterr().err
