"""A source that answers ``NO [THROTTLED]`` (main's CountingRelay in front of the real
Dovecot): the migration waits and re-sends, past the connection's own retries, and finishes
with everything copied."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapproxy.devserver import DovecotServer
from imapproxy.migrate.account import ImapAccount
from imapproxy.migrate.endpoint import ImapEndpoint, parse_endpoint
from imapproxy.migrate.engine import Migration, Options
from imapproxy.migrate.maildir import MaildirWriter
from imapproxy.migrate.progress import Progress
from imapproxy.migrate.state import StateFile
from imapproxy.upstream.backoff import Backoff
from imapproxy.upstream.health import THROTTLE_RETRIES
from tests.conftest import Account
from tests.integration.test_upstream_pool import CountingRelay
from tests.migrate.conftest import maildir_account, populate
from tests.migrate.test_maildir import assert_same


@pytest.fixture
def throttling(dovecot: DovecotServer) -> Iterator[CountingRelay]:
    relay = CountingRelay((dovecot.host, dovecot.port))
    yield relay
    relay.close()


async def test_throttled_fetches_are_waited_out(
        account: Account, throttling: CountingRelay, maildir_dovecot: DovecotServer,
        tmp_path: Path) -> None:
    populate(account)
    dest, path = maildir_account(maildir_dovecot)
    endpoint = parse_endpoint(f"imap://{account.user}@127.0.0.1:{throttling.port}", "--from")
    assert isinstance(endpoint, ImapEndpoint)
    source = await ImapAccount.connect(endpoint, account.password, Backoff(0.001, 0.01))
    throttling.throttle_on = b" FETCH "
    throttling.throttle = THROTTLE_RETRIES + 3  # more than one round of the connection's
    try:
        summary = await Migration(source, MaildirWriter(path), StateFile.load(
            tmp_path / "state.json", "s", "d"), Options(), Progress(io.StringIO(), tty=False)
        ).run()
    finally:
        await source.logout()
    assert throttling.throttle == 0 and not summary.failed
    assert len(throttling.seen) >= THROTTLE_RETRIES + 3
    maildir_dovecot.adopt(path)
    assert_same(account, dest)
