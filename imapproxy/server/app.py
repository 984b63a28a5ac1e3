"""Listeners: bind every configured address, run a Session per client, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import ssl

from ..cache import MessageCache
from ..config import Config, ListenerConfig
from ..observability.admin import AdminServer
from ..observability.metrics import Metrics
from ..upstream.limits import UpstreamLimiter
from ..upstream.pool import UpstreamPool
from .session import Session

log = logging.getLogger(__name__)


def server_tls_context(listener: ListenerConfig) -> ssl.SSLContext | None:
    if listener.tls == "none" or listener.cert_file is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(listener.cert_file),
                        str(listener.key_file) if listener.key_file else None)
    return ctx


class ProxyApp:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.servers: list[asyncio.Server] = []
        self.sessions: set[Session] = set()
        self.cache: MessageCache | None = None
        self.limiter = UpstreamLimiter.from_config(config.upstream)
        self.pool = UpstreamPool.for_upstream(config.upstream, config.limits.max_literal_size,
                                              self.limiter)
        self.metrics = Metrics()
        self.metrics.watch_cache(lambda: self.cache)
        self.pool.on_event = self.metrics.upstream_event
        self.metrics_bound: tuple[str, int] | None = None
        self.admin: AdminServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def bound(self) -> list[tuple[str, int]]:
        """The addresses actually bound (port 0 in the config picks a free port)."""
        out: list[tuple[str, int]] = []
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                out.append((host, port))
        return out

    async def start(self) -> None:
        """Bind every listener; raises OSError naming the listener that failed."""
        try:
            self.cache = MessageCache.from_config(self.config)
        except OSError as exc:
            raise OSError(exc.errno, f"cache.dir {self.config.cache_dir}: "
                                     f"{exc.strerror or exc}") from exc
        await self._start_operator_endpoints()
        for listener in self.config.listeners:
            tls = server_tls_context(listener)
            try:
                server = await asyncio.start_server(
                    functools.partial(self._accept, listener=listener, tls=tls),
                    listener.host, listener.port,
                    ssl=tls if listener.tls == "implicit" else None,
                    reuse_address=True,
                )
            except OSError as exc:
                await self.stop()
                raise OSError(exc.errno, f"listener {listener.bind}: {exc.strerror or exc}") \
                    from exc
            self.servers.append(server)
            log.info("listening on %s (tls=%s)", listener.bind, listener.tls)

    async def _start_operator_endpoints(self) -> None:
        """The metrics endpoint (when configured) and the admin socket (see observability/)."""
        bind = self.config.observability.metrics_bind
        if bind is not None:
            try:
                self.metrics_bound = self.metrics.serve(*bind)
            except OSError as exc:
                raise OSError(exc.errno, f"metrics.bind {bind[0]}:{bind[1]}: "
                                         f"{exc.strerror or exc}") from exc
            log.info("metrics on http://%s:%d/metrics", *self.metrics_bound)
        path = self.config.admin_socket
        if path is not None:
            admin = AdminServer(path, lambda: list(self.sessions))
            if await admin.start():
                self.admin = admin

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      listener: ListenerConfig, tls: ssl.SSLContext | None) -> None:
        session = Session(reader, writer, self.config, listener, tls, self.cache, self.limiter,
                          self.metrics, self.pool)
        self.sessions.add(session)
        try:
            await session.run()
        except asyncio.CancelledError:
            # Shutdown cancelled the session mid-way (e.g. its upstream LOGOUT): not an error,
            # and re-raising makes asyncio's stream callback log a traceback.
            writer.close()
        except Exception:  # a bug in one session must not take the server down
            log.exception("session crashed")
            with contextlib.suppress(Exception):
                writer.close()
        finally:
            self.sessions.discard(session)

    async def stop(self, reason: str = "Server shutting down.") -> None:
        for server in self.servers:
            server.close()
        for session in list(self.sessions):
            session.shutdown(reason)
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5.0)
        self.servers.clear()
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        self.metrics.close()
        await self.pool.close()
        if self.cache is not None:
            self.cache.close()
            self.cache = None


async def serve(config: Config) -> None:
    """Run until SIGTERM/SIGINT. Raises OSError when a listen address cannot be bound."""
    app = ProxyApp(config)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await app.stop()
