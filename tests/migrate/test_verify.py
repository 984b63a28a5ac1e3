"""``imapproxy verify`` finds each kind of difference: missing, extra, flags, content."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from imapproxy.devserver import DovecotServer
from tests.conftest import Account, make_account
from tests.mailgen import generated
from tests.migrate.conftest import (
    login,
    maildir_account,
    migrate_maildir,
    populate,
    run_migrate,
    url,
)


def test_verify_reports_every_kind_of_difference(
        account: Account, maildir_dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    populate(account)
    dest, path = maildir_account(maildir_dovecot)
    assert migrate_maildir(monkeypatch, account, maildir_dovecot, path) == 0
    # Before the destination Dovecot sees it: change one message's bytes, drop another.
    files = {name.split("V")[0].split(".M")[1]: name for name in os.listdir(path / "cur")}
    with open(path / "cur" / files["5"], "r+b") as out:  # same size: Dovecot checks S=
        out.seek(-4, os.SEEK_END)
        out.write(b"XXXX")
    os.unlink(path / "cur" / files["6"])
    imap = login(dest)
    try:
        imap.append("INBOX", None, None, generated(1, 7)[0])  # extra: UID 11, the source's UIDNEXT
        imap.select("INBOX")
        imap.uid("STORE", "8", "+FLAGS", "(\\Flagged)")
    finally:
        imap.logout()
    capsys.readouterr()
    code = run_migrate(monkeypatch, account, url(dest), dest=dest, command="verify")
    out, err = capsys.readouterr()
    assert code == 1, err
    assert "missing: INBOX: UID 6" in out
    assert "extra: INBOX: dest UID 11" in out
    assert "content: INBOX: UID 5" in out
    assert "flags: INBOX: UID 8" in out
    assert out.count("\n") == 4, out


def test_verify_pairs_by_content_across_uidvalidity(
        account: Account, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Different UIDVALIDITY (an IMAP destination): messages are paired by the SHA-256 of
    their bytes, whatever their UIDs."""
    other = make_account(dovecot)
    bodies = generated(4, 4)
    for who, order in ((account, bodies), (other, bodies[::-1])):
        imap = login(who)
        try:
            if who is other:  # a second generation of "Box": another UIDVALIDITY for sure
                imap.create("Box")
                imap.delete("Box")
            imap.create("Box")
            for body in order:
                imap.append("Box", "(\\Seen)", None, body)
        finally:
            imap.logout()
    imap = login(other)
    try:
        imap.select("Box")
        imap.uid("STORE", "3", "-FLAGS", "(\\Seen)")  # bodies[1]: UID 2 on the source
    finally:
        imap.logout()
    capsys.readouterr()
    assert run_migrate(monkeypatch, account, url(other), "--mailboxes", "Box",
                       dest=other, command="verify") == 1
    out = capsys.readouterr().out.splitlines()
    assert out == ["flags: Box: UID 2 (dest UID 3): \\Seen != ()"]


def test_verify_reads_a_maildir_directly(
        account: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--to maildir:PATH``: checked before any Dovecot serves it; LF-only files (as
    Dovecot writes them) compare as served, with CRLF."""
    populate(account)
    path = tmp_path / "Maildir"
    assert run_migrate(monkeypatch, account, f"maildir:{path}") == 0
    assert run_migrate(monkeypatch, account, f"maildir:{path}", command="verify") == 0
    cur = path / ".Archive.2024" / "cur"
    files = {name.split("V")[0].split(".M")[1]: name for name in os.listdir(cur)}
    (cur / files["1"]).write_bytes((cur / files["1"]).read_bytes().replace(b"\r\n", b"\n"))
    (cur / files["2"]).write_bytes(b"Subject: other\r\n\r\nbody\r\n")
    (cur / files["3"]).unlink()
    os.rename(cur / files["4"], cur / (files["4"].split(":2,")[0] + ":2,FS"))
    (cur / "1700000000.Mextra.host:2,S").write_bytes(b"Subject: new\r\n\r\nx\r\n")
    capsys.readouterr()
    assert run_migrate(monkeypatch, account, f"maildir:{path}", command="verify") == 1
    out = sorted(capsys.readouterr().out.splitlines())
    assert [re.sub(r"(UID \d+).*", r"\1", line) for line in out] == [
        "content: Archive/2024: UID 2", "extra: Archive/2024: dest UID 7",
        "flags: Archive/2024: UID 4", "missing: Archive/2024: UID 3"], out
