"""TLS hardening on the client side: TLS 1.2+ with modern ciphers only, certificate reload
without dropping sessions, optional client certificates; and on the upstream side, the
hostname of the upstream certificate is checked, not only its chain."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imapproxy.config import ListenerConfig
from imapproxy.devserver import DovecotServer
from imapproxy.server.tls import server_context

from .conftest import TIMEOUT, RawClient, RunningProxy, make_config
from .relay import Relay

ProxyFactory = Callable[..., RunningProxy]


def openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    assert binary is not None, "openssl is needed (apt install openssl)"
    subprocess.run([binary, *args], check=True, capture_output=True, timeout=30)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    openssl("req", "-x509", "-nodes", "-days", "2", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-keyout", str(key), "-out", str(cert),
            "-subj", f"/CN={name}", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    return cert, key


def signed_by(directory: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for CN=name signed by ``ca`` (a client certificate)."""
    cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / "c.csr"
    openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-keyout", str(key), "-out", str(csr),
            "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
            "-CAcreateserial", "-days", "2", "-out", str(cert))
    return cert, key


def served_certificate(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock, \
            ctx.wrap_socket(sock) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der_of(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    return tmp_path


def implicit(cert: tuple[Path, Path], **extra: Any) -> ListenerConfig:
    return ListenerConfig(host="127.0.0.1", port=0, tls="implicit", cert_file=cert[0],
                          key_file=cert[1], **extra)


# --- protocol versions and ciphers -----------------------------------------------------------


def test_context_is_tls12_plus_with_forward_secret_aead_ciphers(tls_dir: Path) -> None:
    ctx = server_context(implicit(make_ca(tls_dir, "server")))
    assert ctx is not None
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    names = [c["name"] for c in ctx.get_ciphers()]
    assert names
    for name in names:
        assert name.startswith(("TLS_", "ECDHE-", "DHE-")), name  # TLS 1.3 or (EC)DHE
        assert "GCM" in name or "CHACHA20" in name, name
        assert "CBC" not in name and "SHA1" not in name and "RC4" not in name


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_versions_are_refused(proxy_factory: ProxyFactory, tls_dir: Path,
                                      version: ssl.TLSVersion) -> None:
    proxy = proxy_factory(listeners=(implicit(make_ca(tls_dir, "server")),))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(ValueError, ssl.SSLError):
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT) as sock, \
            pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(sock)


def test_weak_cipher_is_refused(proxy_factory: ProxyFactory, tls_dir: Path) -> None:
    proxy = proxy_factory(listeners=(implicit(make_ca(tls_dir, "server")),))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # CBC with SHA-1: not in "intermediate"
    with socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT) as sock, \
            pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(sock)


# --- reload ----------------------------------------------------------------------------------


def test_reload_serves_the_new_certificate_and_keeps_sessions(
        proxy_factory: ProxyFactory, tls_dir: Path, account: Any) -> None:
    live = (tls_dir / "live.pem", tls_dir / "live.key")
    old = make_ca(tls_dir, "old")
    new = make_ca(tls_dir, "new")
    for src, dst in zip(old, live, strict=True):
        shutil.copy(src, dst)
    proxy = proxy_factory(listeners=(implicit(live),))
    assert served_certificate(proxy.port) == der_of(old[0])
    client_ctx = ssl.create_default_context(cafile=str(old[0]))
    session = RawClient(proxy.host, proxy.port, ssl_context=client_ctx,
                        server_hostname="localhost")
    session.login(account.user, account.password)

    for src, dst in zip(new, live, strict=True):
        shutil.copy(src, dst)
    problems = proxy.call(_reload(proxy))
    assert problems == []

    assert served_certificate(proxy.port) == der_of(new[0])
    session.ok("SELECT INBOX")  # the session made with the old certificate goes on
    session.ok("LOGOUT")
    session.close()


async def _reload(proxy: RunningProxy) -> list[str]:
    return proxy.app.tls.reload()


