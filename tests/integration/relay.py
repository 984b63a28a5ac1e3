"""A TCP relay between the proxy and a server, for tests: it counts connections and bytes,
and a test can cut it, stall it, or make it cut itself (after N bytes from the server, or when
the proxy sends a given string). Subclassed where a test needs more (test_upstream_pool.py)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class Relay:
    """``host``:``port`` -> target, one pair of pump threads per connection."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.listener = socket.create_server((host, 0))
        self.listener.settimeout(0.2)
        self.port: int = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        self.stalled = threading.Event()  # hold data in both directions
        self.stalled_up = threading.Event()  # hold data from the proxy to the server only
        self.cut_after: int | None = None  # server->client bytes still to pass before a cut
        self.cut_on_upstream: bytes | None = None  # cut instead of passing this to the server
        self.connections = 0
        self.to_client_bytes = 0
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self._threads[0].start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
                self.connections += 1
            for src, dst, down in ((client, server, False), (server, client, True)):
                thread = threading.Thread(target=self._pump, args=(src, dst, down), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while (self.stalled.is_set() or (self.stalled_up.is_set() and not downstream)) \
                        and not self._closed.is_set():
                    time.sleep(0.02)
                if not downstream and self.cut_on_upstream and self.cut_on_upstream in data:
                    self.cut()
                    return
                if not downstream and self._from_proxy(data, src) is None:
                    continue  # answered here, not passed on
                if downstream:
                    with self._lock:
                        self.to_client_bytes += len(data)
                        budget = self.cut_after
                        if budget is not None:
                            self.cut_after = max(0, budget - len(data))
                    if budget is not None and len(data) >= budget:
                        dst.sendall(data[:budget])
                        self.cut()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _from_proxy(self, data: bytes, src: socket.socket) -> bytes | None:
        """Bytes from the proxy on their way to the server; a subclass may answer them itself
        (write to ``src``) and return None to keep them from the server."""
        return data

    def cut(self) -> None:
        """Drop every relayed connection now (new ones are still accepted)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._closed.set()
        self.stalled.clear()
        self.stalled_up.clear()
        with contextlib.suppress(OSError):
            self.listener.close()
        self.cut()
        for thread in self._threads:
            thread.join(2)
