"""The HAProxy PROXY protocol, v1 (text) and v2 (binary): the header a load balancer sends
first, naming the real client. Sans-I/O: ``bytes_needed`` tells how many more bytes a header
needs (never more than the header, so no IMAP byte is consumed), ``parse`` decodes a whole
one; ``read_header`` is the thin asyncio reader on top.

Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line, CRLF included
V2_MAX_PAYLOAD = 4096  # addresses plus TLVs; real headers are far smaller


class ProxyProtocolError(ValueError):
    """Not a valid PROXY header: the connection is closed."""


@dataclass(frozen=True)
class ProxyHeader:
    """``source``: the real client (address, port), or None for LOCAL / UNKNOWN (health
    checks and the like: the connection's own address stands)."""

    source: tuple[str, int] | None
    version: int


def bytes_needed(data: bytes) -> int:
    """How many more bytes the header starting ``data`` needs at least; 0 when complete.
    Raises ProxyProtocolError as soon as the bytes cannot start a header."""
    if len(data) < 12:  # both versions are at least 12 bytes long (v1: 15)
        if not (V2_SIGNATURE.startswith(data) or V1_PREFIX.startswith(data[:6])):
            raise ProxyProtocolError("not a PROXY protocol header")
        return 12 - len(data)
    if data.startswith(V2_SIGNATURE):
        if len(data) < 16:
            return 16 - len(data)
        length = int.from_bytes(data[14:16], "big")
        if length > V2_MAX_PAYLOAD:
            raise ProxyProtocolError("PROXY v2 header too long")
        return max(0, 16 + length - len(data))
    if not data.startswith(V1_PREFIX):
        raise ProxyProtocolError("not a PROXY protocol header")
    end = data.find(b"\r\n")
    if end >= 0:
        return 0
    if len(data) >= V1_MAX:
        raise ProxyProtocolError("PROXY v1 line too long")
    return 1


def parse(data: bytes) -> ProxyHeader:
    """Decode one whole header (exactly the bytes ``bytes_needed`` asked for)."""
    if bytes_needed(data) != 0:
        raise ProxyProtocolError("incomplete PROXY header")
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    return _parse_v1(data)


def _parse_v1(data: bytes) -> ProxyHeader:
    line = data[:data.find(b"\r\n")]
    try:
        fields = line.decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 line is not ASCII") from None
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        return ProxyHeader(None, 1)
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError("malformed PROXY v1 line")
    _, family, src, dst, sport, _dport = fields
    version = 4 if family == "TCP4" else 6
    try:
        source = ipaddress.ip_address(src)
        dest = ipaddress.ip_address(dst)
    except ValueError:
        raise ProxyProtocolError("bad address in PROXY v1 line") from None
    if source.version != version or dest.version != version:
        raise ProxyProtocolError("address family mismatch in PROXY v1 line")
    return ProxyHeader((str(source), _port(sport)), 1)


def _port(text: str) -> int:
    if not text.isdigit() or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ProxyProtocolError("bad port in PROXY v1 line")
    return int(text)


def _parse_v2(data: bytes) -> ProxyHeader:
    version_command, family = data[12], data[13]
    if version_command >> 4 != 2:
        raise ProxyProtocolError("unknown PROXY protocol version")
    command = version_command & 0x0F
    if command == 0:  # LOCAL: the proxy's own connection (health check)
        return ProxyHeader(None, 2)
    if command != 1:
        raise ProxyProtocolError("unknown PROXY v2 command")
    payload = data[16:]
    if family == 0x11:  # TCP over IPv4
        if len(payload) < 12:
            raise ProxyProtocolError("PROXY v2 IPv4 addresses truncated")
        address = str(ipaddress.IPv4Address(payload[0:4]))
        return ProxyHeader((address, int.from_bytes(payload[8:10], "big")), 2)
    if family == 0x21:  # TCP over IPv6
        if len(payload) < 36:
            raise ProxyProtocolError("PROXY v2 IPv6 addresses truncated")
        address = str(ipaddress.IPv6Address(payload[0:16]))
        return ProxyHeader((address, int.from_bytes(payload[32:34], "big")), 2)
    if family == 0x00:  # UNSPEC
        return ProxyHeader(None, 2)
    raise ProxyProtocolError("unsupported PROXY v2 address family")


async def read_header(reader: asyncio.StreamReader, timeout: float) -> ProxyHeader:
    """Read exactly one header. Raises ProxyProtocolError (also for EOF or ``timeout``)."""
    data = b""
    try:
        async with asyncio.timeout(timeout):
            while (need := bytes_needed(data)) > 0:
                data += await reader.readexactly(need)
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        raise ProxyProtocolError("no complete PROXY header") from None
    return parse(data)