def test_broken_new_files_keep_the_old_certificate(proxy_factory: ProxyFactory,
                                                   tls_dir: Path) -> None:
    live = (tls_dir / "live.pem", tls_dir / "live.key")
    old = make_ca(tls_dir, "old")
    for src, dst in zip(old, live, strict=True):
        shutil.copy(src, dst)
    proxy = proxy_factory(listeners=(implicit(live),))
    live[0].write_text("-----BEGIN CERTIFICATE-----\nhalf a file")
    problems = proxy.call(_reload(proxy))
    assert len(problems) == 1 and "not reloaded" in problems[0]
    assert served_certificate(proxy.port) == der_of(old[0])


# --- client certificates ---------------------------------------------------------------------


@pytest.fixture
def client_cert_proxy(proxy_factory: ProxyFactory,
                      tls_dir: Path) -> tuple[RunningProxy, Path, tuple[Path, Path]]:
    server = make_ca(tls_dir, "server")
    client_ca = make_ca(tls_dir, "clientca")
    client = signed_by(tls_dir, "phone", client_ca)
    proxy = proxy_factory(listeners=(implicit(server, client_ca_file=client_ca[0],
                                              require_client_cert=True),))
    return proxy, server[0], client


def test_required_client_certificate_admits_a_signed_client(
        client_cert_proxy: tuple[RunningProxy, Path, tuple[Path, Path]], account: Any) -> None:
    proxy, server_cert, client = client_cert_proxy
    ctx = ssl.create_default_context(cafile=str(server_cert))
    ctx.load_cert_chain(str(client[0]), str(client[1]))
    with RawClient(proxy.host, proxy.port, ssl_context=ctx,
                   server_hostname="localhost") as session:
        assert session.greeting.startswith(b"* OK")
        session.login(account.user, account.password)


def test_required_client_certificate_refuses_a_client_without_one(
        client_cert_proxy: tuple[RunningProxy, Path, tuple[Path, Path]]) -> None:
    proxy, server_cert, _ = client_cert_proxy
    ctx = ssl.create_default_context(cafile=str(server_cert))
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError)):
        # TLS 1.3 reports the refusal at the first read, not in the handshake
        RawClient(proxy.host, proxy.port, ssl_context=ctx, server_hostname="localhost")


def test_required_client_certificate_refuses_another_ca(
        client_cert_proxy: tuple[RunningProxy, Path, tuple[Path, Path]],
        tls_dir: Path) -> None:
    proxy, server_cert, _ = client_cert_proxy
    stranger = signed_by(tls_dir, "stranger", make_ca(tls_dir, "otherca"))
    ctx = ssl.create_default_context(cafile=str(server_cert))
    ctx.load_cert_chain(str(stranger[0]), str(stranger[1]))
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError)):
        RawClient(proxy.host, proxy.port, ssl_context=ctx, server_hostname="localhost")


# --- upstream hostname -----------------------------------------------------------------------


@pytest.mark.parametrize(("host", "expected"), [("127.0.0.1", b"OK"), ("127.0.0.2", b"NO")])
def test_upstream_certificate_hostname_is_checked(tls_dovecot: DovecotServer, host: str,
                                                  expected: bytes) -> None:
    """Chain trusted in both cases; only the address the certificate names is accepted."""
    assert tls_dovecot.cert_file is not None
    # The same TLS server under an address its certificate does not name.
    forwarder = Relay(("127.0.0.1", tls_dovecot.ssl_port), host="127.0.0.2")
    port = tls_dovecot.ssl_port if host == "127.0.0.1" else forwarder.port
    config = make_config(host, port)
    config = dataclasses.replace(config, upstream=dataclasses.replace(
        config.upstream, security="implicit", ca_file=Path(str(tls_dovecot.cert_file))))
    proxy = RunningProxy(config)
    try:
        with RawClient(proxy.host, proxy.port) as client:
            _, tagged = client.command('LOGIN "tlsuser" "tlspass"')
            assert tagged.split(b" ")[1] == expected, tagged
            if expected == b"NO":
                assert b"[UNAVAILABLE]" in tagged
    finally:
        proxy.stop()
        forwarder.close()
