"""The upstream drops under a command: idempotent reads reconnect and run once more (same
mailbox, same UIDVALIDITY, else BYE); APPEND, COPY, EXPUNGE are never retried and never
answered OK unless the upstream confirmed them."""

from __future__ import annotations

import contextlib
import imaplib
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from imapproxy.config import UpstreamPoolConfig

from .conftest import RawClient, RunningProxy, status_of
from .relay import Relay
from .test_upstream_faults import expect_bye_and_close

RawFactory = Callable[..., RawClient]
ProxyFactory = Callable[..., RunningProxy]


class OneShotRelay(Relay):
    """A relay whose trigger (``cut_after`` / ``cut_on_upstream``) fires once: the
    connection made afterwards goes through (after ``hold_after_cut`` is cleared, if set)."""

    hold_after_cut = False

    def cut(self) -> None:
        self.cut_after = None
        self.cut_on_upstream = None
        if self.hold_after_cut:
            self.stalled.set()
        super().cut()


@pytest.fixture
def relay(dovecot: Any) -> Iterator[OneShotRelay]:
    relay = OneShotRelay((dovecot.host, dovecot.port))
    yield relay
    relay.close()


@pytest.fixture
def client(proxy_factory: ProxyFactory, relay: OneShotRelay, raw_factory: RawFactory,
           account: Any, dovecot: Any) -> RawClient:
    """Logged in through the relay, INBOX selected, holding three messages (one of 2 MB)."""
    for n in range(2):
        dovecot.append(account.user, account.password, "INBOX",
                       b"Subject: small %d\r\n\r\nhello %d\r\n" % (n, n))
    dovecot.append(account.user, account.password, "INBOX",
                   b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 2000)
    proxy = proxy_factory(upstream_host="127.0.0.1", upstream_port=relay.port,
                          upstream={"command_timeout": 5.0})
    raw = raw_factory(proxy.host, proxy.port)
    raw.login(account.user, account.password)
    raw.ok("SELECT INBOX")
    return raw


def direct_body(account: Any, uid: int) -> bytes:
    imap = imaplib.IMAP4(account.host, account.port, timeout=10)
    try:
        imap.login(account.user, account.password)
        imap.select("INBOX", readonly=True)
        _, data = imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
        first = data[0]
        assert isinstance(first, tuple)
        return first[1]
    finally:
        with contextlib.suppress(Exception):
            imap.logout()


def test_fetch_cut_mid_literal_is_retried(client: RawClient, relay: OneShotRelay,
                                          account: Any) -> None:
    relay.cut_after = 300_000  # inside the 2 MB literal
    untagged, tagged = client.command("FETCH 3 BODY.PEEK[]")
    assert status_of(tagged) == b"OK", tagged
    bodies = [r for r in untagged if r.startswith(b"* 3 FETCH")]
    assert bodies, untagged
    assert direct_body(account, 3) in bodies[-1]
    assert relay.connections == 2  # one reconnect
    client.ok("NOOP")  # the session goes on, on the new connection


def test_search_cut_before_any_answer_is_retried(client: RawClient,
                                                 relay: OneShotRelay) -> None:
    relay.cut_on_upstream = b"SEARCH"
    untagged, tagged = client.command("UID SEARCH ALL")
    assert status_of(tagged) == b"OK", tagged
    assert [r for r in untagged if r.startswith(b"* SEARCH")] == [b"* SEARCH 1 2 3\r\n"]
    assert relay.connections == 2


@pytest.mark.parametrize("command", ["STATUS INBOX (MESSAGES)", 'LIST "" "*"'])
def test_other_reads_are_retried(client: RawClient, relay: OneShotRelay, command: str) -> None:
    relay.cut_on_upstream = command.split()[0].encode()
    _, tagged = client.command(command)
    assert status_of(tagged) == b"OK", tagged
    assert relay.connections == 2


def test_enabled_extensions_come_back(client: RawClient, relay: OneShotRelay,
                                      dovecot: Any, account: Any) -> None:
    """QRESYNC is switched on again: an expunge is then told as VANISHED, not EXPUNGE."""
    client.ok("ENABLE QRESYNC")
    relay.cut_on_upstream = b"FETCH"
    _, tagged = client.command("FETCH 1 (FLAGS)")
    assert status_of(tagged) == b"OK", tagged
    assert relay.connections == 2
    direct = dovecot.connect(account.user, account.password)
    direct.select("INBOX")
    direct.store("1", "+FLAGS", "(\\Deleted)")
    direct.expunge()
    direct.logout()
    untagged = client.ok("NOOP")
    assert any(r.startswith(b"* VANISHED 1") for r in untagged), untagged


