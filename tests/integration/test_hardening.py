"""The hardened listener against a running proxy: connection limits (total, per address, per
user, unauthenticated per address), the auth penalty and its failure cache, the PROXY
protocol, nesting and pipelining limits, and the session logs."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import logging
import os
import shutil
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from imapproxy.config import Config, ListenerConfig
from imapproxy.hardening_config import AuthPenaltyConfig

from .conftest import TIMEOUT, RawClient, RunningProxy, code_of, make_config, quote, status_of
from .relay import Relay

RawFactory = Callable[..., RawClient]
Factory = Callable[..., RunningProxy]
FAST_PENALTY = AuthPenaltyConfig(initial_delay=0.3, max_delay=0.6, failure_cache_ttl=30)


@pytest.fixture
def hardened(dovecot: Any) -> Iterator[Factory]:
    """``hardened(listener=..., auth_penalty=..., upstream_port=..., **limits)``: a proxy
    with hardening settings, loopback clients counted like any other unless
    ``exempt_loopback=True``; stopped at the end."""
    started: list[RunningProxy] = []

    def start(*, listener: dict[str, Any] | None = None,
              auth_penalty: AuthPenaltyConfig = FAST_PENALTY,
              upstream_port: int | None = None, **limits: Any) -> RunningProxy:
        limits.setdefault("exempt_loopback", False)
        config: Config = make_config(dovecot.host, upstream_port or dovecot.port, **limits)
        config = dataclasses.replace(
            config, auth_penalty=auth_penalty,
            listeners=(ListenerConfig(host="127.0.0.1", port=0, **(listener or {})),))
        started.append(RunningProxy(config))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def refused_with_bye(client_factory: Callable[[], RawClient], text: bytes) -> None:
    client = client_factory()
    assert client.greeting.startswith(b"* BYE"), client.greeting
    assert text in client.greeting, client.greeting
    assert client.is_closed()


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


# --- connection limits -----------------------------------------------------------------------


def test_total_connection_limit(hardened: Factory, raw_factory: RawFactory) -> None:
    proxy = hardened(max_connections=2)
    first = raw_factory(proxy.host, proxy.port)
    raw_factory(proxy.host, proxy.port)
    refused_with_bye(lambda: raw_factory(proxy.host, proxy.port), b"Too many connections")
    first.ok("LOGOUT")
    wait_for(lambda: proxy.session_count() == 1, "the first session ended")
    assert raw_factory(proxy.host, proxy.port).greeting.startswith(b"* OK")


def test_connection_limit_per_address(hardened: Factory, raw_factory: RawFactory) -> None:
    proxy = hardened(max_connections_per_ip=1)
    raw_factory(proxy.host, proxy.port).ok("NOOP")
    refused_with_bye(lambda: raw_factory(proxy.host, proxy.port),
                     b"Too many connections from your address")


def test_unauthenticated_connections_per_address(hardened: Factory, raw_factory: RawFactory,
                                                 account: Any) -> None:
    proxy = hardened(max_unauthenticated_per_ip=2)
    first = raw_factory(proxy.host, proxy.port)
    raw_factory(proxy.host, proxy.port)
    refused_with_bye(lambda: raw_factory(proxy.host, proxy.port),
                     b"Too many unauthenticated connections")
    first.login(account.user, account.password)  # no longer unauthenticated: a slot frees
    raw_factory(proxy.host, proxy.port).ok("NOOP")


def test_loopback_clients_are_not_limited_per_address_by_default(
        hardened: Factory, raw_factory: RawFactory, account: Any) -> None:
    proxy = hardened(max_connections_per_ip=1, max_unauthenticated_per_ip=1,
                     exempt_loopback=True, auth_penalty=AuthPenaltyConfig(initial_delay=2))
    clients = [raw_factory(proxy.host, proxy.port) for _ in range(3)]
    for client in clients:
        client.ok("NOOP")
    timed_login(clients[0], account.user, "wrong-1")
    # Another user from the same (loopback) address: only the upstream's own delay (~0.5 s),
    # not the 2 s penalty an address with one failure would cost.
    _, seconds = timed_login(clients[1], "someone-else", "wrong-2")
    assert seconds < 1.5


def test_connection_limit_per_user(hardened: Factory, raw_factory: RawFactory,
                                   account: Any) -> None:
    proxy = hardened(max_connections_per_user=1)
    first = raw_factory(proxy.host, proxy.port)
    first.login(account.user, account.password)
    second = raw_factory(proxy.host, proxy.port)
    _, tagged = second.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
    assert status_of(tagged) == b"NO" and code_of(tagged) == b"LIMIT", tagged
    second.ok("NOOP")  # the refused session goes on, not logged in
    first.ok("LOGOUT")
    wait_for(lambda: proxy.session_count() == 1, "the first session ended")
    second.login(account.user, account.password)
    second.ok("SELECT INBOX")


# --- auth penalty ----------------------------------------------------------------------------


@pytest.fixture
def counting_relay(dovecot: Any) -> Iterator[Relay]:
    """Counts upstream connections: each LOGIN through the proxy opens one."""
    relay = Relay((dovecot.host, dovecot.port))
    yield relay
    relay.close()


def timed_login(client: RawClient, user: str, password: str) -> tuple[bytes, float]:
    started = time.monotonic()
    _, tagged = client.command(f"LOGIN {quote(user)} {quote(password)}")
    return tagged, time.monotonic() - started


def test_failed_logins_cost_growing_delays(hardened: Factory, raw_factory: RawFactory,
                                           account: Any) -> None:
    """The same wrong password again is refused locally (no upstream round trip), so the
    time taken is the penalty alone: 0.3, 0.6, then capped at 0.6."""
    proxy = hardened()
    client = raw_factory(proxy.host, proxy.port)
    took = []
    for _ in range(4):
        tagged, seconds = timed_login(client, account.user, "wrong")
        assert code_of(tagged) == b"AUTHENTICATIONFAILED", tagged
        took.append(seconds)
    assert 0.3 <= took[1] < 0.55 and 0.6 <= took[2] < 0.85 and 0.6 <= took[3] < 0.85, took
    client.login(account.user, account.password)  # the right password still works
    other = raw_factory(proxy.host, proxy.port)
    tagged, seconds = timed_login(other, account.user, "wrong")
    assert code_of(tagged) == b"AUTHENTICATIONFAILED"
    assert seconds < 0.25, seconds  # a successful login reset the penalty


def test_brute_force_does_not_reach_the_upstream(hardened: Factory, raw_factory: RawFactory,
                                                 counting_relay: Relay, account: Any) -> None:
    proxy = hardened(upstream_port=counting_relay.port,
                     auth_penalty=AuthPenaltyConfig(initial_delay=0.01, max_delay=0.02))
    client = raw_factory(proxy.host, proxy.port)
    for password in ["guess-a"] * 5 + ["guess-b"] * 5 + ["guess-a"] * 3:
        tagged, _ = timed_login(client, account.user, password)
        assert status_of(tagged) == b"NO" and code_of(tagged) == b"AUTHENTICATIONFAILED"
    assert counting_relay.connections == 2  # one upstream LOGIN per distinct password
    plain = f"\0{account.user}\0guess-a".encode()
    _, tagged = client.command(b"AUTHENTICATE PLAIN " + base64.b64encode(plain))
    assert code_of(tagged) == b"AUTHENTICATIONFAILED"
    assert counting_relay.connections == 2  # AUTHENTICATE shares the failure cache
    client.login(account.user, account.password)
    assert counting_relay.connections == 3


def test_auth_failures_logged_with_reason_never_the_password(
        hardened: Factory, raw_factory: RawFactory, account: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = hardened(auth_penalty=AuthPenaltyConfig(initial_delay=0.01, max_delay=0.02))
    secret = "Sup3r-Secret-Guess"
    client = raw_factory(proxy.host, proxy.port)
    for _ in range(2):
        timed_login(client, account.user, secret)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    client.ok("LOGOUT")
    wait_for(lambda: "session end" in caplog.text, "the session-end line")
    text = caplog.text
    assert f"login failed user={account.user} peer=127.0.0.1" in text
    assert "reason=password refused moments ago" in text
    end = next(r.getMessage() for r in caplog.records if "session end" in r.getMessage()
               and account.user in r.getMessage())
    assert " in=" in end and " out=" in end and " seconds=" in end, end
    in_bytes = int(end.split(" in=")[1].split()[0])
    assert in_bytes > len(secret) * 2
    for leaked in (secret, account.password):
        assert leaked not in text


# --- hostile shapes --------------------------------------------------------------------------


def test_too_deeply_nested_list_gets_bad(raw_proxy_login: RawClient) -> None:
    _, tagged = raw_proxy_login.command(b"ID " + b"(" * 200 + b")" * 200)
    assert status_of(tagged) == b"BAD", tagged
    raw_proxy_login.ok("SELECT INBOX")


def test_configured_nesting_depth(hardened: Factory, raw_factory: RawFactory,
                                  account: Any) -> None:
    proxy = hardened(max_nesting_depth=3)
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    _, tagged = client.command("SEARCH ((((ALL))))")
    assert status_of(tagged) == b"BAD" and b"nested too deeply" in tagged, tagged
    client.ok("SEARCH (((ALL)))")  # three levels are fine


def test_pipelined_commands_are_all_answered_in_order(raw_proxy_login: RawClient) -> None:
    count = 2000
    raw_proxy_login.send(b"".join(b"p%d NOOP\r\n" % n for n in range(count)))
    for n in range(count):
        _, tagged = raw_proxy_login.read_until_tagged(f"p{n}")
        assert status_of(tagged) == b"OK"


# --- PROXY protocol --------------------------------------------------------------------------


def proxy_v2(src: str, sport: int) -> bytes:
    addresses = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address("127.0.0.1").packed
    payload = addresses + struct.pack("!HH", sport, 143)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(payload)) \
        + payload


def behind(proxy: RunningProxy, header: bytes) -> RawClient:
    client = RawClient(proxy.host, proxy.port, read_greeting=False)
    client.send(header)
    client.greeting = client.read_response()
    return client


PROXY_LISTENER = {"proxy_protocol": True,
                  "trusted_proxies": (ipaddress.ip_network("127.0.0.0/8"),)}


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 203.0.113.9 127.0.0.1 40001 143\r\n",
    proxy_v2("203.0.113.9", 40001),
], ids=["v1", "v2"])
def test_proxy_header_gives_the_real_client(hardened: Factory, header: bytes,
                                            account: Any,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    proxy = hardened(listener=PROXY_LISTENER, max_connections_per_ip=1)
    client = behind(proxy, header)
    try:
        # The real client is remote: no plaintext login without TLS.
        assert b"LOGINDISABLED" in client.greeting, client.greeting
        _, tagged = client.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
        assert code_of(tagged) == b"PRIVACYREQUIRED"
        assert "session start peer=203.0.113.9:40001" in caplog.text
        # Limits count the real address: another client behind the balancer is let in ...
        other = behind(proxy, b"PROXY TCP4 198.51.100.4 127.0.0.1 5000 143\r\n")
        assert other.greeting.startswith(b"* OK")
        other.close()
        # ... the same one again is not.
        again = behind(proxy, header)
        assert again.greeting.startswith(b"* BYE Too many connections from your address")
        again.close()
    finally:
        client.close()


def test_proxy_local_header_keeps_the_socket_address(hardened: Factory,
                                                     account: Any) -> None:
    proxy = hardened(listener=PROXY_LISTENER)
    local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
    with behind(proxy, local) as client:
        assert b"AUTH=PLAIN" in client.greeting  # loopback, as the socket says
        client.login(account.user, account.password)


def closed_without_a_byte(sock: socket.socket) -> bool:
    sock.settimeout(TIMEOUT)
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_proxy_header_from_untrusted_network_is_closed(hardened: Factory) -> None:
    proxy = hardened(listener={"proxy_protocol": True, "trusted_proxies":
                               (ipaddress.ip_network("192.0.2.0/24"),)})
    with socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 40001 143\r\n")
        assert closed_without_a_byte(sock)


@pytest.mark.parametrize("junk", [b"a1 CAPABILITY\r\n", b"PROXY TCP4 nonsense\r\n"])
def test_bad_proxy_header_is_closed(hardened: Factory, raw_factory: RawFactory,
                                    junk: bytes) -> None:
    proxy = hardened(listener=PROXY_LISTENER)
    with socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT) as sock:
        sock.sendall(junk)
        assert closed_without_a_byte(sock)
    # and the listener goes on
    assert behind(proxy, proxy_v2("203.0.113.1", 1)).greeting.startswith(b"* OK")


def test_proxy_header_before_implicit_tls(hardened: Factory, account: Any,
                                          tmp_path: Any) -> None:
    """The header comes first, then the TLS handshake, then IMAP."""
    from .test_tls_hardening import make_ca

    cert, key = make_ca(tmp_path, "server")
    proxy = hardened(listener={**PROXY_LISTENER, "tls": "implicit", "cert_file": cert,
                               "key_file": key})
    with RawClient(proxy.host, proxy.port, read_greeting=False) as client:
        client.send(b"PROXY TCP4 203.0.113.9 127.0.0.1 40001 993\r\n")
        client.starttls(ssl.create_default_context(cafile=str(cert)), "localhost")
        client.greeting = client.read_response()
        assert b"AUTH=PLAIN" in client.greeting  # remote, but over TLS
        client.login(account.user, account.password)


def test_world_writable_cache_directory_is_refused_at_start(dovecot: Any,
                                                           tmp_path: Any) -> None:
    config = make_config(dovecot.host, dovecot.port)
    os.chmod(config.cache_dir, 0o777)
    try:
        with pytest.raises(PermissionError, match="writable by everyone"):
            RunningProxy(config)
    finally:
        os.chmod(config.cache_dir, 0o700)
        shutil.rmtree(config.cache_dir, ignore_errors=True)
