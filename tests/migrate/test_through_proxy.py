"""A migration that reads through the proxy, whose upstream is behind bench/relay.py's slow
link: the Maildir is as faithful as a direct one (the proxy relays the upstream's UID state
and serves the bytes)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapproxy.devserver import DovecotServer
from tests.conftest import Account
from tests.integration.conftest import ProxyFactory, proxy_factory  # noqa: F401 (fixture)
from tests.migrate.conftest import ROOT, maildir_account, migrate_maildir, populate
from tests.migrate.test_maildir import assert_same

LATENCY_MS = 10


@pytest.fixture
def relay(dovecot: DovecotServer) -> Iterator[int]:
    """bench/relay.py in front of the test Dovecot, LATENCY_MS each way; yields its port."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "relay.py"), "--target",
         f"{dovecot.host}:{dovecot.port}", "--latency-ms", str(LATENCY_MS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        yield int(json.loads(proc.stdout.readline())["port"])
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_migrate_through_the_proxy_over_a_slow_link(
        account: Account, relay: int, proxy_factory: ProxyFactory,  # noqa: F811
        maildir_dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    populate(account)
    proxy = proxy_factory(upstream_port=relay)
    via_proxy = Account(account.user, account.password, proxy.host, proxy.port)
    dest, path = maildir_account(maildir_dovecot)
    assert migrate_maildir(monkeypatch, via_proxy, maildir_dovecot, path) == 0
    assert_same(account, dest)
