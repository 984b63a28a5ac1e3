"""An implicit-TLS listener behind a PROXY-protocol load balancer.

There the PROXY header comes first and the TLS ClientHello right behind it, often in the same
packet. asyncio's stream reader would read both, and the ClientHello bytes it buffered can no
longer reach the TLS layer. So this listener reads the header from the socket itself, byte-
exactly (``bytes_needed`` never asks past the header), and only then hands the socket to
asyncio with TLS. Same interface as the part of asyncio.Server that ProxyApp uses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable

from ..config import ListenerConfig
from .admission import PROXY_HEADER_TIMEOUT, TLS_HANDSHAKE_TIMEOUT, is_trusted
from .guard import client_ip
from .proxy_protocol import ProxyProtocolError, bytes_needed, parse

log = logging.getLogger(__name__)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, object], Awaitable[None]]


class ProxiedTlsServer:
    def __init__(self, listener: ListenerConfig, tls: ssl.SSLContext, handler: Handler) -> None:
        self.listener = listener
        self.tls = tls
        self.handler = handler
        self.sockets: list[socket.socket] = []
        self._accepting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        sock = socket.create_server((self.listener.host, self.listener.port),
                                    family=socket.AF_INET6 if ":" in self.listener.host
                                    else socket.AF_INET, backlog=128)
        sock.setblocking(False)
        self.sockets = [sock]
        self._accepting = asyncio.ensure_future(self._accept_loop(sock))

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, address = await loop.sock_accept(sock)
            task = asyncio.ensure_future(self._connection(conn, address))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connection(self, conn: socket.socket, address: object) -> None:
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        try:
            if not is_trusted(address, self.listener):
                raise ProxyProtocolError(f"connection from untrusted {client_ip(address)}")
            data = b""
            async with asyncio.timeout(PROXY_HEADER_TIMEOUT):
                while (need := bytes_needed(data)) > 0:
                    chunk = await loop.sock_recv(conn, need)
                    if not chunk:
                        raise ProxyProtocolError("connection closed inside the PROXY header")
                    data += chunk
            header = parse(data)
            reader = asyncio.StreamReader(limit=1 << 16)
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock=conn, ssl=self.tls,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        except (ProxyProtocolError, TimeoutError, OSError, ssl.SSLError) as exc:
            log.warning("PROXY listener %s: %s; connection closed", self.listener.bind,
                        exc or "no complete PROXY header in time")
            conn.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self.handler(reader, writer, header.source or address)

    def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()

    async def wait_closed(self) -> None:
        if self._accepting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
