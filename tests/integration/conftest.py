"""Fixtures for integration tests: the proxy running in a background thread in front of the
test Dovecot (``dovecot`` / ``account`` / ``imap_direct`` come from tests/conftest.py), and a
small raw-socket IMAP client for byte-level tests.

Every socket has a timeout (``TIMEOUT``): a test that would hang fails instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import imaplib
import itertools
import re
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import pytest

from imapproxy.config import Config, LimitsConfig, ListenerConfig, UpstreamConfig
from imapproxy.devserver import DovecotServer
from imapproxy.hardening_config import AuthPenaltyConfig
from imapproxy.server.app import ProxyApp
from tests.conftest import Account, make_account

CACHE_PREFIX = "imapproxy-test-cache-"  # a fresh cache directory per proxy, removed at stop
TIMEOUT = 10.0  # seconds, for every client socket and every wait on the proxy thread


# --- the proxy in a thread -------------------------------------------------------------------


class RunningProxy:
    """A ProxyApp on its own event loop in a daemon thread.

    ``host``/``port`` are the first listener's bound address; ``addresses`` all of them.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="imapproxy-test",
                                       daemon=True)
        self.thread.start()
        self.app = ProxyApp(config)
        try:
            self.call(self.app.start())
        except BaseException:
            self._close_loop()
            raise
        self.addresses: list[tuple[str, int]] = self.app.bound
        self.host, self.port = self.addresses[0]
        self._stopped = False
        # At stop, how long sessions get to finish (upstream LOGOUT) before being cancelled.
        self.drain_timeout = 6.0

    def call(self, coro: Any, timeout: float = TIMEOUT) -> Any:
        """Run a coroutine on the proxy's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def session_count(self) -> int:
        async def count() -> int:
            return len(self.app.sessions)
        return int(self.call(count()))

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self.call(self.app.stop(), timeout=15)
            self.call(self._drain_tasks(), timeout=15)
        finally:
            self._close_loop()
            if self.config.cache_dir.name.startswith(CACHE_PREFIX):
                shutil.rmtree(self.config.cache_dir, ignore_errors=True)

    async def _drain_tasks(self) -> None:
        """Let the sessions finish (upstream LOGOUT, closing); cancel what is left."""
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.drain_timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        await asyncio.sleep(0.05)  # let transports run their connection_lost callbacks

    def _close_loop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.loop.shutdown_asyncgens(),
                                             self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


def make_config(upstream_host: str, upstream_port: int, *,
                listeners: tuple[ListenerConfig, ...] | None = None,
                limits: LimitsConfig | None = None,
                upstream: dict[str, Any] | None = None,
                **limit_overrides: Any) -> Config:
    """A Config for tests: one plain listener on 127.0.0.1 port 0 unless ``listeners`` is
    given; ``max_line_length=...`` etc. go into the limits."""
    upstream_fields: dict[str, Any] = {"connect_timeout": 5.0, "command_timeout": 30.0,
                                       **(upstream or {})}
    up = UpstreamConfig(url=f"imap://{upstream_host}:{upstream_port}", host=upstream_host,
                        port=upstream_port, security="plain", **upstream_fields)
    if limits is None:
        limits = LimitsConfig(preauth_timeout=30.0, idle_timeout=60.0)
    if limit_overrides:
        limits = dataclasses.replace(limits, **limit_overrides)
    return Config(
        upstream=up,
        listeners=listeners or (ListenerConfig(host="127.0.0.1", port=0),),
        cache_dir=Path(tempfile.mkdtemp(prefix=CACHE_PREFIX)),
        limits=limits,
        log_level="DEBUG",
        # Tests that fail logins on purpose must not wait out the real penalty (2..15 s).
        auth_penalty=AuthPenaltyConfig(initial_delay=0.05, max_delay=0.2),
    )


ProxyFactory = Callable[..., RunningProxy]


@pytest.fixture
def proxy_factory(dovecot: Any) -> Iterator[ProxyFactory]:
    """``proxy_factory(**overrides)``: start a proxy with a special config; stopped at the end
    of the test. Overrides: ``upstream_host``/``upstream_port`` (default: the test Dovecot),
    ``listeners=(ListenerConfig(...),)``, ``upstream={...}`` for UpstreamConfig fields, and
    any LimitsConfig field (``max_literal_size=...``); ``config_fields={...}`` replaces
    fields of the whole Config (observability, filter_rules...)."""
    started: list[RunningProxy] = []

    def factory(*, upstream_host: str | None = None, upstream_port: int | None = None,
                config_fields: dict[str, Any] | None = None,
                **overrides: Any) -> RunningProxy:
        config = make_config(upstream_host or dovecot.host,
                             upstream_port if upstream_port is not None else dovecot.port,
                             **overrides)
        config = dataclasses.replace(config, **(config_fields or {}))
        running = RunningProxy(config)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop()


@pytest.fixture
def proxy(proxy_factory: ProxyFactory) -> RunningProxy:
    """The proxy with a plain loopback listener in front of the test Dovecot."""
    return proxy_factory()


# --- accounts --------------------------------------------------------------------------------


@pytest.fixture
def second_account(dovecot: Any) -> Account:
    """Another fresh Dovecot user (for tests needing two accounts with the same content)."""
    return make_account(dovecot)


def imap_login(host: str, port: int, user: str, password: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4(host, port, timeout=TIMEOUT)
    client.login(user, password)
    return client


@pytest.fixture
def imap_proxy(proxy: RunningProxy, account: Any) -> Iterator[imaplib.IMAP4]:
    """imaplib logged in through the proxy as ``account``."""
    client = imap_login(proxy.host, proxy.port, account.user, account.password)
    yield client
    with contextlib.suppress(Exception):
        client.logout()


# --- mail ------------------------------------------------------------------------------------

try:  # tests/ is either a package or just on sys.path
    from tests.mailgen import messages, seed_mailbox
except ImportError:  # pragma: no cover
    from mailgen import messages, seed_mailbox  # type: ignore[no-redef]  # noqa: F401


# --- a raw-socket client ---------------------------------------------------------------------

_LITERAL_END = re.compile(rb"\{(\d+)\+?\}\r\n\Z")
TIMING = re.compile(rb" ?\(\d+\.\d+ \+ \d+\.\d+( \+ \d+\.\d+)? secs\)\.?")


class RawClient:
    """Bytes in, bytes out. ``read_response()`` returns one whole server response (a line
    plus any literals it announces). Every read is bounded by the socket timeout."""

    def __init__(self, host: str, port: int, *, timeout: float = TIMEOUT,
                 ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None,
                 read_greeting: bool = True) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname)
        self.sock: socket.socket = sock
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.greeting = self.read_response() if read_greeting else b""
        self._tags = itertools.count(1)

    def starttls(self, context: ssl.SSLContext, server_hostname: str | None = None) -> None:
        """Wrap the socket in TLS (after the server's OK to STARTTLS). Bytes already read
        and not consumed would be plaintext the server sent after its OK: there must be none."""
        assert not self.buf, f"plaintext after the STARTTLS OK: {bytes(self.buf)!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    def new_tag(self) -> str:
        return f"t{next(self._tags)}"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_line(self) -> bytes:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[:end + 1])
                del self.buf[:end + 1]
                return line
            if not self._fill():
                raise EOFError(f"connection closed; unread: {bytes(self.buf)[:200]!r}")

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed inside a literal")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_response(self) -> bytes:
        out = bytearray()
        while True:
            line = self.read_line()
            out += line
            m = _LITERAL_END.search(line)
            if m is None:
                return bytes(out)
            out += self.read_exact(int(m.group(1)))

    def read_until_tagged(self, tag: str) -> tuple[list[bytes], bytes]:
        """(untagged and continuation responses, the tagged line)."""
        untagged: list[bytes] = []
        prefix = tag.encode() + b" "
        while True:
            response = self.read_response()
            if response.startswith(prefix):
                return untagged, response
            untagged.append(response)

    def command(self, text: bytes | str, tag: str | None = None) -> tuple[list[bytes], bytes]:
        """Send ``tag text\\r\\n`` (no synchronising literals) and read up to the tagged line."""
        tag = tag or self.new_tag()
        if isinstance(text, str):
            text = text.encode()
        self.send(tag.encode() + b" " + text + b"\r\n")
        return self.read_until_tagged(tag)

    def ok(self, text: bytes | str) -> list[bytes]:
        """A command that must succeed; returns its untagged responses."""
        untagged, tagged = self.command(text)
        status = tagged.split(b" ", 2)[1]
        assert status == b"OK", (text, tagged, untagged)
        return untagged

    def login(self, user: str, password: str) -> None:
        self.ok(f"LOGIN {quote(user)} {quote(password)}")

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within ``timeout`` (after what is
        already buffered)."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except TimeoutError:
            return False
        except OSError:
            return True
        finally:
            with contextlib.suppress(OSError):
                self.sock.settimeout(old)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def status_of(tagged: bytes) -> bytes:
    """``OK`` / ``NO`` / ``BAD`` of a tagged line."""
    return tagged.split(b" ", 2)[1].upper()


def code_of(line: bytes) -> bytes | None:
    """The response code name of a status line (``TOOBIG``), if any."""
    m = re.match(rb"\S+ \S+ \[([^\] ]+)", line)
    return m.group(1).upper() if m else None


@pytest.fixture
def raw_factory() -> Iterator[Callable[..., RawClient]]:
    """``raw_factory(host, port, **kw)``: RawClients closed at the end of the test."""
    clients: list[RawClient] = []

    def factory(host: str, port: int, **kw: Any) -> RawClient:
        client = RawClient(host, port, **kw)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def raw_proxy(proxy: RunningProxy, raw_factory: Callable[..., RawClient]) -> RawClient:
    """A raw connection to the proxy, not logged in."""
    return raw_factory(proxy.host, proxy.port)


@pytest.fixture
def raw_proxy_login(raw_proxy: RawClient, account: Any) -> RawClient:
    """A raw connection to the proxy, logged in as ``account``."""
    raw_proxy.login(account.user, account.password)
    return raw_proxy


@pytest.fixture
def streamed_uids(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """UIDs of the FETCH answers the proxy streams from a cache file, in order."""
    from imapproxy.server.fetch import ContentFetch

    seen: list[int] = []
    original = ContentFetch._stream_response

    async def spy(self: ContentFetch, row: Any, *rest: Any) -> None:
        seen.append(row.uid)
        await original(self, row, *rest)

    monkeypatch.setattr(ContentFetch, "_stream_response", spy)
    return seen


@pytest.fixture(scope="session")
def tls_dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot with implicit TLS and STARTTLS (its own self-signed CA), user tlsuser /
    tlspass: the upstream of the upstream-TLS tests."""
    server = DovecotServer(tmp_path_factory.mktemp("tls-dovecot"), tls=True)
    server.start()
    server.add_user("tlsuser", "tlspass")
    yield server
    server.stop()
