"""The upstream misbehaves: unreachable, silent, closing, dropping mid-session (during a plain
wait, IDLE, a FETCH, LOGIN), or stalling. The client must get a clear answer (``NO
[UNAVAILABLE]`` before login, ``* BYE`` and a closed connection after) and never hang; the
proxy must keep serving other clients.

Drops are made with :class:`~tests.integration.relay.Relay`, a small TCP relay between the
proxy and Dovecot that the test can cut (or make cut itself after N bytes from the server, or
stall)."""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .conftest import RawClient, RunningProxy, code_of, quote, status_of
from .relay import Relay

RawFactory = Callable[..., RawClient]
ProxyFactory = Callable[..., RunningProxy]


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def relay(dovecot: Any) -> Iterator[Relay]:
    r = Relay((dovecot.host, dovecot.port))
    yield r
    r.close()


@pytest.fixture
def relayed_proxy(proxy_factory: ProxyFactory, relay: Relay) -> RunningProxy:
    """The proxy, reaching Dovecot through the relay."""
    return proxy_factory(upstream_host="127.0.0.1", upstream_port=relay.port,
                         upstream={"command_timeout": 3.0})


def expect_bye_and_close(client: RawClient, tag: str | None = None) -> list[bytes]:
    """Read until ``* BYE``; the tagged answer of ``tag`` must not come first. Then the
    connection must close. Bounded by the socket timeout. Returns what came before BYE."""
    before: list[bytes] = []
    while True:
        try:
            response = client.read_response()
        except EOFError:
            pytest.fail(f"connection closed without BYE after {before!r}")
        if response.startswith(b"* BYE "):
            break
        assert tag is None or not response.startswith(tag.encode() + b" "), (response, before)
        before.append(response)
    assert client.is_closed(timeout=8), "the proxy did not close the connection after BYE"
    return before


def wait_sessions(proxy: RunningProxy, count: int) -> None:
    deadline = time.monotonic() + 8
    while proxy.session_count() != count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.session_count() == count


def assert_proxy_still_serves(proxy: RunningProxy, raw_factory: RawFactory,
                              account: Any) -> None:
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    client.ok("LOGOUT")


# --- upstream not there ----------------------------------------------------------------------


def test_unreachable_upstream_gives_unavailable(proxy_factory: ProxyFactory,
                                                raw_factory: RawFactory, proxy: RunningProxy,
                                                account: Any) -> None:
    port = closed_port()
    broken = proxy_factory(upstream_host="127.0.0.1", upstream_port=port)
    client = raw_factory(broken.host, broken.port)
    started = time.monotonic()
    _, tagged = client.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
    assert time.monotonic() - started < 8
    assert status_of(tagged) == b"NO" and code_of(tagged) == b"UNAVAILABLE", tagged
    m = re.search(rb"\] (.+)\r\n", tagged)
    assert m and f"127.0.0.1:{port}".encode() in m.group(1), tagged  # says what failed
    assert account.password.encode() not in tagged
    # the session goes on: not logged in, can try again
    client.ok("NOOP")
    plain = base64.b64encode(f"\0{account.user}\0{account.password}".encode()).decode()
    _, tagged = client.command(f"AUTHENTICATE PLAIN {plain}")
    assert code_of(tagged) == b"UNAVAILABLE", tagged
    _, tagged = client.command("SELECT INBOX")
    assert status_of(tagged) == b"BAD"
    # the broken proxy still accepts clients, and a proxy with a good upstream serves them
    other = raw_factory(broken.host, broken.port)
    _, tagged = other.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
    assert code_of(tagged) == b"UNAVAILABLE"
    assert_proxy_still_serves(proxy, raw_factory, account)
    client.ok("LOGOUT")


def test_upstream_that_never_greets(proxy_factory: ProxyFactory, raw_factory: RawFactory,
                                    account: Any) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), says nothing
        port = silent.getsockname()[1]
        broken = proxy_factory(upstream_host="127.0.0.1", upstream_port=port,
                               upstream={"connect_timeout": 1.0})
        client = raw_factory(broken.host, broken.port)
        started = time.monotonic()
        _, tagged = client.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
        elapsed = time.monotonic() - started
    assert status_of(tagged) == b"NO" and code_of(tagged) == b"UNAVAILABLE", tagged
    assert elapsed < 5
    client.ok("NOOP")


class ClosingServer:
    """Accepts connections, sends ``greeting`` and closes them at once."""

    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port: int = self.server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            with contextlib.suppress(OSError):
                conn.sendall(self.greeting)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.server.close()


@pytest.mark.parametrize("greeting", [b"", b"* BYE Too many connections\r\n",
                                      b"garbage that is not IMAP\r\n"])
