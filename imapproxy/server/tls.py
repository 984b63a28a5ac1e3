"""Server TLS contexts: TLS 1.2+ with Mozilla's "intermediate" cipher list, optional client
certificates, and reloading of certificate and key (SIGHUP) without dropping anyone.

A reload loads the new files into the same live context: OpenSSL copies the certificate into
each connection when its handshake starts, so sessions already running keep theirs and new
handshakes get the new one. The new files are tried on a scratch context first, so a broken
or half-copied file leaves the running certificate in place."""

from __future__ import annotations

import logging
import ssl

from ..config import ListenerConfig

log = logging.getLogger(__name__)

# Mozilla "intermediate" (TLS 1.2 part; TLS 1.3 suites are OpenSSL's defaults, all modern).
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


def _load(ctx: ssl.SSLContext, listener: ListenerConfig) -> None:
    assert listener.cert_file is not None
    ctx.load_cert_chain(str(listener.cert_file),
                        str(listener.key_file) if listener.key_file else None)
    if listener.client_ca_file is not None:
        ctx.load_verify_locations(cafile=str(listener.client_ca_file))


def server_context(listener: ListenerConfig) -> ssl.SSLContext | None:
    """The listener's context, or None when it has no TLS."""
    if listener.tls == "none" or listener.cert_file is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if listener.client_ca_file is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED if listener.require_client_cert \
            else ssl.CERT_OPTIONAL
    _load(ctx, listener)
    return ctx


class TlsReloader:
    """The live contexts of all listeners, and how to reload their files."""

    def __init__(self) -> None:
        self._live: list[tuple[ListenerConfig, ssl.SSLContext]] = []

    def context_for(self, listener: ListenerConfig) -> ssl.SSLContext | None:
        ctx = server_context(listener)
        if ctx is not None:
            self._live.append((listener, ctx))
        return ctx

    def reload(self) -> list[str]:
        """Reload every certificate and key; the problems, one line each (empty when all
        were reloaded). A listener whose new files fail keeps its old certificate."""
        problems: list[str] = []
        for listener, ctx in self._live:
            try:
                server_context(listener)  # try the files on a scratch context first
                _load(ctx, listener)
            except (OSError, ssl.SSLError) as exc:
                problems.append(f"listener {listener.bind}: certificate not reloaded: {exc}")
                log.error("%s", problems[-1])
            else:
                log.info("listener %s: certificate reloaded from %s", listener.bind,
                         listener.cert_file)
        return problems
