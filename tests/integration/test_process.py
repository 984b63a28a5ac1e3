"""The proxy as a real process (``python -m imapproxy serve``): graceful shutdown on SIGTERM,
certificate reload on SIGHUP, a cache that stays consistent across SIGKILL, dropping root
privileges after binding."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imapproxy.cache._fs import tree_size

from .conftest import TIMEOUT, RawClient, status_of
from .relay import Relay
from .test_tls_hardening import der_of, make_ca, served_certificate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class ProxyProcess:
    """``python -m imapproxy serve --config FILE``, its log collected from stderr."""

    def __init__(self, directory: Path, upstream_port: int, *, extra: str = "",
                 listener: str = "", cache_dir: Path | None = None) -> None:
        self.port = free_port()
        self.cache_dir = cache_dir or directory / "cache"
        config = directory / "imapproxy.toml"
        config.write_text(
            f'log_level = "DEBUG"\n{extra}\n'
            f'[upstream]\nurl = "imap://127.0.0.1:{upstream_port}"\ncommand_timeout = 30\n'
            f'[cache]\ndir = "{self.cache_dir}"\n'
            f'[[listener]]\nbind = "127.0.0.1:{self.port}"\n{listener}\n')
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imapproxy", "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        threading.Thread(target=self._collect, daemon=True).start()
        self.wait_log("listening on", f"the proxy did not start: {self.log}")

    def _collect(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_log(self, text: str, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while text not in self.log:
            assert self.process.poll() is None or text in self.log, what
            assert time.monotonic() < deadline, what
            time.sleep(0.02)

    def client(self, **kw: Any) -> RawClient:
        return RawClient("127.0.0.1", self.port, **kw)

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = TIMEOUT) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)


@pytest.fixture
def processes() -> Iterator[list[ProxyProcess]]:
    started: list[ProxyProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
def relay(dovecot: Any) -> Iterator[Relay]:
    relay = Relay((dovecot.host, dovecot.port))
    yield relay
    relay.close()


def login(proxy: ProxyProcess, account: Any) -> RawClient:
    client = proxy.client()
    client.login(account.user, account.password)
    return client


# --- SIGTERM ---------------------------------------------------------------------------------


def test_sigterm_finishes_running_commands_then_says_bye(
        processes: list[ProxyProcess], relay: Relay, account: Any, tmp_path: Path) -> None:
    proxy = ProxyProcess(tmp_path, relay.port, extra="[server]\nshutdown_grace = 8")
    processes.append(proxy)
    idle = login(proxy, account)
    idling = login(proxy, account)
    idling.ok("SELECT INBOX")
    idling.send(b"i1 IDLE\r\n")
    assert idling.read_response().startswith(b"+")
    busy = login(proxy, account)
    relay.stalled_up.set()  # the busy session's command waits upstream
    busy.send(b"b1 SELECT INBOX\r\n")
    time.sleep(0.2)
    proxy.send_signal(signal.SIGTERM)
    # Sessions between commands, and in IDLE, are told at once and closed.
    assert idle.read_line().startswith(b"* BYE Server shutting down")
    assert idle.is_closed()
    assert idling.read_line().startswith(b"* BYE Server shutting down")
    assert idling.is_closed()
    # No new connections.
    time.sleep(0.2)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
    # The running command still completes, then BYE.
    relay.stalled_up.clear()
    _, tagged = busy.read_until_tagged("b1")
    assert status_of(tagged) == b"OK", tagged
    assert busy.read_line().startswith(b"* BYE Server shutting down")
    assert busy.is_closed()
    assert proxy.wait() == 0


def test_sigterm_grace_period_is_bounded(processes: list[ProxyProcess], relay: Relay,
                                         account: Any, tmp_path: Path) -> None:
    proxy = ProxyProcess(tmp_path, relay.port, extra="[server]\nshutdown_grace = 1")
    processes.append(proxy)
    busy = login(proxy, account)
    relay.stalled_up.set()  # and never released: the command cannot finish
    busy.send(b"b1 SELECT INBOX\r\n")
    time.sleep(0.2)
    started = time.monotonic()
    proxy.send_signal(signal.SIGTERM)
    assert busy.read_line().startswith(b"* BYE")
    assert busy.is_closed()
    assert proxy.wait() == 0
    assert time.monotonic() - started < 1 + 6  # grace + the upstream LOGOUT's own bound
    assert "cut at the end of the shutdown grace period" in proxy.log


# --- SIGHUP ----------------------------------------------------------------------------------


def test_sighup_reloads_the_certificate(processes: list[ProxyProcess], dovecot: Any,
                                        account: Any, tmp_path: Path) -> None:
    old, new = make_ca(tmp_path, "old"), make_ca(tmp_path, "new")
    live = (tmp_path / "live.pem", tmp_path / "live.key")
    for src, dst in zip(old, live, strict=True):
        shutil.copy(src, dst)
    proxy = ProxyProcess(tmp_path, dovecot.port, listener=(
        f'tls = "implicit"\ncert_file = "{live[0]}"\nkey_file = "{live[1]}"\n'))
    processes.append(proxy)
    assert served_certificate(proxy.port) == der_of(old[0])
    session = proxy.client(ssl_context=ssl.create_default_context(cafile=str(old[0])),
                           server_hostname="localhost")
    session.login(account.user, account.password)
    for src, dst in zip(new, live, strict=True):
        shutil.copy(src, dst)
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_log("certificate reloaded", "no reload logged")
    assert served_certificate(proxy.port) == der_of(new[0])
    session.ok("SELECT INBOX")
    session.close()


# --- SIGKILL during cache writes -------------------------------------------------------------


def big_message(size: int) -> bytes:
    head = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: big\r\n\r\n"
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
    return head + line * (size // len(line))


def fetch_body(client: RawClient) -> bytes:
    untagged, tagged = client.command("UID FETCH 1 BODY.PEEK[]")
    assert status_of(tagged) == b"OK", tagged
    (response,) = untagged
    return response[response.index(b"}\r\n") + 3:response.rindex(b")")]


@pytest.mark.parametrize("kill_after", [256 * 1024, 4 << 20, 12 << 20])
def test_sigkill_during_a_cache_write_never_serves_a_torn_body(
        processes: list[ProxyProcess], dovecot: Any, account: Any, tmp_path: Path,
        kill_after: int) -> None:
    message = big_message(16 << 20)
    dovecot.append(account.user, account.password, "INBOX", message)
    proxy = ProxyProcess(tmp_path, dovecot.port)
    processes.append(proxy)
    client = login(proxy, account)
    client.ok("SELECT INBOX")
    baseline = tree_size(proxy.cache_dir)
    client.send(b"f1 UID FETCH 1 BODY.PEEK[]\r\n")
    deadline = time.monotonic() + TIMEOUT
    while tree_size(proxy.cache_dir) < baseline + kill_after:
        assert time.monotonic() < deadline, "the cache never grew"
        time.sleep(0.001)
    proxy.process.send_signal(signal.SIGKILL)
    proxy.wait()
    client.close()

    again = ProxyProcess(tmp_path, dovecot.port, cache_dir=proxy.cache_dir)
    processes.append(again)
    client = login(again, account)
    client.ok("SELECT INBOX")
    for _ in range(2):  # from whatever the crash left, then from the cache
        body = fetch_body(client)
        assert len(body) == len(message) and body == message


# --- privileges ------------------------------------------------------------------------------


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # effective uid
    raise AssertionError("no Uid line")


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_root_drops_to_the_configured_user_after_binding(
        processes: list[ProxyProcess], dovecot: Any, account: Any, tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    cache = Path(tempfile.mkdtemp(prefix="imapproxy-priv-"))  # outside root's 0700 tmp_path
    try:
        proxy = ProxyProcess(tmp_path, dovecot.port, cache_dir=cache,
                             extra='[server]\nuser = "nobody"')
        processes.append(proxy)
        assert uid_of(proxy.process.pid) == nobody.pw_uid
        assert "running as user nobody" in proxy.log
        client = login(proxy, account)
        client.ok("SELECT INBOX")
        client.ok("LOGOUT")
        assert cache.stat().st_uid == nobody.pw_uid  # handed over, so it can still write
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_unknown_user_is_an_error_at_start(processes: list[ProxyProcess], dovecot: Any,
                                           tmp_path: Path) -> None:
    proxy = ProxyProcess(tmp_path, dovecot.port, extra='[server]\nuser = "no-such-user-xyz"')
    processes.append(proxy)
    assert proxy.wait() == 2
    assert "error: server.user: no such user 'no-such-user-xyz'" in proxy.log
