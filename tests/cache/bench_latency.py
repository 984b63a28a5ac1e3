"""Latency of the message cache: ``python -m tests.cache.bench_latency [DIR]``.

Not a test (pytest does not collect it). Measures put / get / open+read of 20 KB and 5 MB
entries, the digest check alone, and the async facade (thread pool) against calling the sync
methods on the event loop. The figures in docs/cache.md come from here.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from imapproxy.cache import MailboxCache, MessageCache
from imapproxy.config import CacheConfig

SIZES = {"20 KB": 20_000, "5 MB": 5 * 1024 * 1024}
ROUNDS = {"20 KB": 400, "5 MB": 40}


def timed(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    """(median, 90th percentile) in milliseconds."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)]


def row(label: str, figures: tuple[float, float]) -> None:
    print(f"| {label:<36} | {figures[0]:9.3f} | {figures[1]:6.3f} |")


def bench_size(box: MailboxCache, label: str, size: int) -> None:
    data = os.urandom(size)
    rounds = ROUNDS[label]
    uids = iter(range(1, 10**9))
    row(f"put {label} (new UID)", timed(lambda: box.put(next(uids), data), rounds))
    box.put(999_999, data)
    row(f"get {label} (verified)", timed(lambda: box.get(999_999), rounds))

    def open_read() -> None:
        stream = box.open(999_999)
        assert stream is not None
        with stream:
            for _ in stream.chunks(1 << 20):
                pass

    row(f"open + read all {label} (verified)", timed(open_read, rounds))
    row(f"get {label}, miss", timed(lambda: box.get(888_888), rounds))
    row(f"SHA-256 of {label} alone", timed(lambda: hashlib.sha256(data).digest(), rounds))
    row(f"BLAKE2b of {label} alone", timed(lambda: hashlib.blake2b(data).digest(), rounds))


def main(directory: Path) -> None:
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, cache in {directory}\n")
    print(f"| {'operation':<36} | median ms | p90 ms |")
    print(f"| {'-' * 36} | --------: | -----: |")
    with MessageCache(directory, CacheConfig(max_size=8 << 30)) as cache:
        box = cache.for_user("imap.example.org:993", "bench").mailbox("INBOX", 1)
        for label, size in SIZES.items():
            bench_size(box, label, size)

        async def async_figures() -> None:
            small = os.urandom(20_000)
            await box.aput(1, small)
            times = []
            for _ in range(400):
                start = time.perf_counter()
                await box.aget(1)
                times.append((time.perf_counter() - start) * 1000)
            times.sort()
            row("aget 20 KB (thread pool)", (statistics.median(times), times[360]))
            for uid in range(2, 101):
                await box.aput(uid, small)
            times = []
            for _ in range(40):
                start = time.perf_counter()
                await box.aget_many(range(1, 101))
                times.append((time.perf_counter() - start) * 1000 / 100)
            times.sort()
            row("aget_many 100 x 20 KB, per message", (statistics.median(times), times[36]))
            # How long the event loop is blocked while 5 MB entries are written and read in
            # the pool, against doing the same inline.
            big = os.urandom(5 * 1024 * 1024)
            stalls: list[float] = []
            done = False

            async def ticker() -> None:
                last = time.perf_counter()
                while not done:
                    await asyncio.sleep(0.001)
                    now = time.perf_counter()
                    stalls.append((now - last) * 1000 - 1)
                    last = now

            task = asyncio.create_task(ticker())
            for uid in range(100, 120):
                await box.aput(uid, big)
                await box.aget(uid)
            done = True
            await task
            print(f"\nevent loop: longest stall {max(stalls):.2f} ms while 20 x 5 MB "
                  "were put and got through the thread pool")
            stalls.clear()
            done = False
            task = asyncio.create_task(ticker())
            await asyncio.sleep(0.01)
            for uid in range(200, 220):
                box.put(uid, big)
                box.get(uid)
                await asyncio.sleep(0)
            done = True
            await task
            print(f"event loop: longest stall {max(stalls):.2f} ms doing the same inline")

        asyncio.run(async_figures())


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="imapproxy-bench-") as tmp:
            main(Path(tmp))
