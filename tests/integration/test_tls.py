"""TLS on the client side of the proxy: implicit TLS, STARTTLS, and the plaintext-login policy
(LOGINDISABLED / PRIVACYREQUIRED before TLS for clients that are not on loopback).

Every client here is on 127.0.0.1, which the proxy always trusts with plaintext logins; the
policy for remote clients is tested by monkeypatching ``imapproxy.server.session.is_loopback``
(looked up at call time by ``Session.plaintext_auth_allowed``, so the patch reaches the proxy's
thread)."""

from __future__ import annotations

import base64
import imaplib
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import imapproxy.server.session as session_module
from imapproxy.config import ListenerConfig

from .conftest import TIMEOUT, RawClient, RunningProxy, code_of, quote, status_of

RawFactory = Callable[..., RawClient]
ProxyFactory = Callable[..., RunningProxy]


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only this self-signed certificate (hostname checked)."""
        return ssl.create_default_context(cafile=str(self.cert_file))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-nodes", "-days", "2",
         "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30)
    return Certificate(cert, key)


def tls_listener(certificate: Certificate, mode: str, *, allow: bool = False) -> ListenerConfig:
    return ListenerConfig(host="127.0.0.1", port=0, tls=mode,  # type: ignore[arg-type]
                          cert_file=certificate.cert_file, key_file=certificate.key_file,
                          allow_plaintext_auth=allow)


@pytest.fixture
def implicit_proxy(proxy_factory: ProxyFactory, certificate: Certificate) -> RunningProxy:
    return proxy_factory(listeners=(tls_listener(certificate, "implicit"),))


@pytest.fixture
def starttls_proxy(proxy_factory: ProxyFactory, certificate: Certificate) -> RunningProxy:
    return proxy_factory(listeners=(tls_listener(certificate, "starttls"),))


@pytest.fixture
def remote_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the proxy treat every peer as remote (not loopback)."""
    monkeypatch.setattr(session_module, "is_loopback", lambda peer: False)


def caps(line: bytes) -> set[bytes]:
    """Capability names in a ``* CAPABILITY`` line or a ``[CAPABILITY ...]`` code."""
    text = line.split(b"CAPABILITY", 1)[1].split(b"]", 1)[0]
    return set(text.split())


# --- implicit TLS ----------------------------------------------------------------------------


def test_implicit_tls_with_imaplib(implicit_proxy: RunningProxy, certificate: Certificate,
                                   account: Any) -> None:
    client = imaplib.IMAP4_SSL(implicit_proxy.host, implicit_proxy.port,
                               ssl_context=certificate.client_context(), timeout=TIMEOUT)
    try:
        peer_cert = client.sock.getpeercert()
        assert peer_cert is not None
        assert ("commonName", "localhost") in [item for rdn in peer_cert["subject"] for item in rdn]
        assert "AUTH=PLAIN" in client.capabilities
        assert "STARTTLS" not in client.capabilities  # already encrypted
        assert "LOGINDISABLED" not in client.capabilities
        typ, _ = client.login(account.user, account.password)
        assert typ == "OK"
        msg = b"Subject: over TLS\r\n\r\n" + b"z" * 700_000 + b"\r\n"
        typ, _ = client.append("INBOX", None, None, msg)
        assert typ == "OK"
        typ, data = client.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        typ, data = client.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == msg
    finally:
        client.logout()


def test_implicit_tls_remote_client_may_log_in(implicit_proxy: RunningProxy,
                                               certificate: Certificate,
                                               raw_factory: RawFactory, account: Any,
                                               remote_client: None) -> None:
    client = raw_factory(implicit_proxy.host, implicit_proxy.port,
                         ssl_context=certificate.client_context(), server_hostname="localhost")
    assert b"AUTH=PLAIN" in caps(client.greeting)
    assert b"LOGINDISABLED" not in caps(client.greeting)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")


def test_implicit_tls_refuses_an_untrusted_client_context(implicit_proxy: RunningProxy) -> None:
    """The listener really serves the configured self-signed certificate: a client that does
    not trust it fails the handshake."""
    with socket.create_connection((implicit_proxy.host, implicit_proxy.port),
                                  timeout=TIMEOUT) as sock:
        context = ssl.create_default_context()  # system CAs only
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(sock, server_hostname="localhost")


