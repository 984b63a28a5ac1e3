"""Upstream connection management against the real Dovecot, through a counting relay:
reuse after logout, caps with a queue, back-off on [THROTTLED], the circuit breaker and
degraded cached reads when the upstream goes away."""

from __future__ import annotations

import imaplib
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .conftest import (
    TIMING,
    RawClient,
    RunningProxy,
    code_of,
    messages,
    quote,
    seed_mailbox,
    status_of,
)
from .relay import Relay
from .test_upstream_faults import closed_port

RawFactory = Callable[..., RawClient]
ProxyFactory = Callable[..., RunningProxy]


class CountingRelay(Relay):
    """A Relay that counts upstream connections open at once (and the peak), and can answer
    ``NO [THROTTLED]`` itself to the first ``throttle`` commands containing ``throttle_on``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.live = 0
        self.peak = 0
        self.throttle = 0
        self.throttle_on = b" STATUS "
        self.seen: list[bytes] = []  # lines the proxy sent that contained throttle_on
        super().__init__(target)

    def _pump(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        if not downstream:
            super()._pump(src, dst, downstream)
            return
        with self._lock:
            self.live += 1
            self.peak = max(self.peak, self.live)
        try:
            super()._pump(src, dst, downstream)
        finally:
            with self._lock:
                self.live -= 1

    def _from_proxy(self, data: bytes, src: socket.socket) -> bytes | None:
        if self.throttle_on in data:
            self.seen.append(data)
            if self.throttle > 0:
                self.throttle -= 1
                src.sendall(data.split(b" ", 1)[0] + b" NO [THROTTLED] Slow down\r\n")
                return None
        return data

    def wait_live(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.live != count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.live == count, (self.live, count)


@pytest.fixture
def counting_relay(dovecot: Any) -> Iterator[CountingRelay]:
    relay = CountingRelay((dovecot.host, dovecot.port))
    yield relay
    relay.close()


def relayed(proxy_factory: ProxyFactory, relay: Relay, **pool: Any) -> RunningProxy:
    return proxy_factory(upstream_host="127.0.0.1", upstream_port=relay.port,
                         upstream={"pool": _pool(**pool)})


def _pool(**settings: Any) -> Any:
    from imapproxy.config import UpstreamPoolConfig
    return UpstreamPoolConfig(**settings)


@pytest.fixture
def inbox(imap_direct: imaplib.IMAP4) -> list[bytes]:
    """INBOX with 3 messages, added directly."""
    msgs = messages(3)[:3]
    seed_mailbox(imap_direct, "INBOX", msgs)
    return msgs


def short_session(proxy: RunningProxy, raw_factory: RawFactory, account: Any) -> None:
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    client.ok("FETCH 1:* (FLAGS BODY.PEEK[HEADER])")
    client.ok("LOGOUT")
    assert client.is_closed()
    client.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert predicate()


# --- reuse -------------------------------------------------------------------------------


def test_twenty_short_sessions_cost_one_upstream_login(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    proxy = relayed(proxy_factory, counting_relay, reuse_idle_seconds=30.0)
    for _ in range(20):
        short_session(proxy, raw_factory, account)
        wait_for(lambda: proxy.app.pool.parked == 1)
    assert counting_relay.connections == 1
    assert proxy.app.pool.logins == 1 and proxy.app.pool.reuses == 19


def test_a_login_waits_for_a_connection_being_readied_rather_than_logging_in(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    """The next session of a user arrives while the last one's connection is still being
    reset (its UNSELECT held up here): it gets that connection, not a new login."""
    proxy = relayed(proxy_factory, counting_relay, reuse_idle_seconds=30.0)
    original = counting_relay._from_proxy

    def slow_unselect(data: bytes, src: socket.socket) -> bytes | None:
        if b" UNSELECT" in data:
            time.sleep(0.5)
        return original(data, src)

    counting_relay._from_proxy = slow_unselect  # type: ignore[method-assign]
    first = raw_factory(proxy.host, proxy.port)
    first.login(account.user, account.password)
    first.ok("SELECT INBOX")
    first.ok("LOGOUT")
    second = raw_factory(proxy.host, proxy.port)
    second.login(account.user, account.password)  # while the UNSELECT is held up
    second.ok("SELECT INBOX")
    assert proxy.app.pool.logins == 1 and proxy.app.pool.reuses == 1
    assert counting_relay.connections == 1


def test_reused_connection_starts_unselected_and_sees_no_old_news(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    proxy = relayed(proxy_factory, counting_relay)
    counting_relay.throttle_on = b" UNSELECT"
    short_session(proxy, raw_factory, account)
    wait_for(lambda: proxy.app.pool.parked == 1)
    assert len(counting_relay.seen) == 1  # the upstream was told to leave the mailbox
    imap = imaplib.IMAP4(account.host, account.port, timeout=10)  # news while parked
    imap.login(account.user, account.password)
    imap.append("INBOX", None, None, messages(4)[3])
    imap.logout()
    client = raw_factory(proxy.host, proxy.port)
    untagged, tagged = client.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
    assert status_of(tagged) == b"OK" and not untagged, (untagged, tagged)
    untagged = client.ok("SELECT INBOX")
    assert b"* 4 EXISTS\r\n" in untagged
    untagged = client.ok("NOOP")
    assert not any(b"EXISTS" in u or b"EXPUNGE" in u for u in untagged)
    assert counting_relay.connections == 1 and proxy.app.pool.reuses == 1


def test_wrong_password_never_gets_a_parked_connection(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    proxy = relayed(proxy_factory, counting_relay)
    short_session(proxy, raw_factory, account)
    wait_for(lambda: proxy.app.pool.parked == 1)
    client = raw_factory(proxy.host, proxy.port)
    _, tagged = client.command(f"LOGIN {quote(account.user)} {quote(account.password + 'x')}")
    assert status_of(tagged) == b"NO" and code_of(tagged) == b"AUTHENTICATIONFAILED", tagged
    assert proxy.app.pool.parked == 1 and proxy.app.pool.reuses == 0
    client.login(account.user, account.password)  # the right one still reuses it
    assert proxy.app.pool.reuses == 1


def test_enable_or_disabled_reuse_means_a_fresh_connection(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    proxy = relayed(proxy_factory, counting_relay)
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    client.ok("ENABLE CONDSTORE")
    client.ok("LOGOUT")
    counting_relay.wait_live(0)
    assert proxy.app.pool.parked == 0
    off = relayed(proxy_factory, counting_relay, reuse_idle_seconds=0.0)
    for _ in range(3):
        short_session(off, raw_factory, account)
    assert counting_relay.connections == 4 and off.app.pool.reuses == 0


def test_parked_connection_expires(proxy_factory: ProxyFactory, counting_relay: CountingRelay,
                                   raw_factory: RawFactory, account: Any, inbox: list[bytes]) -> None:
    proxy = relayed(proxy_factory, counting_relay, reuse_idle_seconds=0.3)
    short_session(proxy, raw_factory, account)
    counting_relay.wait_live(0, timeout=3)  # logged out upstream after 0.3 s
    short_session(proxy, raw_factory, account)
    assert counting_relay.connections == 2


# --- caps and the queue ----------------------------------------------------------------------


def start_login(proxy: RunningProxy, raw_factory: RawFactory, account: Any,
                tag: str) -> RawClient:
    client = raw_factory(proxy.host, proxy.port)
    client.send(f"{tag} LOGIN {quote(account.user)} {quote(account.password)}\r\n".encode())
    return client


def still_waiting(client: RawClient, seconds: float = 0.4) -> bool:
    client.sock.settimeout(seconds)
    try:
        client.read_response()
    except TimeoutError:
        return True
    finally:
        client.sock.settimeout(10)
    return False


def test_caps_queue_and_timeout(proxy_factory: ProxyFactory, counting_relay: CountingRelay,
                                raw_factory: RawFactory, account: Any,
                                second_account: Any) -> None:
    proxy = relayed(proxy_factory, counting_relay, max_connections=3,
                    max_connections_per_user=2, queue_timeout=1.5)
    first = raw_factory(proxy.host, proxy.port)
    first.login(account.user, account.password)
    second = raw_factory(proxy.host, proxy.port)
    second.login(account.user, account.password)
    other = raw_factory(proxy.host, proxy.port)
    other.login(second_account.user, second_account.password)  # the per-user cap is a's only
    queued = start_login(proxy, raw_factory, account, "q1")
    assert still_waiting(queued)
    first.ok("LOGOUT")  # frees a slot: the queued login gets it (not parked: someone waits)
    _, tagged = queued.read_until_tagged("q1")
    assert status_of(tagged) == b"OK", tagged
    queued.ok("SELECT INBOX")
    started = time.monotonic()
    late = start_login(proxy, raw_factory, account, "q2")
    _, tagged = late.read_until_tagged("q2")
    assert status_of(tagged) == b"NO" and code_of(tagged) == b"UNAVAILABLE", tagged
    assert 1.3 < time.monotonic() - started < 4
    late.ok("NOOP")  # the session goes on, not logged in
    assert counting_relay.peak <= 3 and proxy.app.pool.slots.peak_total <= 3


def test_parked_connections_make_room_for_others(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, second_account: Any, inbox: list[bytes]) -> None:
    proxy = relayed(proxy_factory, counting_relay, max_connections=1, queue_timeout=3.0)
    short_session(proxy, raw_factory, account)
    wait_for(lambda: proxy.app.pool.parked == 1)
    client = raw_factory(proxy.host, proxy.port)
    client.login(second_account.user, second_account.password)  # evicts a's parked one
    client.ok("SELECT INBOX")
    assert counting_relay.peak == 1


# --- throttling --------------------------------------------------------------------------


def test_throttled_answers_are_retried_after_back_off(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    proxy = relayed(proxy_factory, counting_relay, throttle_shrink_after=5.0)
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    counting_relay.throttle = 3
    started = time.monotonic()
    untagged = client.ok("STATUS INBOX (MESSAGES)")
    took = time.monotonic() - started
    assert any(b"(MESSAGES 3)" in u for u in untagged), untagged
    assert len(counting_relay.seen) == 4  # three throttled, then through
    assert took >= 0.05 + 0.1 + 0.2 - 0.01, took  # the back-off before each retry


def test_throttling_that_never_ends_reaches_the_client(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any) -> None:
    proxy = relayed(proxy_factory, counting_relay, throttle_initial=0.01, throttle_max=0.02)
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    counting_relay.throttle = 100
    _, tagged = client.command("STATUS INBOX (MESSAGES)")
    assert status_of(tagged) == b"NO" and code_of(tagged) == b"THROTTLED", tagged
    assert len(counting_relay.seen) == 6  # the first try and five retries
    counting_relay.throttle = 0
    client.ok("STATUS INBOX (MESSAGES)")


# --- degraded service and the breaker ----------------------------------------------------


def bodies(client: RawClient) -> list[bytes]:
    return [TIMING.sub(b"", r) for r in client.ok("FETCH 1:3 (UID BODY.PEEK[])")]


def test_upstream_gone_cached_reads_go_on_and_the_breaker_recovers(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    proxy = relayed(proxy_factory, counting_relay, degraded_reads=True, breaker_failures=2,
                    breaker_cooldown=1.5)
    reader = raw_factory(proxy.host, proxy.port)
    reader.login(account.user, account.password)
    reader.ok("SELECT INBOX")
    before = bodies(reader)
    assert all(msg in b"".join(before) for msg in inbox)
    target = counting_relay.target
    counting_relay.target = ("127.0.0.1", closed_port())  # new upstream connections fail
    counting_relay.cut()
    time.sleep(0.2)
    assert bodies(reader) == before  # served from the cache, byte for byte
    started = time.monotonic()
    _, tagged = reader.command("STORE 1 +FLAGS (\\Flagged)")
    assert status_of(tagged) == b"NO" and code_of(tagged) == b"UNAVAILABLE", tagged
    assert time.monotonic() - started < 2
    reader.ok("NOOP")
    for _ in range(2):  # each tries the upstream and fails: the breaker opens
        client = raw_factory(proxy.host, proxy.port)
        _, tagged = client.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
        assert code_of(tagged) == b"UNAVAILABLE", tagged
    tried = counting_relay.connections
    started = time.monotonic()
    client = raw_factory(proxy.host, proxy.port)
    _, tagged = client.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
    assert code_of(tagged) == b"UNAVAILABLE" and re.search(rb"retrying in \d+ s", tagged)
    assert time.monotonic() - started < 0.5 and counting_relay.connections == tried
    counting_relay.target = target  # the upstream is back
    time.sleep(1.6)
    client.login(account.user, account.password)  # the probe, which closes the breaker
    client.ok("SELECT INBOX")
    assert proxy.app.pool.breaker.state.value == "closed"
    assert bodies(reader) == before  # the degraded session still reads


def test_stalled_upstream_degrades_after_the_command_timeout(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    proxy = proxy_factory(upstream_host="127.0.0.1", upstream_port=counting_relay.port,
                          upstream={"command_timeout": 1.0,
                                    "pool": _pool(degraded_reads=True, breaker_failures=1)})
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    before = bodies(client)
    counting_relay.stalled.set()
    started = time.monotonic()
    _, tagged = client.command("STORE 1 +FLAGS (\\Flagged)")
    assert status_of(tagged) == b"NO" and code_of(tagged) == b"UNAVAILABLE", tagged
    assert time.monotonic() - started < 3
    assert bodies(client) == before  # the session goes on, from the cache
    _, tagged = client.command("STORE 1 +FLAGS (\\Flagged)")
    assert code_of(tagged) == b"UNAVAILABLE"
    assert proxy.app.pool.breaker.state.value == "open"  # the timeout counted
    counting_relay.stalled.clear()


def test_without_degraded_reads_a_lost_upstream_still_ends_the_session(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    proxy = relayed(proxy_factory, counting_relay)
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    counting_relay.cut()
    response = client.read_response()
    assert response.startswith(b"* BYE "), response
    assert client.is_closed()



# --- shared IDLE -------------------------------------------------------------------------


def idle(client: RawClient, tag: str) -> None:
    client.send(f"{tag} IDLE\r\n".encode())
    assert client.read_response().startswith(b"+ "), tag


def idling_pair(proxy: RunningProxy, raw_factory: RawFactory,
                account: Any) -> tuple[RawClient, RawClient]:
    """Two clients of ``account``, INBOX selected, IDLE as "a" (the leader, first) and "b"."""
    leader, follower = (raw_factory(proxy.host, proxy.port) for _ in range(2))
    for client in (leader, follower):
        client.login(account.user, account.password)
        client.ok("SELECT INBOX")
    idle(leader, "a")
    idle(follower, "b")
    return leader, follower


def read_until(client: RawClient, wanted: bytes) -> list[bytes]:
    seen: list[bytes] = []
    while wanted not in (seen[-1] if seen else b""):
        seen.append(client.read_response())
    return seen


def test_shared_idle_one_upstream_idle_for_ten_clients(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    proxy = relayed(proxy_factory, counting_relay, shared_idle=True)
    clients = [raw_factory(proxy.host, proxy.port) for _ in range(10)]
    for client in clients:
        client.login(account.user, account.password)
        client.ok("SELECT INBOX")
    counting_relay.throttle_on = b" IDLE\r\n"
    for n, client in enumerate(clients):
        idle(client, f"i{n}")
    time.sleep(0.3)
    assert len(counting_relay.seen) == 1  # one upstream IDLE for the ten
    imap = imaplib.IMAP4(account.host, account.port, timeout=10)
    imap.login(account.user, account.password)
    imap.append("INBOX", None, None, messages(4)[3])
    started = time.monotonic()
    for client in clients:
        assert b"* 4 EXISTS\r\n" in read_until(client, b"* 4 EXISTS")
    woke = time.monotonic() - started
    imap.select("INBOX")
    imap.store("2", "+FLAGS", "\\Deleted")
    imap.expunge()
    imap.logout()
    for client in clients:  # each in its own sequence numbers (all saw 4: the same here)
        assert read_until(client, b" EXPUNGE")[-1] == b"* 2 EXPUNGE\r\n"
    clients[0].send(b"DONE\r\n")  # the leader leaves: another takes over the upstream IDLE
    _, tagged = clients[0].read_until_tagged("i0")
    assert status_of(tagged) == b"OK"
    wait_for(lambda: len(counting_relay.seen) == 2)
    imap = imaplib.IMAP4(account.host, account.port, timeout=10)
    imap.login(account.user, account.password)
    imap.append("INBOX", None, None, messages(5)[4])
    imap.logout()
    for client in clients[1:]:
        assert b"* 4 EXISTS\r\n" in read_until(client, b"* 4 EXISTS")
    for n, client in enumerate(clients[1:], 1):
        client.send(b"DONE\r\n")
        _, tagged = client.read_until_tagged(f"i{n}")
        assert status_of(tagged) == b"OK", tagged
        client.ok("NOOP")
    assert proxy.app.pool.idle.idling == 0
    assert woke < 5


def test_shared_idle_ends_with_bad_on_anything_but_done(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any) -> None:
    proxy = relayed(proxy_factory, counting_relay, shared_idle=True)
    leader, follower = idling_pair(proxy, raw_factory, account)
    follower.send(b"NOOP\r\n")
    _, tagged = follower.read_until_tagged("b")
    assert status_of(tagged) == b"BAD", tagged
    leader.send(b"DONE\r\n")
    _, tagged = leader.read_until_tagged("a")
    assert status_of(tagged) == b"OK", tagged
    leader.ok("NOOP")
    follower.ok("NOOP")
