"""``imapproxy migrate --to maildir:``: a second Dovecot serving the written Maildir shows
the source's mailboxes with the same UIDVALIDITY, UIDNEXT, UIDs, flags and keywords,
INTERNALDATE, sizes, bytes and subscriptions; re-runs copy only changes; a run killed
mid-way is finished by the next one without duplicates or loss."""

from __future__ import annotations

import os

import pytest

from imapproxy.devserver import DovecotServer, mailbox_arg
from tests.conftest import Account
from tests.mailgen import generated
from tests.migrate.conftest import (
    MAILBOXES,
    dump,
    login,
    maildir_account,
    migrate_maildir,
    populate,
    run_migrate,
    run_migrate_process,
    subscriptions,
)


def assert_same(source: Account, dest: Account) -> None:
    before, after = dump(source), dump(dest)
    for name in MAILBOXES:
        a, b = before[name], after[name]
        assert (b.uidvalidity, b.uidnext) == (a.uidvalidity, a.uidnext), name
        assert sorted(b.messages) == sorted(a.messages), name
        for uid, item in a.messages.items():
            assert b.messages[uid] == item, (name, uid)
    assert subscriptions(dest) == subscriptions(source)


def test_maildir_keeps_uids_flags_dates_and_bytes(
        account: Account, maildir_dovecot: DovecotServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    populate(account)
    dest, path = maildir_account(maildir_dovecot)
    assert migrate_maildir(monkeypatch, account, maildir_dovecot, path) == 0
    header = (path / "dovecot-uidlist").read_text().split("\n")[0].split()
    assert header[0] == "3" and header[1].startswith("V") and header[3].startswith("G")
    assert (path / ".Archive.2024" / "maildirfolder").exists()
    assert "Junk" in (path / "dovecot-keywords").read_text()
    assert_same(account, dest)
    inbox = dump(dest)["INBOX"].messages
    assert "\\Deleted" in inbox[7].flags and {"Junk", "$Forwarded"} <= set(inbox[2].flags)
    assert subscriptions(dest) >= {"Archive/2024", "&AMk-t&AOk-"}


def test_second_run_copies_only_changes(
        account: Account, maildir_dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    populate(account)
    dest, path = maildir_account(maildir_dovecot)
    assert migrate_maildir(monkeypatch, account, maildir_dovecot, path) == 0
    assert_same(account, dest)  # the destination Dovecot has indexed it now
    capsys.readouterr()
    assert migrate_maildir(monkeypatch, account, maildir_dovecot, path) == 0
    assert "0 messages copied" in capsys.readouterr().err
    imap = login(account)
    try:
        imap.append("INBOX", "(\\Seen)", '"01-Feb-2020 10:00:00 +0000"', generated(1, 9)[0])
        imap.select("INBOX")
        imap.uid("STORE", "1", "+FLAGS", "(\\Answered $Label2)")
        imap.uid("STORE", "4", "+FLAGS", "(\\Deleted)")
        imap.uid("EXPUNGE", "4")
    finally:
        imap.logout()
    assert migrate_maildir(monkeypatch, account, maildir_dovecot, path) == 0
    err = capsys.readouterr().err
    assert "1 messages copied" in err and "1 flag updates" in err and "1 removed" in err
    assert_same(account, dest)


def test_killed_run_is_finished_by_the_next(
        account: Account, maildir_dovecot: DovecotServer) -> None:
    populate(account)
    dest, path = maildir_account(maildir_dovecot)
    crashed = run_migrate_process(account, f"maildir:{path}", "--batch", "3", crash_after=5)
    assert crashed.returncode == 75, crashed.stderr
    done = run_migrate_process(account, f"maildir:{path}", "--batch", "3")
    assert done.returncode == 0, done.stderr
    maildir_dovecot.adopt(path)
    files = [n for n in os.listdir(path / "cur")]
    assert len(files) == len(dump(account)["INBOX"].messages)  # no duplicate files
    assert_same(account, dest)


def test_uidvalidity_change_recopies_the_mailbox(
        account: Account, maildir_dovecot: DovecotServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    populate(account)
    dest, path = maildir_account(maildir_dovecot)
    assert migrate_maildir(monkeypatch, account, maildir_dovecot, path) == 0
    imap = login(account)
    try:  # delete and re-create: a new UIDVALIDITY, UIDs starting at 1 again
        imap.delete(mailbox_arg("Été"))
        imap.create(mailbox_arg("Été"))
        imap.append(mailbox_arg("Été"), None, None, generated(2, 5)[1])
    finally:
        imap.logout()
    assert migrate_maildir(monkeypatch, account, maildir_dovecot, path) == 0
    assert_same(account, dest)
    assert len(dump(dest)["Été"].messages) == 1


def test_dry_run_lists_and_writes_nothing(
        account: Account, tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    populate(account)
    target = os.path.join(tmp_path, "Maildir")
    assert run_migrate(monkeypatch, account, f"maildir:{target}", "--dry-run") == 0
    err = capsys.readouterr().err
    assert "INBOX: would copy 8 messages" in err and "copy UIDs 1:2,4:9" in err
    assert not os.path.exists(target)
