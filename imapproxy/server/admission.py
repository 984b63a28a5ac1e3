"""Letting a new connection in: the PROXY protocol header on listeners behind a load
balancer (accepted only from trusted networks), then the connection limits, counted against
the real client address.

On an implicit-TLS listener with the PROXY protocol the header comes before the TLS
handshake: server/proxied_tls.py reads it (``deferred_tls``)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from ..config import ListenerConfig
from .answers import status_line
from .guard import Guard, client_ip
from .proxy_protocol import ProxyProtocolError, read_header

log = logging.getLogger(__name__)

PROXY_HEADER_TIMEOUT = 10.0  # seconds a load balancer has to send its header
TLS_HANDSHAKE_TIMEOUT = 30.0


def deferred_tls(listener: ListenerConfig) -> bool:
    """Whether this listener's implicit TLS starts after the PROXY header, not on accept."""
    return listener.proxy_protocol and listener.tls == "implicit"


def is_trusted(peer: object, listener: ListenerConfig) -> bool:
    try:
        address = ipaddress.ip_address(client_ip(peer))
    except ValueError:
        return False
    return any(address in network for network in listener.trusted_proxies)


async def real_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    listener: ListenerConfig) -> object | None:
    """The client's address: the socket's, or on a PROXY listener the one the header names.
    None when the connection must be closed (untrusted sender, or no valid header)."""
    peer: object = writer.get_extra_info("peername")
    if not listener.proxy_protocol:
        return peer
    if not is_trusted(peer, listener):
        log.warning("PROXY listener %s: connection from untrusted %s closed", listener.bind,
                    client_ip(peer))
        return None
    try:
        header = await read_header(reader, PROXY_HEADER_TIMEOUT)
    except ProxyProtocolError as exc:
        log.warning("PROXY listener %s: %s from %s; connection closed", listener.bind, exc,
                    client_ip(peer))
        return None
    return header.source if header.source is not None else peer


async def admit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                listener: ListenerConfig, guard: Guard, peer: object = None) -> object | None:
    """The real peer, with a connection slot taken (give it back with guard.limits.close);
    None when the connection was refused (and closed). ``peer``: already known (the header
    was read by server/proxied_tls.py)."""
    if peer is None:
        peer = await real_peer(reader, writer, listener)
    if peer is not None:
        refusal = guard.limits.open(client_ip(peer))
        if refusal is None:
            return peer
        log.info("connection refused ip=%s reason=%s", client_ip(peer), refusal.lower())
        guard.on_event("connection_refused")
        writer.write(status_line(None, "BYE", refusal + "."))
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 5.0)
    except (TimeoutError, OSError):
        pass
    return None
