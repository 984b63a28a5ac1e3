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
from .admission import admit, deferred_tls
from .filter_hooks import Filtering
from .guard import Guard, client_ip
from .privileges import check_startup_permissions, drop_privileges
from .proxied_tls import ProxiedTlsServer
from .session import Session
from .shutdown import drain_sessions
from .tls import TlsReloader

log = logging.getLogger(__name__)


class ProxyApp:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.servers: list[asyncio.Server | ProxiedTlsServer] = []
        self.sessions: set[Session] = set()
        self.cache: MessageCache | None = None
        self.limiter = UpstreamLimiter.from_config(config.upstream)
        self.guard = Guard(config)
        self.tls = TlsReloader()
        self.pool = UpstreamPool.for_upstream(config.upstream, config.limits.max_literal_size,
                                              self.limiter)
        self.metrics = Metrics()
        # Built once: the filters, the in-memory variants.
        self.filtering = Filtering.from_config(config, self.metrics.filter_run)
        self.metrics.watch_cache(lambda: self.cache)
        self.pool.on_event = self.metrics.upstream_event
        self.guard.on_event = self.metrics.guard_event
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
        check_startup_permissions(self.config)
        try:
            self.cache = MessageCache.from_config(self.config)
        except OSError as exc:
            raise OSError(exc.errno, f"cache.dir {self.config.cache_dir}: "
                                     f"{exc.strerror or exc}") from exc
        await self._start_operator_endpoints()
        for listener in self.config.listeners:
            tls = self.tls.context_for(listener)
            try:
                server = await self._listen(listener, tls)
            except OSError as exc:
                await self.stop()
                raise OSError(exc.errno, f"listener {listener.bind}: {exc.strerror or exc}") \
                    from exc
            self.servers.append(server)
            log.info("listening on %s (tls=%s)", listener.bind, listener.tls)

    async def _listen(self, listener: ListenerConfig,
                      tls: ssl.SSLContext | None) -> asyncio.Server | ProxiedTlsServer:
        if tls is not None and deferred_tls(listener):
            proxied = ProxiedTlsServer(listener, tls, functools.partial(
                self._accept, listener=listener, tls=tls))
            await proxied.start()
            return proxied
        return await asyncio.start_server(
            functools.partial(self._accept, listener=listener, tls=tls),
            listener.host, listener.port,
            ssl=tls if listener.tls == "implicit" else None, reuse_address=True)

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
            admin = AdminServer(path, lambda: list(self.sessions), self.pool.forget)
            if await admin.start():
                self.admin = admin

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      known_peer: object = None, *, listener: ListenerConfig,
                      tls: ssl.SSLContext | None) -> None:
        peer = await admit(reader, writer, listener, self.guard, known_peer)
        if peer is None:
            return
        session = Session(reader, writer, self.config, listener, tls, self.cache, self.limiter,
                          self.metrics, self.pool, self.filtering, guard=self.guard,
                          peer=peer)
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
            self.guard.limits.close(client_ip(peer), session.user or None)

    async def stop(self, reason: str = "Server shutting down.",
                   grace: float | None = None) -> None:
        """Stop accepting, say BYE to everyone, give running commands ``grace`` seconds
        (default: server.shutdown_grace) to finish."""
        for server in self.servers:
            server.close()
        late = await drain_sessions(self.sessions, reason, self.config.server.shutdown_grace
                                    if grace is None else grace)
        if late:
            log.warning("%d session(s) cut at the end of the shutdown grace period", late)
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
    if config.server.user:
        try:
            drop_privileges(config.server.user, config.server.group, [config.cache_dir])
        except OSError:
            await app.stop()
            raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, app.tls.reload)
    await stop.wait()
    log.info("shutting down")
    await app.stop()
