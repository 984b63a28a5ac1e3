"""``imapproxy migrate --to imap://``: APPENDs keep flags, keywords and INTERNALDATE; the
UID map file says where each source UID went; re-runs and killed runs leave no duplicates;
``imapproxy verify`` then finds no difference."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from imapproxy.devserver import DovecotServer, mailbox_arg
from imapproxy.migrate.account import ImapAccount
from imapproxy.migrate.endpoint import ImapEndpoint, parse_endpoint
from imapproxy.migrate.engine import Migration, Options
from imapproxy.migrate.imap_dest import ImapWriter
from imapproxy.migrate.progress import Progress
from imapproxy.migrate.state import StateFile
from imapproxy.protocol.command import Command
from imapproxy.upstream.connection import Received
from tests.conftest import Account, make_account
from tests.mailgen import generated
from tests.migrate.conftest import (
    MAILBOXES,
    dump,
    login,
    populate,
    run_migrate,
    run_migrate_process,
    subscriptions,
    url,
)


def assert_mapped(source: Account, dest: Account, uid_map: Path) -> None:
    mapping = json.loads(uid_map.read_text())
    before, after = dump(source), dump(dest)
    for name in MAILBOXES:
        uids = {int(k): v for k, v in mapping[name]["uids"].items()}
        assert mapping[name]["source_uidvalidity"] == before[name].uidvalidity
        assert mapping[name]["dest_uidvalidity"] == after[name].uidvalidity
        assert sorted(uids) == sorted(before[name].messages), name
        assert len(after[name].messages) == len(before[name].messages), name  # no duplicates
        for old, item in before[name].messages.items():
            assert after[name].messages[uids[old]] == item, (name, old)


def test_imap_destination_with_uid_map_and_verify(
        account: Account, dovecot: DovecotServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    populate(account)
    dest = make_account(dovecot)
    state, uid_map = tmp_path / "state.json", tmp_path / "map.json"
    args = ("--state", str(state), "--uid-map", str(uid_map))
    assert run_migrate(monkeypatch, account, url(dest), *args, dest=dest) == 0
    assert_mapped(account, dest, uid_map)
    assert subscriptions(dest) == subscriptions(account)
    assert run_migrate(monkeypatch, account, url(dest), *args, dest=dest) == 0
    imap = login(account)
    try:
        imap.select("INBOX")
        imap.uid("STORE", "5", "FLAGS", "(\\Seen NewKeyword)")
        imap.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
        imap.uid("EXPUNGE", "1")
    finally:
        imap.logout()
    capsys.readouterr()
    assert run_migrate(monkeypatch, account, url(dest), *args, dest=dest) == 0
    err = capsys.readouterr().err
    assert "0 messages copied" in err and "1 flag updates" in err and "1 removed" in err
    assert_mapped(account, dest, uid_map)
    assert run_migrate(monkeypatch, account, url(dest), dest=dest, command="verify") == 0


def test_killed_run_leaves_no_duplicates_on_imap(
        account: Account, dovecot: DovecotServer, tmp_path: Path) -> None:
    populate(account)
    dest = make_account(dovecot)
    args = ("--state", str(tmp_path / "s.json"), "--uid-map", str(tmp_path / "m.json"),
            "--batch", "2")
    crashed = run_migrate_process(account, url(dest), *args, dest=dest, crash_after=3)
    assert crashed.returncode == 75, crashed.stderr
    assert run_migrate_process(account, url(dest), *args, dest=dest).returncode == 0
    assert_mapped(account, dest, tmp_path / "m.json")


def test_uidvalidity_change_replaces_the_copies(
        account: Account, dovecot: DovecotServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    populate(account)
    dest = make_account(dovecot)
    args = ("--state", str(tmp_path / "s.json"), "--uid-map", str(tmp_path / "m.json"),
            "--log-level", "DEBUG")
    assert run_migrate(monkeypatch, account, url(dest), *args, dest=dest) == 0
    imap = login(account)
    try:  # a new generation of the mailbox: new UIDVALIDITY, other messages
        imap.delete(mailbox_arg("Archive/2024"))
        imap.create(mailbox_arg("Archive/2024"))
        imap.append(mailbox_arg("Archive/2024"), "(\\Seen)", None, generated(1, 11)[0])
    finally:
        imap.logout()
    assert run_migrate(monkeypatch, account, url(dest), *args, dest=dest) == 0
    assert_mapped(account, dest, tmp_path / "m.json")
    err = capsys.readouterr().err
    assert account.password not in err and dest.password not in err  # not even at DEBUG
    sasl = base64.b64encode(f"\0{account.user}\0{account.password}".encode()).decode()
    assert sasl not in err and "DEBUG" in err


async def test_without_multiappend_appends_go_two_per_round_trip(
        account: Account, dovecot: DovecotServer, tmp_path: Path) -> None:
    """A destination without MULTIAPPEND (Gmail, Exchange): one APPEND per message, paired
    in one round trip with LITERAL+; with and without APPENDUID."""
    populate(account)
    for appenduid in (True, False):
        dest = make_account(dovecot)
        source = await ImapAccount.connect(endpoint(account), account.password)
        target = await ImapAccount.connect(endpoint(dest), dest.password)
        target.conn.capabilities -= {"MULTIAPPEND"} | (set() if appenduid else {"UIDPLUS"})
        paired = count_pairs(target)
        state = StateFile.load(tmp_path / f"s{appenduid}.json", "s", "d")
        try:
            summary = await Migration(source, ImapWriter(target), state, Options(batch_messages=3),
                                      Progress(io.StringIO(), tty=False)).run()
        finally:
            await source.logout()
            await target.logout()
        assert summary.copied == 17 and not summary.failed
        assert paired == [6]  # batches of 3 in mailboxes of 8, 5 and 4: 3 + 2 + 1 pairs
        state.write_uid_map(tmp_path / "map.json")
        assert_mapped(account, dest, tmp_path / "map.json")


def endpoint(who: Account) -> ImapEndpoint:
    parsed = parse_endpoint(url(who), "--from")
    assert isinstance(parsed, ImapEndpoint)
    return parsed


def count_pairs(account: ImapAccount) -> list[int]:
    """Counts commands sent with a second one behind them (``then``), in a one-item list."""
    count = [0]
    execute = account.conn.execute

    def counting(command: Command, **options: Any) -> AsyncIterator[Received]:
        if options.get("then") is not None:
            count[0] += 1
        return execute(command, **options)

    account.conn.execute = counting  # type: ignore[method-assign]
    return count
