"""Fixtures for migration tests: a populated source account on the test Dovecot, a second
Dovecot serving Maildir++ (what ``imapproxy migrate --to maildir:`` writes), a way to run the
command, and an independent reader (imaplib) that dumps an account for comparison."""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imapproxy.cli import main
from imapproxy.devserver import DovecotServer, mailbox_arg
from imapproxy.migrate.maildir import internaldate_epoch
from tests.conftest import Account, make_account, require_dovecot
from tests.mailgen import generated, seed_mailbox

ROOT = Path(__file__).resolve().parents[2]
MAILBOXES = ("INBOX", "Archive/2024", "Été")


@pytest.fixture(scope="session")
def maildir_dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A second Dovecot, Maildir++ layout: serves Maildirs written by ``migrate``."""
    require_dovecot()
    server = DovecotServer(tmp_path_factory.mktemp("dovecot-maildirpp"), layout="maildir++")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def login(account: Account) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(account.host, account.port, timeout=30)
    imap.login(account.user, account.password)
    return imap


def populate(account: Account) -> None:
    """Three mailboxes (nested, non-ASCII), every flag kind incl. keywords and \\Deleted,
    varied INTERNALDATEs, UID gaps (expunged messages, also the last ones) and
    subscriptions."""
    imap = login(account)
    try:
        seed_mailbox(imap, "INBOX", generated(10, seed=1))
        seed_mailbox(imap, "Archive/2024", generated(6, seed=2))
        seed_mailbox(imap, "Été", generated(4, seed=3))
        imap.select("INBOX")
        imap.uid("STORE", "2", "+FLAGS", "(\\Draft Junk $Forwarded)")
        imap.uid("STORE", "3,7,10", "+FLAGS", "(\\Deleted)")
        imap.uid("EXPUNGE", "3,10")  # 7 stays, with \Deleted
        imap.select(mailbox_arg("Archive/2024"))
        imap.uid("STORE", "6", "+FLAGS", "(\\Deleted)")
        imap.uid("EXPUNGE", "6")
        for name in ("Archive/2024", "Été"):
            imap.subscribe(mailbox_arg(name))
    finally:
        imap.logout()


@dataclass(frozen=True)
class Item:
    flags: tuple[str, ...]
    internaldate: float | None
    size: int
    body: bytes


@dataclass(frozen=True)
class MailboxDump:
    uidvalidity: int
    uidnext: int
    messages: dict[int, Item]


def _status(imap: imaplib.IMAP4, name: str) -> tuple[int, int]:
    typ, data = imap.status(mailbox_arg(name), "(UIDVALIDITY UIDNEXT)")
    assert typ == "OK", data
    text = data[0].decode() if isinstance(data[0], bytes) else ""
    validity = re.search(r"UIDVALIDITY (\d+)", text)
    uidnext = re.search(r"UIDNEXT (\d+)", text)
    assert validity and uidnext, text
    return int(validity.group(1)), int(uidnext.group(1))


def dump_mailbox(imap: imaplib.IMAP4, name: str) -> MailboxDump:
    uidvalidity, uidnext = _status(imap, name)
    typ, data = imap.select(mailbox_arg(name), readonly=True)
    assert typ == "OK", data
    messages: dict[int, Item] = {}
    typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK", data
    for entry in data:
        if not isinstance(entry, tuple):
            continue
        head, body = entry
        uid = re.search(rb"UID (\d+)", head)
        flags = re.search(rb"FLAGS \(([^)]*)\)", head)
        date = re.search(rb'INTERNALDATE "([^"]+)"', head)
        size = re.search(rb"RFC822\.SIZE (\d+)", head)
        assert uid and flags and date and size, head
        names = tuple(sorted(f for f in flags.group(1).decode().split() if f != "\\Recent"))
        messages[int(uid.group(1))] = Item(names, internaldate_epoch(date.group(1).decode()),
                                           int(size.group(1)), body)
    return MailboxDump(uidvalidity, uidnext, messages)


def dump(account: Account, names: tuple[str, ...] = MAILBOXES) -> dict[str, MailboxDump]:
    imap = login(account)
    try:
        return {name: dump_mailbox(imap, name) for name in names}
    finally:
        with contextlib.suppress(Exception):
            imap.logout()


def subscriptions(account: Account) -> set[str]:
    imap = login(account)
    try:
        typ, data = imap.lsub()
        assert typ == "OK"
        return {d.decode().rsplit(' "/" ', 1)[1].strip('"') for d in data
                if isinstance(d, bytes)}
    finally:
        imap.logout()


def url(account: Account) -> str:
    return f"imap://{account.user}@{account.host}:{account.port}"


def run_migrate(monkeypatch: pytest.MonkeyPatch, source: Account, to: str, *extra: str,
                dest: Account | None = None, command: str = "migrate") -> int:
    """``imapproxy migrate`` in this process (passwords through the environment)."""
    monkeypatch.setenv("IMAPPROXY_FROM_PASSWORD", source.password)
    if dest is not None:
        monkeypatch.setenv("IMAPPROXY_TO_PASSWORD", dest.password)
    return main([command, "--from", url(source), "--to", to, *extra])


def run_migrate_process(source: Account, to: str, *extra: str, dest: Account | None = None,
                        crash_after: int | None = None) -> subprocess.CompletedProcess[str]:
    """``imapproxy migrate`` as a child process (it may be made to die abruptly)."""
    env = dict(os.environ, IMAPPROXY_FROM_PASSWORD=source.password)
    if dest is not None:
        env["IMAPPROXY_TO_PASSWORD"] = dest.password
    if crash_after is not None:
        env["IMAPPROXY_MIGRATE_CRASH_AFTER"] = str(crash_after)
    return subprocess.run(
        [sys.executable, "-m", "imapproxy", "migrate", "--from", url(source), "--to", to,
         *extra], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def maildir_account(server: DovecotServer) -> tuple[Account, Path]:
    """A new user on the Maildir++ Dovecot, and where its Maildir goes."""
    account = make_account(server)
    return account, server.mail_dir / account.user / "Maildir"


def migrate_maildir(monkeypatch: pytest.MonkeyPatch, source: Account, server: DovecotServer,
                    path: Path, *extra: str) -> int:
    """``imapproxy migrate --to maildir:PATH``, then hand PATH to *server*'s mail user."""
    code = run_migrate(monkeypatch, source, f"maildir:{path}", *extra)
    if path.exists():
        server.adopt(path)
    return code
