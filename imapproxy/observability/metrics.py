"""Prometheus metrics, on a registry of the app's own (several apps in one test process must
not share counters), served over HTTP only when ``[metrics] bind`` is set.

Call sites use the small methods of :class:`Metrics`, never prometheus objects, so the names
and labels live here, in one place.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..cache import MessageCache

PREFIX = "imapproxy"
# Round trips to a far server: 1 ms .. 60 s.
RTT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions = Gauge(f"{PREFIX}_sessions_open", "Client sessions open now", registry=r)
        self.sessions_total = Counter(f"{PREFIX}_sessions", "Client sessions started",
                                      registry=r)
        self.logins = Counter(f"{PREFIX}_logins", "Client logins by result", ["result"],
                              registry=r)
        self.commands = Counter(f"{PREFIX}_commands", "Client commands by name and result",
                                ["command", "result"], registry=r)
        self.upstream_rtt = Histogram(f"{PREFIX}_upstream_round_trip_seconds",
                                      "Upstream command time, sent to tagged answer",
                                      ["command"], buckets=RTT_BUCKETS, registry=r)
        self.upstream_open = Gauge(f"{PREFIX}_upstream_connections",
                                   "Upstream connections open now", registry=r)
        self.upstream_events = Counter(f"{PREFIX}_upstream_connection_events",
                                       "Upstream connections opened, reused, queued, refused",
                                       ["event"], registry=r)
        self.prefetched = Counter(f"{PREFIX}_prefetched_bodies",
                                  "Bodies fetched ahead of the client", registry=r)
        self.prefetch_used = Counter(f"{PREFIX}_prefetch_hits",
                                     "Client reads answered by a prefetched body", registry=r)
        self.guard_events = Counter(f"{PREFIX}_guard_events",
                                    "Connections and logins refused, auth penalties imposed",
                                    ["event"], registry=r)
        self.filter_runs = Counter(f"{PREFIX}_filter_runs", "Message filter runs by result",
                                   ["filter", "result"], registry=r)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # --- call sites ---------------------------------------------------------------------

    def session_started(self) -> None:
        self.sessions.inc()
        self.sessions_total.inc()

    def session_ended(self) -> None:
        self.sessions.dec()

    def login(self, ok: bool) -> None:
        self.logins.labels("ok" if ok else "failed").inc()

    def command(self, name: str, result: str) -> None:
        self.commands.labels(name, result).inc()

    def round_trip(self, name: str, seconds: float) -> None:
        self.upstream_rtt.labels(name).observe(seconds)

    def upstream_event(self, event: str) -> None:
        """``opened``, ``closed``, ``reused``, ``queued``, ``refused``."""
        self.upstream_events.labels(event).inc()
        if event == "opened":
            self.upstream_open.inc()
        elif event == "closed":
            self.upstream_open.dec()

    def prefetched_bodies(self, count: int) -> None:
        self.prefetched.inc(count)

    def prefetch_hits(self, count: int) -> None:
        """Client reads answered by a body this session prefetched."""
        self.prefetch_used.inc(count)

    def guard_event(self, event: str) -> None:
        """``connection_refused``, ``login_refused``, ``penalty``, ``known_wrong_password``."""
        self.guard_events.labels(event).inc()

    def filter_run(self, name: str, ok: bool) -> None:
        self.filter_runs.labels(name, "ok" if ok else "failed").inc()

    def watch_cache(self, cache: Callable[[], MessageCache | None]) -> None:
        """Cache figures read from the cache's own counters at scrape time."""
        self.registry.register(_CacheCollector(cache))

    # --- the endpoint -------------------------------------------------------------------

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Serve /metrics on host:port (a thread of prometheus_client); the address bound."""
        self._server, self._thread = start_http_server(port, host, registry=self.registry)
        bound = self._server.server_address
        return str(bound[0]), int(bound[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _CacheCollector(Collector):
    def __init__(self, cache: Callable[[], MessageCache | None]) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Any]:
        cache = self._cache()
        if cache is None:
            return
        stats = cache.stats()
        yield GaugeMetricFamily(f"{PREFIX}_cache_entries", "Cached messages",
                                value=stats.entries)
        yield GaugeMetricFamily(f"{PREFIX}_cache_bytes", "Bytes of cached messages",
                                value=stats.bytes)
        yield GaugeMetricFamily(f"{PREFIX}_cache_memory_entries",
                                "Messages also held in memory (the hot tier)",
                                value=len(cache.hot))
        yield GaugeMetricFamily(f"{PREFIX}_cache_memory_bytes",
                                "Bytes held in the hot tier (messages and structures)",
                                value=cache.hot.size)
        for name, value in (("hits", stats.hits), ("misses", stats.misses),
                            ("corrupt", stats.corrupt),
                            ("evictions", cache.evictions)):
            yield CounterMetricFamily(f"{PREFIX}_cache_{name}", f"Cache {name}", value=value)