def test_uidvalidity_change_while_reconnecting_ends_the_session(
        proxy_factory: ProxyFactory, relay: OneShotRelay, raw_factory: RawFactory,
        account: Any, dovecot: Any) -> None:
    direct = dovecot.connect(account.user, account.password)
    direct.create("Box")
    proxy = proxy_factory(upstream_host="127.0.0.1", upstream_port=relay.port,
                          upstream={"connect_timeout": 10.0, "command_timeout": 10.0})
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT Box")
    client.ok("UNSELECT")
    client.ok("SELECT Box")
    relay.hold_after_cut = True  # the reconnection waits until Box is made anew
    relay.cut_on_upstream = b"SEARCH"
    client.send(b"s1 UID SEARCH ALL\r\n")
    deadline = time.monotonic() + 5
    while not relay.stalled.is_set():
        assert time.monotonic() < deadline, "the relay never cut"
        time.sleep(0.02)
    assert direct.delete("Box")[0] == "OK"
    assert direct.create("Box")[0] == "OK"  # a new UIDVALIDITY
    direct.logout()
    relay.stalled.clear()
    expect_bye_and_close(client, "s1")


def _change_while_reconnecting(relay: OneShotRelay, client: RawClient, command: bytes,
                               change: Callable[[], None]) -> None:
    relay.hold_after_cut = True
    relay.cut_on_upstream = b"FETCH"
    client.send(command)
    deadline = time.monotonic() + 5
    while not relay.stalled.is_set():
        assert time.monotonic() < deadline, "the relay never cut"
        time.sleep(0.02)
    change()
    relay.stalled.clear()


def _expunge_first_and_append(dovecot: Any, account: Any) -> Callable[[], None]:
    """Same message count afterwards, but sequence number 1 means another message."""
    def change() -> None:
        direct = dovecot.connect(account.user, account.password)
        direct.select("INBOX")
        direct.store("1", "+FLAGS", "(\\Deleted)")
        direct.expunge()
        direct.append("INBOX", None, None, b"Subject: newcomer\r\n\r\nhi\r\n")
        direct.logout()
    return change


def test_sequence_numbers_shifted_while_reconnecting_ends_the_session(
        client: RawClient, relay: OneShotRelay, dovecot: Any, account: Any) -> None:
    _change_while_reconnecting(relay, client, b"f1 FETCH 1 (FLAGS)\r\n",
                               _expunge_first_and_append(dovecot, account))
    expect_bye_and_close(client, "f1")


def test_shifted_sequence_numbers_end_the_session_even_for_uid_commands(
        client: RawClient, relay: OneShotRelay, dovecot: Any, account: Any) -> None:
    """Going on would leave the client with sequence numbers that mean other messages."""
    _change_while_reconnecting(relay, client, b"f1 UID FETCH 2 (FLAGS)\r\n",
                               _expunge_first_and_append(dovecot, account))
    expect_bye_and_close(client, "f1")


def test_new_mail_while_reconnecting_is_announced(client: RawClient, relay: OneShotRelay,
                                                  dovecot: Any, account: Any) -> None:
    def append() -> None:
        dovecot.append(account.user, account.password, "INBOX",
                       b"Subject: newcomer\r\n\r\nhi\r\n")
    _change_while_reconnecting(relay, client, b"f1 FETCH 1:* (UID)\r\n", append)
    untagged, tagged = client.read_until_tagged("f1")
    assert status_of(tagged) == b"OK", tagged
    assert b"* 4 EXISTS\r\n" in untagged, untagged
    assert any(r.startswith(b"* 4 FETCH (UID 4)") for r in untagged), untagged


def test_append_cut_is_never_ok_and_never_retried(client: RawClient, relay: OneShotRelay,
                                                  account: Any) -> None:
    message = b"Subject: appended\r\n\r\nbody\r\n"
    relay.cut_on_upstream = b"APPEND"
    client.send(b"a1 APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n")
    before = expect_bye_and_close(client, "a1")
    assert not any(re.match(rb"a1 OK", r) for r in before)
    assert relay.connections == 1  # no second attempt
    imap = imaplib.IMAP4(account.host, account.port, timeout=10)
    imap.login(account.user, account.password)
    _, data = imap.select("INBOX", readonly=True)
    assert data[0] == b"3"  # not stored either
    imap.logout()


@pytest.mark.parametrize("command", ["COPY 1 INBOX", "EXPUNGE", "STORE 1 +FLAGS (\\Seen)"])
def test_writes_are_not_retried(client: RawClient, relay: OneShotRelay, command: str) -> None:
    relay.cut_on_upstream = command.split()[0].encode()
    client.send(b"w1 " + command.encode() + b"\r\n")
    expect_bye_and_close(client, "w1")
    assert relay.connections == 1


def test_degraded_session_reconnects_at_the_next_read(
        proxy_factory: ProxyFactory, relay: OneShotRelay, raw_factory: RawFactory,
        account: Any, dovecot: Any) -> None:
    """With [upstream] degraded_reads a drop between commands does not end the session; the
    next read that needs the upstream reconnects."""
    dovecot.append(account.user, account.password, "INBOX", b"Subject: one\r\n\r\nx\r\n")
    proxy = proxy_factory(upstream_host="127.0.0.1", upstream_port=relay.port, upstream={
        "command_timeout": 5.0, "pool": UpstreamPoolConfig(degraded_reads=True)})
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    relay.cut()
    time.sleep(0.3)
    assert not client.is_closed(timeout=0.5)
    untagged = client.ok("UID SEARCH ALL")
    assert b"* SEARCH 1\r\n" in untagged, untagged
    assert relay.connections == 2
