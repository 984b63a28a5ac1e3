"""The PROXY protocol parser, from bytes: v1 and v2 headers decode to the real client, partial
input asks for exactly the missing bytes (never an IMAP byte more), junk is refused early."""

from __future__ import annotations

import asyncio
import ipaddress
import struct

import pytest

from imapproxy.server.proxy_protocol import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    bytes_needed,
    parse,
    read_header,
)


def v2(command: int, family: int, payload: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(payload)) \
        + payload


def v2_tcp4(src: str, sport: int, dst: str = "10.0.0.1", dport: int = 143,
            tlvs: bytes = b"") -> bytes:
    payload = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed \
        + struct.pack("!HH", sport, dport) + tlvs
    return v2(1, 0x11, payload)


def feed(data: bytes) -> tuple[int, ProxyHeader]:
    """Feed like read_header does; (bytes consumed, header)."""
    buf = b""
    while (need := bytes_needed(buf)) > 0:
        buf += data[len(buf):len(buf) + need]
        if len(buf) > len(data):
            raise AssertionError("asked past the end")
    return len(buf), parse(buf)


@pytest.mark.parametrize(("line", "source"), [
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 143\r\n", ("192.0.2.7", 56324)),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 993\r\n", ("2001:db8::7", 4000)),
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", None),
])
def test_v1(line: bytes, source: tuple[str, int] | None) -> None:
    consumed, header = feed(line + b"a1 CAPABILITY\r\n")
    assert consumed == len(line)
    assert header == ProxyHeader(source, 1)


def test_v2_ipv4_with_tlvs() -> None:
    data = v2_tcp4("198.51.100.9", 40000, tlvs=b"\x04\x00\x02ab")
    consumed, header = feed(data + b"a1 NOOP\r\n")
    assert consumed == len(data)
    assert header == ProxyHeader(("198.51.100.9", 40000), 2)


def test_v2_ipv6() -> None:
    payload = ipaddress.IPv6Address("2001:db8::9").packed + ipaddress.IPv6Address("::1").packed \
        + struct.pack("!HH", 5555, 143)
    assert feed(v2(1, 0x21, payload))[1] == ProxyHeader(("2001:db8::9", 5555), 2)


@pytest.mark.parametrize("data", [v2(0, 0x00, b""), v2(1, 0x00, b"")])
def test_v2_local_and_unspec_keep_the_socket_address(data: bytes) -> None:
    assert feed(data)[1].source is None


@pytest.mark.parametrize("data", [
    b"a1 LOGIN bob secret\r\n",                 # a client that speaks IMAP directly
    b"GET / HTTP/1.0\r\n\r\n",
    b"PROXY TCP4 192.0.2.7 10.0.0.1 56324\r\n",  # a field missing
    b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",  # family mismatch
    b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 143\r\n",
    b"PROXY TCP4 192.0.2.7 10.0.0.1 0123 143\r\n",
    b"PROXY TCP5 192.0.2.7 10.0.0.1 1 2\r\n",
    b"PROXY " + b"A" * 200 + b"\r\n",           # over 107 bytes without CRLF
    b"PROXY TCP4 \xff.0.2.7 10.0.0.1 1 2\r\n",
    V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12),  # version 3
    V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12),  # command 2
    v2(1, 0x11, bytes(8)),                       # truncated IPv4 block
    v2(1, 0x21, bytes(20)),                      # truncated IPv6 block
    v2(1, 0x31, bytes(216)),                     # AF_UNIX: not a client address
    V2_SIGNATURE + b"\x21\x11\xff\xff",          # absurd length
])
def test_junk_is_refused(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        feed(data)


def test_junk_is_refused_on_the_first_bytes() -> None:
    with pytest.raises(ProxyProtocolError):
        bytes_needed(b"a1 ")


def test_parse_refuses_an_incomplete_header() -> None:
    with pytest.raises(ProxyProtocolError):
        parse(b"PROXY TCP4 1.2.3.4")


def test_read_header_leaves_the_imap_bytes() -> None:
    async def go() -> tuple[ProxyHeader, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(v2_tcp4("203.0.113.5", 1234) + b"a1 NOOP\r\n")
        reader.feed_eof()
        header = await read_header(reader, 1.0)
        return header, await reader.read()
    header, rest = asyncio.run(go())
    assert header.source == ("203.0.113.5", 1234)
    assert rest == b"a1 NOOP\r\n"


def test_read_header_times_out_on_silence() -> None:
    async def go() -> None:
        await read_header(asyncio.StreamReader(), 0.05)
    with pytest.raises(ProxyProtocolError):
        asyncio.run(go())
