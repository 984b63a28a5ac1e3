"""Dovecot's documented migration path through the proxy: a destination Dovecot runs
``doveadm backup -R -u USER imapc:`` with imapc pointed at the proxy, and ends up with the
source account exactly: mailboxes, subscriptions, UIDVALIDITY and UIDs, flags and keywords,
INTERNALDATE, message bytes, MODSEQs that never go backwards. A second run after changes on
the source fetches only the new messages' bodies (docs/migration-dsync.md)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import imaplib
import logging
import random
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import imapproxy.server.session as session_module
from imapproxy.config import ListenerConfig
from imapproxy.devserver import DovecotServer, mailbox_arg
from tests.conftest import Account as Login
from tests.conftest import make_account
from tests.mailgen import generated, messages, seed_mailbox

from .conftest import RunningProxy, make_config
from .dsync_support import (
    IMAPC_FEATURES,
    Account,
    MasterUserDovecot,
    UpstreamSpy,
    dsync_command,
    mailbox_name,
    read_account,
    run_dsync,
    self_signed_certificate,
    unchrooted,
)

log = logging.getLogger(__name__)

NESTED = "Archive/2024"
NON_ASCII = "Entwürfe/Ünïcødé 日本語"
EMPTY = "Empty"
BIG = 3 * 1024 * 1024  # one message the proxy streams from its cache file (over 1 MiB)
MASTER = ("migrator", "master-secret")  # a master user of the source (name, password)
# Flags and keywords cycled over the nested mailbox (INBOX gets mailgen's own cycle).
KEYWORDS_CYCLE = ("", "\\Seen Work", "$Forwarded \\Answered", "$Label1 $MDNSent", "\\Draft",
                  "\\Flagged \\Seen Urgent-Project")


def big_message(size: int) -> bytes:
    """A message of about *size* bytes: a base64 attachment of pseudo-random bytes."""
    data = base64.encodebytes(random.Random(size).randbytes(size * 3 // 4))
    return (b"From: Big Sender <big@example.org>\r\nSubject: a big attachment\r\n"
            b"Message-ID: <big@example.org>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            b"\r\n" + data.replace(b"\n", b"\r\n"))


@dataclass
class Migration:
    source: Login
    destination: DovecotServer
    proxy: RunningProxy
    spy: UpstreamSpy
    settings: dict[str, str] = dataclasses.field(default_factory=dict)  # more -o overrides

    def run(self, features: str = IMAPC_FEATURES, mode: str = "backup -R",
            master: tuple[str, str] | None = None) -> float:
        """One ``doveadm backup`` (or *mode*) through the proxy, as the user or as a *master*
        (name, password); its wall time in seconds."""
        result = run_dsync(dsync_command(
            self.destination, self.source.user, imapc_host=self.proxy.host,
            imapc_port=self.proxy.port, imapc_user=self.source.user,
            imapc_password=master[1] if master else self.source.password, features=features,
            mode=tuple(mode.split()),
            settings=self.settings | ({"imapc_master_user": master[0]} if master else {})))
        assert result.returncode == 0, result.stderr
        assert "Error:" not in result.stderr and "Warning:" not in result.stderr, result.stderr
        return result.seconds

    def read_source(self) -> Account:
        s = self.source
        return read_account(s.host, s.port, s.user, s.password)

    def read_destination(self) -> Account:
        d = self.destination
        return read_account(d.host, d.port, self.source.user, self.source.password)

    def restart_proxy(self) -> None:
        """A new proxy process on the same (persistent) cache directory."""
        self.proxy.stop()
        self.proxy = RunningProxy(self.proxy.config)

    def imap_source(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4(self.source.host, self.source.port, timeout=10)
        imap.login(self.source.user, self.source.password)
        return imap


@contextlib.contextmanager
def start_migration(tmp_path: Path, account: Login, monkeypatch: pytest.MonkeyPatch, *,
                    msgs: list[bytes] | None = None,
                    listeners: tuple[ListenerConfig, ...] | None = None,
                    destination_dir: Path | None = None) -> Iterator[Migration]:
    """A source account with nested, non-ASCII and empty mailboxes, subscriptions, keywords
    and varied INTERNALDATEs (*msgs*, by default ~100 mixed messages, and a big one); the
    proxy in front of it (on *listeners*), with its cache in a directory that outlives a
    proxy restart; an empty destination Dovecot with the same user."""
    full = msgs is None
    msgs = messages(60) if msgs is None else msgs
    imap = imaplib.IMAP4(account.host, account.port, timeout=10)
    imap.login(account.user, account.password)
    seed_mailbox(imap, "INBOX", msgs)
    seed_mailbox(imap, NESTED, msgs[:21], KEYWORDS_CYCLE)
    seed_mailbox(imap, NON_ASCII, msgs[30:36])
    if full:
        seed_mailbox(imap, NON_ASCII, [big_message(BIG)], ("\\Seen Big",))
    imap.create(mailbox_arg(EMPTY))
    for name in (NESTED, NON_ASCII):
        imap.subscribe(mailbox_arg(name))
    imap.logout()
    spy = UpstreamSpy(monkeypatch)
    config = dataclasses.replace(make_config(account.host, account.port, listeners=listeners),
                                 cache_dir=tmp_path / "proxy-cache")
    with DovecotServer(destination_dir or tmp_path / "destination") as destination:
        destination.add_user(account.user, account.password)
        migration = Migration(account, destination, RunningProxy(config), spy)
        try:
            yield migration
        finally:
            migration.proxy.stop()


@pytest.fixture
def migration(tmp_path: Path, account: Login,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Migration]:
    with start_migration(tmp_path, account, monkeypatch) as started:
        yield started


@pytest.fixture
def master_migration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Migration]:
    """The same, on a source Dovecot of its own that has a master user."""
    with MasterUserDovecot(tmp_path / "source") as source:
        source.add_master(*MASTER)
        with start_migration(tmp_path, make_account(source), monkeypatch,
                             msgs=generated(12)) as started:
            yield started


def assert_same_account(source: Account, destination: Account) -> None:
    assert destination.listed == source.listed
    assert destination.subscribed == source.subscribed
    assert destination.mailboxes.keys() == source.mailboxes.keys()
    for name, box in source.mailboxes.items():
        copy = destination.mailboxes[name]
        assert (copy.uidvalidity, copy.uidnext) == (box.uidvalidity, box.uidnext), name
        assert copy.state() == box.state(), name
        # A client that knew the source's MODSEQs never sees one go backwards.
        assert copy.highestmodseq >= box.highestmodseq, name
        for uid, message in box.messages.items():
            assert copy.messages[uid].modseq >= message.modseq, (name, uid)


@pytest.mark.parametrize(("mode", "features"), [
    ("backup -R", IMAPC_FEATURES),
    # imapc logs in only when needed, sends ID, asks BODYSTRUCTURE and SEARCH of the server.
    # (Not guid-forced: messages with identical headers then share a GUID and dsync gives
    # them one INTERNALDATE, directly as through the proxy; see docs/migration-dsync.md.)
    ("backup -R", f"{IMAPC_FEATURES} delay-login send-id fetch-bodystructure search"),
    ("sync -1 -R", IMAPC_FEATURES),  # the other documented form: one-way sync
])
def test_dsync_through_the_proxy_copies_the_account_exactly(migration: Migration, mode: str,
                                                            features: str) -> None:
    seconds = migration.run(features, mode)
    source, copy = migration.read_source(), migration.read_destination()
    assert_same_account(source, copy)
    # The fixture's variety really is there.
    assert {NESTED, mailbox_name(NON_ASCII), EMPTY} <= source.mailboxes.keys()
    assert {NESTED, mailbox_name(NON_ASCII)} <= source.subscribed
    assert EMPTY not in source.subscribed
    keywords = {f for box in source.mailboxes.values() for m in box.messages.values()
                for f in m.flags if not f.startswith("\\")}
    assert {"Work", "$Forwarded", "$Label1", "$MDNSent", "Urgent-Project", "Big"} <= keywords
    sizes = [len(m.body) for m in source.mailboxes[mailbox_name(NON_ASCII)].messages.values()]
    assert max(sizes) >= BIG
    count = sum(len(box.messages) for box in source.mailboxes.values())
    log.info("%s through the proxy: %d messages, %d bytes in %.2f s", mode, count, source.size,
             seconds)
    # Every body crossed the upstream link once.
    fetched = migration.spy.bodies_fetched()
    assert {name: len(uids) for name, uids in fetched.items()} == {
        name: len(box.messages) for name, box in source.mailboxes.items() if box.messages}


def test_a_master_user_migrates_the_account(master_migration: Migration) -> None:
    """imapc_master_user: imapc logs in to the proxy as the master with the user as
    authorization identity; the proxy logs in upstream the same way."""
    master_migration.run(master=MASTER)
    source = master_migration.read_source()
    assert_same_account(source, master_migration.read_destination())
    assert len(source.mailboxes["INBOX"].messages) == 12
    fetched = master_migration.spy.bodies_fetched()
    assert sum(len(uids) for uids in fetched.values()) == sum(
        len(box.messages) for box in source.mailboxes.values())


def test_a_master_login_is_the_users_session(tmp_path: Path, proxy_factory: Any,
                                            raw_factory: Any,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """The session (logs, ``imapproxy who`` / ``kick``, the cache) belongs to the user whose
    mailbox it reads, not to the master; the master is in the login log line."""
    with MasterUserDovecot(tmp_path / "source") as source:
        source.add_master(*MASTER)
        account = make_account(source)
        proxy = proxy_factory(upstream_host=source.host, upstream_port=source.port)
        client = raw_factory(proxy.host, proxy.port)
        plain = f"{account.user}\0{MASTER[0]}\0{MASTER[1]}".encode()
        with caplog.at_level(logging.INFO, logger="imapproxy.server.session"):
            client.ok("AUTHENTICATE PLAIN " + base64.b64encode(plain).decode())
        (session,) = list(proxy.app.sessions)
        assert session.user == account.user
        assert f"login ok user={account.user} " in caplog.text
        assert f"master={MASTER[0]}" in caplog.text
        client.ok("LOGOUT")


@pytest.fixture
def world_traversable_dir() -> Iterator[Path]:
    """A directory the destination's mail user can reach without a chroot (pytest's tmp
    directories are private to their owner)."""
    path = Path(tempfile.mkdtemp(prefix="imapproxy-dsync-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(("listener", "imapc_ssl"), [("starttls", "starttls"),
                                                      ("implicit", "imaps")])
def test_dsync_over_tls_with_a_verified_certificate(
        tmp_path: Path, account: Login, monkeypatch: pytest.MonkeyPatch,
        world_traversable_dir: Path, listener: str, imapc_ssl: str) -> None:
    """The production recipe: imapc speaks TLS to the proxy and verifies its certificate;
    the proxy treats the peer as remote, so a plaintext login would be refused."""
    monkeypatch.setattr(session_module, "is_loopback", lambda peer: False)
    cert, key = self_signed_certificate(world_traversable_dir)  # read by the mail user
    tls = ListenerConfig(host="127.0.0.1", port=0, tls=listener,  # type: ignore[arg-type]
                         cert_file=cert, key_file=key)
    with start_migration(tmp_path, account, monkeypatch, msgs=generated(12), listeners=(tls,),
                         destination_dir=world_traversable_dir / "destination") as migration:
        migration.settings = {"imapc_ssl": imapc_ssl, "imapc_ssl_verify": "yes",
                              "ssl_client_ca_file": str(cert),
                              **unchrooted(migration.destination, account.user)}
        migration.run()
        source = migration.read_source()
        assert_same_account(source, migration.read_destination())
        assert len(source.mailboxes["INBOX"].messages) == 12


def test_second_run_transfers_only_the_changes(migration: Migration) -> None:
    migration.run()
    first = migration.read_destination()
    migration.restart_proxy()  # the cache is on disk: a restart between runs costs nothing
    imap = migration.imap_source()
    imap.select("INBOX")
    imap.uid("STORE", "2,9", "+FLAGS", "(\\Flagged Work)")
    imap.uid("STORE", "3", "-FLAGS", "(\\Seen)")
    imap.uid("STORE", "4,5", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    imap.select(mailbox_arg(NESTED))
    imap.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    new_inbox = seed_mailbox(imap, "INBOX", generated(3, seed=7))
    new_nested = seed_mailbox(imap, NESTED, generated(2, seed=8))
    imap.logout()

    migration.spy.clear()
    migration.run()
    source, copy = migration.read_source(), migration.read_destination()
    assert_same_account(source, copy)
    inbox = copy.mailboxes["INBOX"].messages  # the changes really happened, and arrived
    assert {"\\Flagged", "Work"} <= inbox[2].flags and "\\Seen" not in inbox[3].flags
    assert not {4, 5} & inbox.keys() and 1 not in copy.mailboxes[NESTED].messages
    assert set(new_inbox) <= inbox.keys() and len(new_inbox) == 3
    # Only the new messages' bodies crossed the upstream link.
    assert migration.spy.bodies_fetched() == {"INBOX": set(new_inbox), NESTED: set(new_nested)}
    for name, box in first.mailboxes.items():
        after = copy.mailboxes[name]
        assert after.highestmodseq >= box.highestmodseq, name
        for uid, message in box.messages.items():
            if uid in after.messages:
                assert after.messages[uid].modseq >= message.modseq, (name, uid)


def test_a_recreated_mailbox_is_copied_afresh(migration: Migration) -> None:
    """A mailbox deleted and created again on the source between two runs has a new
    UIDVALIDITY and reuses UIDs 1, 2, ... for other messages: the proxy must not serve the
    old bodies it cached under those UIDs."""
    migration.run()
    old = migration.read_source().mailboxes[NESTED]
    imap = migration.imap_source()
    imap.delete(mailbox_arg(NESTED))
    new_uids = seed_mailbox(imap, NESTED, generated(5, seed=11), KEYWORDS_CYCLE)
    imap.logout()
    migration.spy.clear()
    migration.run()
    source, copy = migration.read_source(), migration.read_destination()
    assert_same_account(source, copy)
    box = copy.mailboxes[NESTED]
    assert box.uidvalidity != old.uidvalidity and new_uids == [1, 2, 3, 4, 5]
    assert all(box.messages[uid].body != old.messages[uid].body for uid in new_uids)
    assert migration.spy.bodies_fetched()[NESTED] == set(new_uids)
