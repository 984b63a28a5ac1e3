"""A TCP relay on 127.0.0.1 that behaves like a slow link: latency, a bandwidth cap, byte counts.

Each direction of each connection is a small link model::

    a chunk read at time t (n bytes)
      starts on the wire at   s = max(t, wire_free)        (the cap serialises the chunks)
      leaves the wire at      wire_free = s + n / bandwidth
      is delivered at         wire_free + latency

Reading never waits for delivery: a reader task timestamps chunks into a FIFO and a writer
task delivers each one at its time, so a window of data is in flight at once (latency is not
paid once per chunk). Delivery times never decrease, so the FIFO keeps the byte order. The
FIFO is bounded in bytes (``max_buffer``): past it the reader stops reading and TCP pushes
back on the sender, as a real link's buffer would.

``up`` counts client -> target bytes, ``down`` target -> client, over all connections.

Library::

    relay = Relay("127.0.0.1", 0, "127.0.0.1", 143, latency=0.025, bandwidth=100e6 / 8)
    await relay.start(); relay.port; relay.up, relay.down; relay.reset(); await relay.stop()

Command line (what bench_fetch.py uses: the relay runs in its own process, off the client's
and the proxy's CPU time)::

    python bench/relay.py --target 127.0.0.1:143 --latency-ms 25 [--bandwidth-mbit 100]

prints one JSON line ``{"port": P, "control_port": C}`` and then serves until stdin closes or
SIGTERM. The control port takes one command per line and answers one JSON line:
``STATS`` (``{"up":..., "down":..., "connections":..., "lines_up":..., "latency_ms":...,
"bandwidth_mbit":...}``; ``lines_up`` counts client -> target lines: commands, for a client
that sends no literals),
``RESET`` (zero the counters), ``LATENCY <ms>``, ``BANDWIDTH <mbit, 0 = none>``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import signal
import socket
import sys

CHUNK = 256 * 1024
MAX_BUFFER = 8 * 1024 * 1024  # bytes queued per direction before the reader stops reading


class _Direction:
    """One direction of one connection: reader -> timed FIFO -> writer."""

    def __init__(self, relay: Relay, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                 upward: bool) -> None:
        self.relay = relay
        self.src = src
        self.dst = dst
        self.upward = upward
        self.fifo: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = 0
        self.wire_free = 0.0
        self.has_data = asyncio.Event()
        self.has_room = asyncio.Event()
        self.has_room.set()
        self.eof = False

    async def read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self.has_room.wait()
                data = await self.src.read(CHUNK)
                if not data:
                    break
                now = loop.time()
                n = len(data)
                if self.upward:
                    self.relay.up += n
                    self.relay.lines_up += data.count(b"\n")  # ~ commands, without literals
                else:
                    self.relay.down += n
                start = max(now, self.wire_free)
                bandwidth = self.relay.bandwidth
                self.wire_free = start + (n / bandwidth if bandwidth else 0.0)
                self.fifo.append((self.wire_free + self.relay.latency, data))
                self.queued += n
                if self.queued >= self.relay.max_buffer:
                    self.has_room.clear()
                self.has_data.set()
        except (ConnectionError, OSError):
            pass
        finally:
            self.eof = True
            self.has_data.set()

    async def write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self.fifo:
                    if self.eof:
                        break
                    self.has_data.clear()
                    await self.has_data.wait()
                    continue
                due = self.fifo[0][0]
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                # Everything already due goes in one write (fewer syscalls, same order).
                now = loop.time()
                batch = []
                while self.fifo and self.fifo[0][0] <= now + 0.0005:
                    _, chunk = self.fifo.popleft()
                    batch.append(chunk)
                    self.queued -= len(chunk)
                if not batch:
                    continue
                self.dst.write(b"".join(batch) if len(batch) > 1 else batch[0])
                if self.queued < self.relay.max_buffer:
                    self.has_room.set()
                await self.dst.drain()
            if self.dst.can_write_eof():
                self.dst.write_eof()
        except (ConnectionError, OSError):
            pass


class Relay:
    def __init__(self, host: str, port: int, target_host: str, target_port: int, *,
                 latency: float = 0.0, bandwidth: float = 0.0,
                 max_buffer: int = MAX_BUFFER) -> None:
        """``latency`` in seconds each way, ``bandwidth`` in bytes per second (0: no cap)."""
        if host != "127.0.0.1" or target_host != "127.0.0.1":
            raise ValueError("the benchmark relay only runs on 127.0.0.1")
        self.host = host
        self.requested_port = port
        self.target = (target_host, target_port)
        self.latency = latency
        self.bandwidth = bandwidth
        self.max_buffer = max_buffer
        self.up = 0
        self.down = 0
        self.lines_up = 0
        self.connections = 0
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def reset(self) -> None:
        self.up = self.down = self.lines_up = self.connections = 0

    def stats(self) -> dict[str, float]:
        return {"up": self.up, "down": self.down, "connections": self.connections,
                "lines_up": self.lines_up,
                "latency_ms": self.latency * 1000, "bandwidth_mbit": self.bandwidth * 8 / 1e6}

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, self.host, self.requested_port,
                                                 reuse_address=True)

    async def _accept(self, creader: asyncio.StreamReader,
                      cwriter: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            treader, twriter = await asyncio.open_connection(*self.target)
        except OSError:
            cwriter.close()
            return
        for writer in (cwriter, twriter):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = _Direction(self, creader, twriter, upward=True)
        down = _Direction(self, treader, cwriter, upward=False)
        tasks = [asyncio.ensure_future(c) for c in
                 (up.read_loop(), up.write_loop(), down.read_loop(), down.write_loop())]
        for task in tasks:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)  # cancelled at stop()
        finally:
            for writer in (cwriter, twriter):
                with contextlib.suppress(Exception):
                    writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5.0)


# ------------------------------------------------------------------------- command line


async def _control(relay: Relay, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            words = line.decode().split()
            answer: dict[str, object]
            if not words:
                continue
            verb = words[0].upper()
            if verb == "STATS":
                answer = dict(relay.stats())
            elif verb == "RESET":
                relay.reset()
                answer = dict(relay.stats())
            elif verb == "LATENCY" and len(words) == 2:
                relay.latency = float(words[1]) / 1000
                answer = dict(relay.stats())
            elif verb == "BANDWIDTH" and len(words) == 2:
                relay.bandwidth = float(words[1]) * 1e6 / 8
                answer = dict(relay.stats())
            else:
                answer = {"error": f"unknown command {line!r}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    except asyncio.CancelledError:
        pass  # the relay is shutting down: nothing to answer (and no traceback from asyncio)
    finally:
        writer.close()


async def _main(args: argparse.Namespace) -> None:
    host, _, port = args.target.rpartition(":")
    relay = Relay("127.0.0.1", args.port, host, int(port), latency=args.latency_ms / 1000,
                  bandwidth=args.bandwidth_mbit * 1e6 / 8)
    await relay.start()
    control = await asyncio.start_server(lambda r, w: _control(relay, r, w), "127.0.0.1", 0)
    print(json.dumps({"port": relay.port,
                      "control_port": control.sockets[0].getsockname()[1]}), flush=True)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    # Stop when the parent goes away (stdin closes).
    stdin_reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin_reader), sys.stdin)
    stdin_eof = asyncio.ensure_future(stdin_reader.read())
    waiter = asyncio.ensure_future(done.wait())
    await asyncio.wait({stdin_eof, waiter}, return_when=asyncio.FIRST_COMPLETED)
    stdin_eof.cancel()
    waiter.cancel()
    control.close()
    await relay.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, help="127.0.0.1:PORT to relay to")
    parser.add_argument("--port", type=int, default=0, help="listen port (default: any)")
    parser.add_argument("--latency-ms", type=float, default=25.0, help="each way (default 25)")
    parser.add_argument("--bandwidth-mbit", type=float, default=0.0,
                        help="cap per direction and connection, Mbit/s (default 0: none)")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
