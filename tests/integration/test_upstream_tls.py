"""Upstream TLS: imaps:// and imap+starttls:// to a Dovecot with a self-signed certificate,
verified by default, trusted with upstream.ca_file, or skipped only with the insecure switch."""

from __future__ import annotations

import dataclasses
import imaplib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imapproxy.devserver import DovecotServer
from tests.integration.conftest import RunningProxy, make_config


@pytest.fixture
def tls_proxy(tls_dovecot: DovecotServer) -> Iterator[Callable[..., RunningProxy]]:
    """``tls_proxy(security, port, **upstream settings)``: a proxy in front of tls_dovecot."""
    started: list[RunningProxy] = []

    def start(security: str, port: int | None, **upstream: Any) -> RunningProxy:
        assert port is not None
        config = make_config("127.0.0.1", port)
        config = dataclasses.replace(config, upstream=dataclasses.replace(
            config.upstream, security=security, **upstream))
        started.append(RunningProxy(config))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def _login_through(proxy: Any) -> tuple[str, list[Any]]:
    imap = imaplib.IMAP4(proxy.host, proxy.port, timeout=10)
    try:
        typ, data = imap.login("tlsuser", "tlspass")
        if typ == "OK":
            imap.select("INBOX")
        return typ, data
    except imaplib.IMAP4.error as exc:
        return "NO", [str(exc).encode()]
    finally:
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


@pytest.mark.parametrize("security", ["implicit", "starttls"])
def test_verified_with_configured_ca(tls_proxy: Any, tls_dovecot: DovecotServer,
                                     security: str) -> None:
    port = tls_dovecot.ssl_port if security == "implicit" else tls_dovecot.port
    proxy = tls_proxy(security, port, ca_file=Path(str(tls_dovecot.cert_file)))
    typ, _ = _login_through(proxy)
    assert typ == "OK"


@pytest.mark.parametrize("security", ["implicit", "starttls"])
def test_unknown_certificate_is_refused_by_default(tls_proxy: Any,
                                                   tls_dovecot: DovecotServer,
                                                   security: str) -> None:
    port = tls_dovecot.ssl_port if security == "implicit" else tls_dovecot.port
    proxy = tls_proxy(security, port)
    typ, data = _login_through(proxy)
    assert typ == "NO"
    assert b"UNAVAILABLE" in b" ".join(d for d in data if isinstance(d, bytes))


def test_insecure_switch_skips_verification(tls_proxy: Any,
                                            tls_dovecot: DovecotServer) -> None:
    proxy = tls_proxy("implicit", tls_dovecot.ssl_port, insecure_skip_verify=True)
    typ, _ = _login_through(proxy)
    assert typ == "OK"