def test_implicit_tls_plaintext_client_gets_nothing(implicit_proxy: RunningProxy,
                                                    certificate: Certificate,
                                                    raw_factory: RawFactory,
                                                    account: Any) -> None:
    with socket.create_connection((implicit_proxy.host, implicit_proxy.port),
                                  timeout=TIMEOUT) as sock:
        sock.sendall(b"a1 LOGIN user pass\r\n")
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        assert b"* OK" not in received and b"a1 " not in received
    # and the listener still works
    client = raw_factory(implicit_proxy.host, implicit_proxy.port,
                         ssl_context=certificate.client_context(), server_hostname="127.0.0.1")
    client.login(account.user, account.password)


# --- STARTTLS --------------------------------------------------------------------------------


def test_starttls_with_imaplib(starttls_proxy: RunningProxy, certificate: Certificate,
                               account: Any) -> None:
    client = imaplib.IMAP4(starttls_proxy.host, starttls_proxy.port, timeout=TIMEOUT)
    try:
        assert "STARTTLS" in client.capabilities
        typ, _ = client.starttls(ssl_context=certificate.client_context())
        assert typ == "OK"
        assert isinstance(client.sock, ssl.SSLSocket)
        typ, data = client.capability()
        after = set(data[0].decode().split())
        assert "STARTTLS" not in after and "AUTH=PLAIN" in after
        typ, _ = client.login(account.user, account.password)
        assert typ == "OK"
        typ, _ = client.select("INBOX")
        assert typ == "OK"
    finally:
        client.logout()


def test_starttls_is_advertised_before_and_not_after(starttls_proxy: RunningProxy,
                                                     certificate: Certificate,
                                                     raw_factory: RawFactory,
                                                     account: Any) -> None:
    client = raw_factory(starttls_proxy.host, starttls_proxy.port)
    assert b"STARTTLS" in caps(client.greeting)
    assert b"STARTTLS" in caps(client.ok("CAPABILITY")[0])
    untagged, tagged = client.command("STARTTLS", tag="s1")
    assert untagged == [] and status_of(tagged) == b"OK"
    client.starttls(certificate.client_context(), server_hostname="localhost")
    after = caps(client.ok("CAPABILITY")[0])
    assert b"STARTTLS" not in after and b"AUTH=PLAIN" in after
    _, tagged = client.command("STARTTLS")  # a second time
    assert status_of(tagged) == b"BAD"
    client.login(account.user, account.password)
    assert b"STARTTLS" not in caps(client.ok("CAPABILITY")[0])
    client.ok("SELECT INBOX")


def test_starttls_after_login_is_bad(starttls_proxy: RunningProxy, raw_factory: RawFactory,
                                     account: Any) -> None:
    client = raw_factory(starttls_proxy.host, starttls_proxy.port)
    client.login(account.user, account.password)  # loopback: allowed without TLS
    _, tagged = client.command("STARTTLS")
    assert status_of(tagged) == b"BAD"
    client.ok("SELECT INBOX")


def test_starttls_not_offered_without_certificate(raw_proxy: RawClient) -> None:
    assert b"STARTTLS" not in caps(raw_proxy.greeting)
    _, tagged = raw_proxy.command("STARTTLS")
    assert status_of(tagged) == b"BAD"
    raw_proxy.ok("NOOP")


def test_starttls_drops_pipelined_plaintext(starttls_proxy: RunningProxy,
                                            certificate: Certificate,
                                            raw_factory: RawFactory,
                                            account: Any) -> None:
    """Commands sent in plaintext right behind STARTTLS (a man in the middle's injection,
    cf. CVE-2011-0411) must not be executed after the TLS handshake."""
    client = raw_factory(starttls_proxy.host, starttls_proxy.port)
    injected = f"x2 LOGIN {quote(account.user)} {quote(account.password)}\r\nx3 CREATE Evil\r\n"
    client.send(b"x1 STARTTLS\r\n" + injected.encode())
    _, tagged = client.read_until_tagged("x1")
    assert status_of(tagged) == b"OK"
    client.starttls(certificate.client_context(), server_hostname="localhost")
    untagged, tagged = client.command("CAPABILITY", tag="x4")
    assert status_of(tagged) == b"OK"
    assert not any(r.startswith((b"x2 ", b"x3 ")) for r in untagged), untagged
    _, tagged = client.command("SELECT INBOX")  # the injected LOGIN did not happen
    assert status_of(tagged) == b"BAD"
    client.login(account.user, account.password)
    assert not any(b"Evil" in r for r in client.ok('LIST "" "*"'))


