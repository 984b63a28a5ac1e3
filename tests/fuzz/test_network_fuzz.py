"""Network fuzzing: hostile command streams against a running proxy (its own process, the
test Dovecot behind it) for a bounded time (IMAPPROXY_FUZZ_SECONDS, default 20), while a
well-behaved session and fresh canary sessions of other users check every answer.

Asserted: the proxy process never dies and never logs a crashed session; the well-behaved
session and every canary get exactly their own mail throughout; the proxy's resident memory
stays bounded; no byte any session receives holds another user's marker (tests/marked_mail.py).
The random streams come from IMAPPROXY_FUZZ_SEED (printed on failure) to replay a run.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imapproxy.devserver import DovecotServer
from tests.conftest import Account, make_account
from tests.integration.conftest import RawClient, quote, status_of
from tests.marked_mail import MarkerScanner, ScannedClient, marked_message, new_marker

from .budget import NETWORK_SECONDS
from .hostile import HostileStreams, Segment
from .proxy_process import ProxyProcess

MESSAGES = 4
FUZZ_WORKERS = 3
MAX_RSS_GROWTH = 150 * 1024 * 1024  # bytes over the warmed-up proxy
TRICKLE_BYTES = 120  # of a slow-loris segment sent byte by byte, the rest at once
SOCKET_TIMEOUT = 3.0
MAX_LATENCY = 8.0  # seconds for a well-behaved round or a canary: beyond, the loop stalled
_BODY = re.compile(rb"BODY\[\] \{(\d+)\}\r\n")


@dataclass
class User:
    account: Account
    marker: bytes
    bodies: list[bytes] = field(default_factory=list)  # BODY[] of INBOX 1..n, via Dovecot


@dataclass
class Tally:
    """What the workers saw; lists are appended to from several threads (atomic in CPython)."""

    fuzz_sessions: int = 0
    fuzz_bytes_sent: int = 0
    good_rounds: int = 0
    canaries: int = 0
    slowest: float = 0.0  # seconds, of one well-behaved round or one canary session
    failures: list[str] = field(default_factory=list)
    scanners: list[MarkerScanner] = field(default_factory=list)


def seeded_user(dovecot: DovecotServer) -> User:
    user = User(make_account(dovecot), new_marker())
    with RawClient(dovecot.host, dovecot.port) as direct:
        direct.login(user.account.user, user.account.password)
        for i in range(MESSAGES):
            msg = marked_message(user.marker, i)
            direct.send(b"a%d APPEND INBOX {%d+}\r\n" % (i, len(msg)) + msg + b"\r\n")
            assert status_of(direct.read_until_tagged(f"a{i}")[1]) == b"OK"
        direct.ok("EXAMINE INBOX")
        user.bodies = bodies_of(direct.ok("FETCH 1:* (BODY.PEEK[])"))
    assert len(user.bodies) == MESSAGES
    return user


def bodies_of(untagged: list[bytes]) -> list[bytes]:
    out = []
    for response in untagged:
        m = _BODY.search(response)
        if m:
            out.append(response[m.end():m.end() + int(m.group(1))])
    return out


# --- the workers ----------------------------------------------------------------------------


def well_behaved(proxy: ProxyProcess, user: User, others: list[bytes], tally: Tally,
                 stop: threading.Event) -> None:
    """One long session reading its mail again and again; every answer must be its own."""
    scanner = MarkerScanner(others)
    tally.scanners.append(scanner)
    try:
        with ScannedClient(proxy.host, proxy.port, scanner, SOCKET_TIMEOUT * 3) as client:
            client.login(user.account.user, user.account.password)
            client.ok("SELECT INBOX")
            while not stop.is_set():
                started = time.monotonic()
                got = bodies_of(client.ok("FETCH 1:* (BODY.PEEK[] BODYSTRUCTURE ENVELOPE)"))
                if got != user.bodies:
                    tally.failures.append(f"well-behaved session got {len(got)} wrong bodies")
                    return
                client.ok("UID FETCH 1:* (BINARY.PEEK[3] RFC822.SIZE)")
                client.ok("NOOP")
                tally.slowest = max(tally.slowest, time.monotonic() - started)
                tally.good_rounds += 1
                stop.wait(0.05)  # leave the CPU to the fuzzers
    except (OSError, EOFError, AssertionError) as exc:
        tally.failures.append(f"well-behaved session failed: {exc!r}")


def canaries(proxy: ProxyProcess, user: User, others: list[bytes], tally: Tally,
             stop: threading.Event) -> None:
    """A fresh session now and then: it must log in and read its own mail."""
    while not stop.wait(0.5):
        scanner = MarkerScanner(others)
        tally.scanners.append(scanner)
        started = time.monotonic()
        try:
            with ScannedClient(proxy.host, proxy.port, scanner, SOCKET_TIMEOUT * 3) as client:
                client.login(user.account.user, user.account.password)
                client.ok("EXAMINE INBOX")
                got = bodies_of(client.ok("FETCH 1:* (BODY.PEEK[])"))
                client.ok("LOGOUT")
        except (OSError, EOFError, AssertionError) as exc:
            tally.failures.append(f"canary failed: {exc!r}")
            return
        if got != user.bodies:
            tally.failures.append("canary got wrong bodies")
            return
        tally.slowest = max(tally.slowest, time.monotonic() - started)
        tally.canaries += 1


def fuzzer(proxy: ProxyProcess, user: User, forbidden_when_in: list[bytes],
           forbidden_before: list[bytes], seed: int, tally: Tally,
           stop: threading.Event) -> None:
    """Hostile sessions, one after another: some stay unauthenticated, most log in as
    ``user`` and select INBOX first; each sends a mutated stream, reads what comes back."""
    rng = random.Random(seed)
    streams = HostileStreams(rng)
    while not stop.is_set():
        authenticated = rng.random() < 0.75
        scanner = MarkerScanner(forbidden_when_in if authenticated else forbidden_before,
                                own=user.marker if authenticated else None)
        tally.scanners.append(scanner)
        try:
            with fuzz_connection(proxy) as sock:
                drain(sock, scanner, 0.05)
                if authenticated:
                    login = (f"f0 LOGIN {quote(user.account.user)} "
                             f"{quote(user.account.password)}\r\nf00 SELECT INBOX\r\n")
                    sock.sendall(login.encode())
                    drain(sock, scanner, 0.1)
                for segment in streams.stream(authenticated):
                    if stop.is_set():
                        break
                    send(sock, segment, scanner, stop)
                    tally.fuzz_bytes_sent += len(segment.data)
                drain(sock, scanner, 0.1)
        except OSError:
            pass  # the proxy may close a hostile connection; others must not notice
        tally.fuzz_sessions += 1


def slow_loris(proxy: ProxyProcess, forbidden: list[bytes], tally: Tally,
               stop: threading.Event) -> None:
    """Connections that never finish a line (or a literal), a byte every few tenths of a
    second: they must cost the proxy nothing that others notice. One the proxy ends (its
    pre-auth timeout, in long runs) starts over."""
    trickles = [b"s1 LOGIN " + b"a" * 10_000, b"s2 APPEND INBOX {500+}\r\n" + b"b" * 500,
                b"s3 ID (" + b"(" * 5000, b"\0" * 10_000]
    while not stop.is_set():
        scanners = [MarkerScanner(forbidden) for _ in trickles]
        tally.scanners.extend(scanners)
        with contextlib.ExitStack() as stack:
            try:
                socks = [stack.enter_context(fuzz_connection(proxy)) for _ in trickles]
                for sent in range(10_000):
                    if stop.wait(0.2):
                        return
                    for sock, data, scanner in zip(socks, trickles, scanners, strict=True):
                        sock.sendall(data[sent:sent + 1])
                        drain(sock, scanner, 0.0)
            except OSError:
                continue


@contextlib.contextmanager
def fuzz_connection(proxy: ProxyProcess) -> Iterator[socket.socket]:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=SOCKET_TIMEOUT)
    try:
        yield sock
    finally:
        sock.close()


def send(sock: socket.socket, segment: Segment, scanner: MarkerScanner,
         stop: threading.Event) -> None:
    data = segment.data
    if segment.trickle:
        for i in range(min(TRICKLE_BYTES, len(data))):
            if stop.is_set():
                return
            sock.sendall(data[i:i + 1])
            time.sleep(0.01)
        data = data[TRICKLE_BYTES:]
    for i in range(0, len(data), 16384):  # read between chunks: never both sides blocked
        sock.sendall(data[i:i + 16384])
        drain(sock, scanner, 0.0)
    drain(sock, scanner, 0.2 if segment.wait else 0.02)


def drain(sock: socket.socket, scanner: MarkerScanner, quiet: float) -> None:
    """Read what has arrived, until nothing more comes for ``quiet`` seconds (bounded)."""
    deadline = time.monotonic() + 5.0
    sock.settimeout(max(quiet, 0.001))
    try:
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                return
            scanner.feed(data)
            if not data:
                return
    finally:
        sock.settimeout(SOCKET_TIMEOUT)


# --- the test --------------------------------------------------------------------------------


@pytest.fixture
def proxy_process(dovecot: DovecotServer, tmp_path: Path) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess(dovecot.host, dovecot.port, tmp_path)
    try:
        yield proxy
    finally:
        proxy.stop()


def test_network_fuzz(dovecot: DovecotServer, proxy_process: ProxyProcess) -> None:
    seed = int(os.environ.get("IMAPPROXY_FUZZ_SEED", str(random.randrange(2**32))))
    good, canary, target = (seeded_user(dovecot) for _ in range(3))
    markers = [good.marker, canary.marker, target.marker]
    tally = Tally()
    stop = threading.Event()
    workers: list[threading.Thread] = [
        threading.Thread(target=well_behaved, args=(
            proxy_process, good, [canary.marker, target.marker], tally, stop)),
        threading.Thread(target=canaries, args=(
            proxy_process, canary, [good.marker, target.marker], tally, stop)),
    ]
    workers.append(threading.Thread(target=slow_loris, args=(proxy_process, markers, tally,
                                                             stop)))
    workers += [threading.Thread(target=fuzzer, args=(
        proxy_process, target, [good.marker, canary.marker], markers, seed + n, tally, stop))
        for n in range(FUZZ_WORKERS)]
    time.sleep(0.2)
    baseline = proxy_process.rss()
    peak = baseline
    started = time.monotonic()
    for worker in workers:
        worker.start()
    try:
        while time.monotonic() - started < NETWORK_SECONDS and not tally.failures \
                and proxy_process.alive:
            time.sleep(0.25)
            peak = max(peak, proxy_process.rss())
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    reading = sum(scanner.saw_own for scanner in tally.scanners)
    context = (f"seed={seed} fuzz sessions={tally.fuzz_sessions} (read mail: {reading}) "
               f"bytes sent={tally.fuzz_bytes_sent} good rounds={tally.good_rounds} "
               f"canaries={tally.canaries} slowest={tally.slowest:.2f} s rss {baseline >> 20} -> peak {peak >> 20} MiB")
    print(context)
    assert not any(w.is_alive() for w in workers), f"a worker hung; {context}"
    assert proxy_process.alive, f"proxy died; {context}\n{proxy_process.log_text()[-3000:]}"
    assert not tally.failures, f"{tally.failures}; {context}"
    crashes = proxy_process.crash_lines()
    assert not crashes, f"{crashes[:5]}; {context}"
    leaks = [leak for scanner in tally.scanners for leak in scanner.leaks]
    assert not leaks, f"another user's data was served: {leaks[:3]!r}; {context}"
    assert peak - baseline < MAX_RSS_GROWTH, context
    assert tally.slowest < MAX_LATENCY, f"a stalled proxy; {context}"
    assert tally.good_rounds > 0 and tally.canaries > 0 and reading > 0, context
    # And after it all, a fresh session still works.
    with RawClient(proxy_process.host, proxy_process.port) as after:
        after.login(canary.account.user, canary.account.password)
        after.ok("EXAMINE INBOX")
        assert bodies_of(after.ok("FETCH 1:* (BODY.PEEK[])")) == canary.bodies