def test_upstream_that_closes_at_once(proxy_factory: ProxyFactory, raw_factory: RawFactory,
                                      account: Any, greeting: bytes) -> None:
    server = ClosingServer(greeting)
    try:
        broken = proxy_factory(upstream_host="127.0.0.1", upstream_port=server.port,
                               upstream={"connect_timeout": 1.0})
        client = raw_factory(broken.host, broken.port)
        _, tagged = client.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
        assert status_of(tagged) == b"NO" and code_of(tagged) == b"UNAVAILABLE", tagged
        client.ok("NOOP")
    finally:
        server.close()


def test_upstream_that_closes_at_once_fails_fast(proxy_factory: ProxyFactory,
                                                 raw_factory: RawFactory,
                                                 account: Any) -> None:
    """Regression: a closed connection went unnoticed until connect_timeout (30 s default)."""
    server = ClosingServer(b"* BYE Too many connections\r\n")
    try:
        broken = proxy_factory(upstream_host="127.0.0.1", upstream_port=server.port,
                               upstream={"connect_timeout": 3.0})
        client = raw_factory(broken.host, broken.port)
        started = time.monotonic()
        _, tagged = client.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
        assert code_of(tagged) == b"UNAVAILABLE", tagged
        assert time.monotonic() - started < 1.5
    finally:
        server.close()


# --- upstream drops mid-session --------------------------------------------------------------


