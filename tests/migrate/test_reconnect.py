"""A connection that breaks mid-way (Dovecot kicks the user) is replaced and the mailbox
re-planned and finished, in the same run: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path

import pytest

from imapproxy.devserver import DovecotServer
from imapproxy.migrate.account import ImapAccount
from imapproxy.migrate.endpoint import ImapEndpoint, parse_endpoint
from imapproxy.migrate.engine import Migration, Options
from imapproxy.migrate.maildir import MaildirWriter
from imapproxy.migrate.model import MailboxInfo, Message
from imapproxy.migrate.progress import Progress
from imapproxy.migrate.state import MailboxState, StateFile
from tests.conftest import Account
from tests.migrate.conftest import maildir_account, populate, url
from tests.migrate.test_maildir import assert_same

DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"


class KickingWriter(MaildirWriter):
    """Writes like MaildirWriter; after the first batch, has Dovecot kick the source user."""

    def __init__(self, root: Path, server: DovecotServer, user: str) -> None:
        super().__init__(root)
        self.server, self.user = server, user
        self.kicked = False

    async def write(self, info: MailboxInfo, messages: list[Message],
                    state: MailboxState) -> dict[int, int]:
        written = await super().write(info, messages, state)
        if not self.kicked:
            self.kicked = True
            kick = await asyncio.create_subprocess_exec(
                DOVEADM, "-c", str(self.server.config_file), "kick", self.user,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            assert await asyncio.wait_for(kick.wait(), 30) == 0
        return written


async def test_a_kicked_source_connection_is_replaced(
        account: Account, dovecot: DovecotServer, maildir_dovecot: DovecotServer,
        tmp_path: Path) -> None:
    if not Path(DOVEADM).exists():
        pytest.fail("doveadm is missing (Debian's dovecot-core has it)")
    populate(account)
    dest, path = maildir_account(maildir_dovecot)
    endpoint = parse_endpoint(url(account), "--from")
    assert isinstance(endpoint, ImapEndpoint)
    connections = 0

    async def connect() -> ImapAccount:
        nonlocal connections
        connections += 1
        return await ImapAccount.connect(endpoint, account.password)

    writer = KickingWriter(path, dovecot, account.user)
    log = io.StringIO()
    migration = Migration(await connect(), writer, StateFile.load(
        tmp_path / "state.json", "s", "d"), Options(batch_messages=2), Progress(log, tty=False),
        connect)
    summary = await migration.run()
    await migration.source.logout()
    assert writer.kicked and connections == 2, log.getvalue()
    assert "connection lost" in log.getvalue() and not summary.failed
    maildir_dovecot.adopt(path)
    assert_same(account, dest)