def test_starttls_listener_and_implicit_listener_in_one_app(
        proxy_factory: ProxyFactory, certificate: Certificate, raw_factory: RawFactory,
        account: Any) -> None:
    app = proxy_factory(listeners=(tls_listener(certificate, "starttls"),
                                   tls_listener(certificate, "implicit")))
    assert len(app.addresses) == 2
    (starttls_host, starttls_port), (implicit_host, implicit_port) = app.addresses
    plain = raw_factory(starttls_host, starttls_port)
    assert b"STARTTLS" in caps(plain.greeting)
    secure = raw_factory(implicit_host, implicit_port, ssl_context=certificate.client_context(),
                         server_hostname="localhost")
    assert b"STARTTLS" not in caps(secure.greeting)
    for client in (plain, secure):
        client.login(account.user, account.password)
        client.ok("SELECT INBOX")


# --- the plaintext-login policy for remote clients -------------------------------------------


def test_remote_client_must_starttls_before_login(starttls_proxy: RunningProxy,
                                                  certificate: Certificate,
                                                  raw_factory: RawFactory, account: Any,
                                                  remote_client: None) -> None:
    client = raw_factory(starttls_proxy.host, starttls_proxy.port)
    before = caps(client.greeting)
    assert b"LOGINDISABLED" in before and b"STARTTLS" in before
    assert b"AUTH=PLAIN" not in before
    assert caps(client.ok("CAPABILITY")[0]) == before

    _, tagged = client.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
    assert status_of(tagged) == b"NO" and code_of(tagged) == b"PRIVACYREQUIRED", tagged
    plain = base64.b64encode(f"\0{account.user}\0{account.password}".encode()).decode()
    _, tagged = client.command(f"AUTHENTICATE PLAIN {plain}")
    assert status_of(tagged) == b"NO" and code_of(tagged) == b"PRIVACYREQUIRED", tagged
    client.send(b"a9 AUTHENTICATE PLAIN\r\n")  # refused before asking for the credentials
    first = client.read_response()
    assert first.startswith(b"a9 NO [PRIVACYREQUIRED]"), first
    _, tagged = client.command("SELECT INBOX")  # not logged in
    assert status_of(tagged) == b"BAD"

    client.ok("STARTTLS")
    client.starttls(certificate.client_context(), server_hostname="localhost")
    after = caps(client.ok("CAPABILITY")[0])
    assert b"AUTH=PLAIN" in after
    assert b"LOGINDISABLED" not in after and b"STARTTLS" not in after
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")


def test_remote_authenticate_after_starttls(starttls_proxy: RunningProxy,
                                            certificate: Certificate, raw_factory: RawFactory,
                                            account: Any, remote_client: None) -> None:
    client = raw_factory(starttls_proxy.host, starttls_proxy.port)
    client.ok("STARTTLS")
    client.starttls(certificate.client_context(), server_hostname="localhost")
    client.send(b"a1 AUTHENTICATE PLAIN\r\n")
    assert client.read_response().startswith(b"+")
    client.send(base64.b64encode(f"\0{account.user}\0{account.password}".encode()) + b"\r\n")
    _, tagged = client.read_until_tagged("a1")
    assert status_of(tagged) == b"OK"
    client.ok("SELECT INBOX")


def test_remote_client_on_plain_listener_cannot_log_in(proxy: RunningProxy,
                                                       raw_factory: RawFactory, account: Any,
                                                       remote_client: None) -> None:
    client = raw_factory(proxy.host, proxy.port)
    greeting = caps(client.greeting)
    assert b"LOGINDISABLED" in greeting and b"STARTTLS" not in greeting
    _, tagged = client.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
    assert code_of(tagged) == b"PRIVACYREQUIRED", tagged
    _, tagged = client.command("STARTTLS")
    assert status_of(tagged) == b"BAD"
    client.ok("NOOP")


def test_allow_plaintext_auth_lets_remote_clients_log_in(proxy_factory: ProxyFactory,
                                                         certificate: Certificate,
                                                         raw_factory: RawFactory,
                                                         account: Any,
                                                         remote_client: None) -> None:
    app = proxy_factory(listeners=(tls_listener(certificate, "starttls", allow=True),))
    client = raw_factory(app.host, app.port)
    greeting = caps(client.greeting)
    assert b"AUTH=PLAIN" in greeting and b"STARTTLS" in greeting
    assert b"LOGINDISABLED" not in greeting
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