def test_drop_while_client_waits(relayed_proxy: RunningProxy, relay: Relay,
                                 raw_factory: RawFactory, account: Any) -> None:
    client = raw_factory(relayed_proxy.host, relayed_proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    relay.cut()
    expect_bye_and_close(client)  # unprompted: the client sent nothing
    wait_sessions(relayed_proxy, 0)
    assert_proxy_still_serves(relayed_proxy, raw_factory, account)


def test_drop_then_command(relayed_proxy: RunningProxy, relay: Relay,
                           raw_factory: RawFactory, account: Any) -> None:
    client = raw_factory(relayed_proxy.host, relayed_proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    relay.cut()
    with contextlib.suppress(OSError):  # the proxy may already have closed
        client.send(b"n1 NOOP\r\n")
    expect_bye_and_close(client, "n1")


def test_drop_during_idle(relayed_proxy: RunningProxy, relay: Relay,
                          raw_factory: RawFactory, account: Any) -> None:
    client = raw_factory(relayed_proxy.host, relayed_proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    client.send(b"i1 IDLE\r\n")
    assert client.read_response().startswith(b"+")
    relay.cut()
    expect_bye_and_close(client, "i1")
    wait_sessions(relayed_proxy, 0)


def test_drop_during_idle_done(relayed_proxy: RunningProxy, relay: Relay,
                               raw_factory: RawFactory, account: Any) -> None:
    client = raw_factory(relayed_proxy.host, relayed_proxy.port)
    client.login(account.user, account.password)
    client.send(b"i1 IDLE\r\n")
    assert client.read_response().startswith(b"+")
    relay.stalled.set()  # DONE will not get through...
    client.send(b"DONE\r\n")
    time.sleep(0.2)
    relay.cut()  # ...and then the connection drops
    expect_bye_and_close(client, "i1")


@pytest.fixture
def big_mailbox(dovecot: Any, account: Any) -> Any:
    """INBOX: one 3 MB message, then 20 of 60 KB (added directly, not through the relay)."""
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 3000
    dovecot.append(account.user, account.password, "INBOX", big)
    for i in range(20):
        msg = b"Subject: m%d\r\n\r\n" % i + (b"y" * 998 + b"\r\n") * 60
        dovecot.append(account.user, account.password, "INBOX", msg)
    return account


def test_drop_in_the_middle_of_a_large_literal(relayed_proxy: RunningProxy, relay: Relay,
                                               raw_factory: RawFactory,
                                               big_mailbox: Any) -> None:
    client = raw_factory(relayed_proxy.host, relayed_proxy.port)
    client.login(big_mailbox.user, big_mailbox.password)
    client.ok("SELECT INBOX")
    relay.cut_after = 500_000  # of the 3 MB literal
    client.send(b"f1 FETCH 1 BODY[]\r\n")
    before = expect_bye_and_close(client, "f1")
    assert not any(b"FETCH" in r for r in before)  # never half a response
    assert relay.to_client_bytes >= 500_000


def test_drop_between_fetch_responses(relayed_proxy: RunningProxy, relay: Relay,
                                      raw_factory: RawFactory, big_mailbox: Any) -> None:
    client = raw_factory(relayed_proxy.host, relayed_proxy.port)
    client.login(big_mailbox.user, big_mailbox.password)
    client.ok("SELECT INBOX")
    relay.cut_after = 400_000  # a few of the 60 KB messages
    client.send(b"f1 FETCH 2:* BODY.PEEK[]\r\n")
    before = expect_bye_and_close(client, "f1")
    # Bodies come from the upstream in batches and are answered per batch, so the client
    # may get none of them; whatever it got is whole and in order.
    assert len(before) < 20
    for number, response in enumerate(before, 2):  # whole responses, in order
        assert response.startswith(b"* %d FETCH (BODY[] {" % number), response[:60]
        assert response.endswith(b")\r\n")


# Regression (both tests below): LOGIN used to get no answer at all when the upstream greeted
# and then stalled or dropped before answering aioimaplib's own CAPABILITY command.


def _login_after_greeting(proxy_factory: ProxyFactory, relay: Relay, raw_factory: RawFactory,
                          account: Any, *, drop: bool) -> None:
    proxy = proxy_factory(upstream_host="127.0.0.1", upstream_port=relay.port,
                          upstream={"connect_timeout": 1.0, "command_timeout": 1.0})
    proxy.drain_timeout = 1.0  # a stuck session is cancelled at the end
    relay.stalled_up.set()  # Dovecot's greeting arrives; nothing the proxy sends gets through
    client = raw_factory(proxy.host, proxy.port, timeout=5)
    client.send(f"l1 LOGIN {quote(account.user)} {quote(account.password)}\r\n".encode())
    if drop:
        time.sleep(0.3)
        relay.cut()
    response = client.read_response()  # raises TimeoutError after 5 s without an answer
    # either answer is honest; silence or a tagged OK is not
    if response.startswith(b"* BYE "):
        assert client.is_closed(timeout=4)
    else:
        assert response.startswith(b"l1 NO "), response
        assert code_of(response) == b"UNAVAILABLE", response
        client.ok("NOOP")


def test_drop_during_login(proxy_factory: ProxyFactory, relay: Relay,
                           raw_factory: RawFactory, account: Any) -> None:
    """The upstream greets, then goes away while the proxy is logging in."""
    _login_after_greeting(proxy_factory, relay, raw_factory, account, drop=True)


def test_upstream_stalls_after_greeting(proxy_factory: ProxyFactory, relay: Relay,
                                        raw_factory: RawFactory, account: Any) -> None:
    """The upstream greets, then never answers (connect_timeout is 1 s)."""
    _login_after_greeting(proxy_factory, relay, raw_factory, account, drop=False)


def test_drop_during_authenticate(proxy_factory: ProxyFactory, relay: Relay,
                                  raw_factory: RawFactory, account: Any) -> None:
    """The connection set-up completes, then the upstream drops when the proxy sends its
    AUTHENTICATE: the client gets an answer, not silence."""
    proxy = proxy_factory(upstream_host="127.0.0.1", upstream_port=relay.port,
                          upstream={"connect_timeout": 2.0, "command_timeout": 2.0})
    relay.cut_on_upstream = b"AUTHENTICATE"
    client = raw_factory(proxy.host, proxy.port, timeout=6)
    client.send(f"l1 LOGIN {quote(account.user)} {quote(account.password)}\r\n".encode())
    response = client.read_response()
    if response.startswith(b"* BYE "):
        assert client.is_closed(timeout=4)
    else:
        assert response.startswith(b"l1 NO ") and code_of(response) == b"UNAVAILABLE", response
        client.ok("NOOP")
    relay.cut_on_upstream = None
    assert_proxy_still_serves(proxy, raw_factory, account)


def test_stalled_upstream_times_out(proxy_factory: ProxyFactory, relay: Relay,
                                    raw_factory: RawFactory, account: Any) -> None:
    proxy = proxy_factory(upstream_host="127.0.0.1", upstream_port=relay.port,
                          upstream={"command_timeout": 1.0})
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    relay.stalled.set()
    started = time.monotonic()
    client.send(b"s1 NOOP\r\n")
    response = client.read_response()
    assert time.monotonic() - started < 6
    # the command fails (NO [UNAVAILABLE]) or the session ends (BYE); either way promptly
    if response.startswith(b"s1 "):
        assert status_of(response) == b"NO" and code_of(response) == b"UNAVAILABLE", response
        response = client.read_response()
    assert response.startswith(b"* BYE "), response
    assert client.is_closed(timeout=8)
    relay.stalled.clear()
    assert_proxy_still_serves(proxy, raw_factory, account)


def test_many_clients_survive_one_upstream_drop(relayed_proxy: RunningProxy, relay: Relay,
                                                raw_factory: RawFactory, account: Any,
                                                proxy: RunningProxy) -> None:
    """A drop of every relayed connection ends those sessions only; a proxy on another
    upstream path (the plain ``proxy``) is unaffected."""
    victims = [raw_factory(relayed_proxy.host, relayed_proxy.port) for _ in range(5)]
    for client in victims:
        client.login(account.user, account.password)
    bystander = raw_factory(proxy.host, proxy.port)
    bystander.login(account.user, account.password)
    bystander.ok("SELECT INBOX")
    relay.cut()
    for client in victims:
        expect_bye_and_close(client)
    bystander.ok("NOOP")
    wait_sessions(relayed_proxy, 0)
