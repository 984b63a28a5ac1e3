"""FETCH benchmark: imapproxy against a real Dovecot, with and without a slow link.

    python bench/bench_fetch.py                      # full run: 2,000 messages (~100 s)
    python bench/bench_fetch.py --messages 200       # quick run (~20 s)
    python bench/bench_fetch.py --json out.json --profile

What runs (all on 127.0.0.1, in a fresh directory under /tmp, removed at the end):

- a Dovecot (imapproxy.devserver) with one user: INBOX holds ``--messages`` messages from
  bench/corpus.py (~20 KB mean, a few of 2-4 MB), appended over one raw connection with
  LITERAL+ and 64 commands in flight; a mailbox ``Big`` holds one ``--big-mb`` message;
- bench/relay.py in its own process, between its clients and Dovecot: ``--latency-ms`` each
  way (default 25, so a 50 ms round trip) and an optional ``--bandwidth-mbit`` cap;
- the proxy as a subprocess, ``python -m imapproxy serve`` (what is deployed, and its memory
  is its own), one per scenario, each with a fresh cache directory; upstream either Dovecot
  itself or the relay;
- bench/client.py, a raw-socket client, in this process. A measurement times the FETCH
  command(s) only, after LOGIN and SELECT.

Scenarios: bulk = one ``FETCH 1:* BODY.PEEK[]``; naive = one ``UID FETCH n BODY.PEEK[]`` per
message in UID order, waiting for each answer. Naive runs over the slow link stop after
``--naive-budget`` seconds; the full-mailbox time is then extrapolated (per-message time of
the part done, plus the remaining bytes at the link's rate; see ``extrapolate``) and marked.
Warm figures are the median of ``--repeat`` runs. Every body a client receives is compared
with what was appended.

Targets (see docs/performance.md): warm proxy <= 1.2x direct; cold proxy over the link >= 20x
faster than a naive direct client over the same link; warm over the link <= 1.1x warm without
latency, with < 1% of the mailbox crossing the link; peak RSS < 150 MB while ``--clients``
clients fetch the ``--big-mb`` message at once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import corpus
from client import Client, FetchResult

from imapproxy.devserver import DovecotServer, find_dovecot

USER, PASSWORD = "bench", "bench-password"
HOST = "127.0.0.1"


# ------------------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_greeting(port: int, proc: subprocess.Popen[bytes], what: str, log: Path,
                  timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 1.0) as s:
            s.settimeout(2.0)
            if s.recv(100).startswith(b"* OK"):
                return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise RuntimeError(f"{what} did not start (exit {proc.poll()}):\n{tail}")


class RelayProcess:
    """bench/relay.py in a subprocess, driven through its control port."""

    def __init__(self, target_port: int, latency_ms: float, bandwidth_mbit: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "relay.py"), "--target", f"{HOST}:{target_port}",
             "--latency-ms", str(latency_ms), "--bandwidth-mbit", str(bandwidth_mbit)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.port: int = info["port"]
        self.control = socket.create_connection((HOST, info["control_port"]), 10.0)
        self.control_file = self.control.makefile("rb")

    def ask(self, line: str) -> dict[str, Any]:
        self.control.sendall(line.encode() + b"\n")
        answer: dict[str, Any] = json.loads(self.control_file.readline())
        return answer

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.control.close()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ProxyProcess:
    """``python -m imapproxy serve`` with a fresh (or given) cache directory."""

    def __init__(self, work: Path, name: str, upstream_port: int, *,
                 cache_dir: Path | None = None, profile: Path | None = None,
                 config: str | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.cache_dir = cache_dir or work / f"cache-{name}"
        self.log = work / f"proxy-{name}.log"
        prefix = [sys.executable]
        if profile is not None:
            prefix += ["-m", "cProfile", "-o", str(profile)]
        cmd = prefix + ["-m", "imapproxy", "serve", "--listen", f"{HOST}:{self.port}",
                        "--upstream", f"imap://{HOST}:{upstream_port}",
                        "--cache-dir", str(self.cache_dir), "--log-level", "WARNING"]
        if config is not None:  # TOML for settings without a flag; the flags above still win
            (work / f"proxy-{name}.toml").write_text(config)
            cmd += ["--config", str(work / f"proxy-{name}.toml")]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log)
        wait_greeting(self.port, self.proc, f"proxy {name}", self.log)

    def status(self, field: str) -> int:
        """A /proc/PID/status memory field (VmRSS, VmHWM) in bytes."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
        return int(m.group(1)) * 1024 if m else 0

    def cpu_seconds(self) -> float:
        """User + system CPU time of the proxy process and its reaped children so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(int(f) for f in fields[11:15]) / ticks

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (Linux >= 4.0: clear_refs 5)."""
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


@contextlib.contextmanager
def rss_sampler(proxy: ProxyProcess, period: float = 0.005) -> Iterator[list[int]]:
    """Samples VmRSS every ``period`` seconds while the block runs; yields the list."""
    samples: list[int] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                samples.append(proxy.status("VmRSS"))
            stop.wait(period)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(5)


# ------------------------------------------------------------------------------ helpers


def connect(port: int, mailbox: str = "INBOX") -> tuple[Client, float]:
    """A logged-in client with ``mailbox`` selected, and the seconds that took."""
    start = time.perf_counter()
    client = Client(HOST, port)
    client.login(USER, PASSWORD)
    client.select(mailbox)
    return client, time.perf_counter() - start


def check_bulk(result: FetchResult, messages: list[bytes], what: str) -> None:
    if len(result.bodies) != len(messages):
        raise AssertionError(f"{what}: {len(result.bodies)} bodies, expected {len(messages)}")
    for seq, body in result.bodies.items():
        if body != messages[seq - 1]:
            raise AssertionError(f"{what}: message {seq} differs ({len(body)} bytes, "
                                 f"expected {len(messages[seq - 1])})")


def check_naive(result: FetchResult, by_uid: dict[int, bytes], what: str) -> None:
    for uid, body in result.bodies.items():
        if body != by_uid[uid]:
            raise AssertionError(f"{what}: UID {uid} differs")
    if len(result.bodies) != result.commands:
        raise AssertionError(f"{what}: {len(result.bodies)} bodies for {result.commands} "
                             "commands")


def bulk(port: int, messages: list[bytes], what: str) -> FetchResult:
    client, _ = connect(port)
    try:
        result = client.fetch_bulk()
    finally:
        client.logout()
    check_bulk(result, messages, what)
    return result


def median_bulk(port: int, messages: list[bytes], what: str, repeat: int,
                between: Callable[[], object] | None = None,
                after: Callable[[], object] | None = None) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        if between is not None:
            between()
        times.append(bulk(port, messages, what).seconds)
        if after is not None:
            after()
    return statistics.median(times), times


def naive(port: int, uids: list[int], by_uid: dict[int, bytes], what: str,
          budget: float) -> tuple[FetchResult, float]:
    client, setup = connect(port)
    try:
        result = client.fetch_naive(uids, budget=budget)
    finally:
        client.logout()
    check_naive(result, by_uid, what)
    return result, setup


def extrapolate(result: FetchResult, total_messages: int, total_bytes: int,
                link_rate: float) -> float:
    """Seconds the whole mailbox would take at the pace of a partial naive run.

    A naive fetch costs per command (round trips, per-command work) plus per byte. With
    ``link_rate`` (bytes/s through the link, measured by a direct bulk fetch over it) the
    sample's byte time is taken out, the per-command rest scaled to all messages, and the
    whole mailbox's byte time added back; big messages outside the sample are thus counted
    at the link's rate rather than as average messages."""
    if result.complete:
        return result.seconds
    byte_time = result.bytes / link_rate
    per_command = max(0.0, result.seconds - byte_time) / result.commands
    return per_command * total_messages + total_bytes / link_rate


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu = m.group(1) if m else ""
    mem = ""
    with contextlib.suppress(OSError):
        m = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
        mem = f"{int(m.group(1)) / 1024 / 1024:.1f} GiB" if m else ""
    dovecot = ""
    binary = find_dovecot()
    if binary:
        dovecot = subprocess.run([binary, "--version"], capture_output=True,
                                 text=True, check=False).stdout.strip()
    git = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s", "--", "imapproxy"],
                         capture_output=True, text=True, check=False).stdout.strip()[:80]
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "imapproxy"],
                           capture_output=True, text=True, check=False).stdout
    dirty_files = " ".join(line[3:] for line in dirty.splitlines() if line.strip())
    return {"commit": git + (f" + uncommitted changes to {dirty_files}" if dirty else ""),
            "nproc": os.cpu_count(), "cpu": cpu, "ram": mem,
            "python": platform.python_version(), "dovecot": dovecot,
            "kernel": platform.release()}


def prefetch_field() -> bool:
    from imapproxy import config

    return any(f.name == "prefetch_count" for f in dataclasses.fields(config.UpstreamConfig))


def prefetch_setting() -> str:
    """Whether this imapproxy has a prefetch setting, and its default."""
    from imapproxy import config

    found = []
    for cls in (config.Config, config.UpstreamConfig):
        for f in dataclasses.fields(cls):
            if "prefetch" in f.name:
                default = f.default if f.default is not dataclasses.MISSING else "?"
                found.append(f"{cls.__name__}.{f.name} = {default}")
    return ", ".join(found) or "none (no prefetch setting in imapproxy.config)"


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


# ------------------------------------------------------------------------------ the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "args": vars(args).copy(),
                               "prefetch": prefetch_setting()}
    results["args"].pop("json", None)
    work = Path(tempfile.mkdtemp(prefix="imapproxy-bench-"))
    os.chmod(work, 0o755)  # Dovecot's mail processes (nobody, as root) chroot below it
    dovecot = DovecotServer(work / "dovecot")
    relay: RelayProcess | None = None
    proxies: list[ProxyProcess] = []
    t0 = time.perf_counter()
    say = print

    def proxy(name: str, upstream: int, **kw: Any) -> ProxyProcess:
        p = ProxyProcess(work, name, upstream, **kw)
        proxies.append(p)
        return p

    try:
        # --- the mailbox -----------------------------------------------------------------
        messages = corpus.mailbox(args.messages, args.seed)
        big = corpus.big_message(args.big_mb)
        total = sum(map(len, messages))
        results["mailbox"] = {"messages": len(messages), "bytes": total,
                              "mean": total / len(messages),
                              "largest": sorted(map(len, messages))[-4:], "big": len(big)}
        say(f"mailbox: {len(messages)} messages, {mb(total)} (mean {total / len(messages) / 1e3:.1f}"
            f" KB, largest {mb(max(map(len, messages)))}); Big: {mb(len(big))}")
        dovecot.start()
        dovecot.add_user(USER, PASSWORD)
        start = time.perf_counter()
        c = Client(HOST, dovecot.port)
        c.login(USER, PASSWORD)
        c.ok(b'CREATE "Big"')
        c.append_many("INBOX", messages,
                      flags=[(b"\\Seen" if i % 3 else b"") for i in range(len(messages))])
        c.append_many("Big", [big])
        c.logout()
        results["append_seconds"] = time.perf_counter() - start
        say(f"appended in {results['append_seconds']:.1f} s "
            f"({total / results['append_seconds'] / 1e6:.0f} MB/s); Dovecot on {dovecot.port}")
        c, _ = connect(dovecot.port)
        uids = c.uids()
        c.logout()
        assert len(uids) == len(messages), (len(uids), len(messages))
        by_uid = dict(zip(uids, messages, strict=True))

        # --- 1. direct, no latency vs warm proxy, no latency --------------------------------
        bulk(dovecot.port, messages, "direct warm-up")  # Dovecot's own caches and indexes
        direct, direct_all = median_bulk(dovecot.port, messages, "direct", args.repeat)
        say(f"direct bulk, no latency: {direct:.3f} s (runs {fmt_list(direct_all)})")
        p0 = proxy("local", dovecot.port)
        cold_local = bulk(p0.port, messages, "proxy cold (local)").seconds
        say(f"proxy bulk cold, no latency: {cold_local:.3f} s")
        warm, warm_all = median_bulk(p0.port, messages, "proxy warm (local)", args.repeat)
        say(f"proxy bulk warm, no latency: {warm:.3f} s (runs {fmt_list(warm_all)})")
        results["p0_hwm"] = p0.status("VmHWM")
        n_local = min(len(uids), args.naive_local)
        direct_naive_local, _ = naive(dovecot.port, uids[:n_local], by_uid, "direct naive",
                                      args.naive_budget)
        proxy_naive_local, _ = naive(p0.port, uids[:n_local], by_uid, "proxy naive warm",
                                     args.naive_budget)
        say(f"naive warm, no latency, {proxy_naive_local.commands} messages: direct "
            f"{direct_naive_local.seconds:.3f} s, proxy {proxy_naive_local.seconds:.3f} s")
        p0.stop()

        # --- 2. the slow link -------------------------------------------------------------
        relay = RelayProcess(dovecot.port, args.latency_ms, args.bandwidth_mbit)
        rtt = 2 * args.latency_ms / 1000
        relay.ask("RESET")
        link_bulk = bulk(relay.port, messages, "direct over the link")
        link_bytes = relay.ask("STATS")
        link_rate = total / max(1e-9, link_bulk.seconds - rtt)
        say(f"direct bulk over the link: {link_bulk.seconds:.3f} s "
            f"({link_rate / 1e6:.0f} MB/s after the first round trip)")
        naive_direct, _ = naive(relay.port, uids, by_uid, "direct naive over the link",
                                args.naive_budget)
        naive_direct_est = extrapolate(naive_direct, len(uids), total, link_rate)
        say(f"naive direct over the link: {naive_direct.commands} messages in "
            f"{naive_direct.seconds:.2f} s -> {naive_direct_est:.1f} s for all"
            f"{'' if naive_direct.complete else ' (extrapolated)'}")

        p1 = proxy("link", relay.port)
        relay.ask("RESET")
        client, setup_cold = connect(p1.port)
        cold = client.fetch_bulk()
        client.logout()
        check_bulk(cold, messages, "proxy cold over the link")
        cold_bytes = relay.ask("STATS")
        say(f"proxy bulk cold over the link: {cold.seconds:.3f} s "
            f"(login+select {setup_cold:.3f} s; link carried {mb(cold_bytes['down'])} down, "
            f"{mb(cold_bytes['up'])} up)")
        warm_link_bytes: list[dict[str, Any]] = []
        warm_link, warm_link_all = median_bulk(
            p1.port, messages, "proxy warm over the link", args.repeat,
            between=lambda: relay.ask("RESET") if relay else None,
            after=lambda: warm_link_bytes.append(relay.ask("STATS")) if relay else None)
        worst_bytes = max(b["up"] + b["down"] for b in warm_link_bytes)
        say(f"proxy bulk warm over the link: {warm_link:.3f} s (runs {fmt_list(warm_link_all)});"
            f" link bytes per run (incl. login, select): {worst_bytes}")
        results["p1_hwm"] = p1.status("VmHWM")
        p1.stop()

        p2 = proxy("naive", relay.port)
        relay.ask("RESET")
        naive_proxy, setup_naive = naive(p2.port, uids, by_uid, "proxy naive cold",
                                         args.naive_budget)
        naive_proxy_bytes = relay.ask("STATS")
        naive_proxy_est = extrapolate(naive_proxy, len(uids), total, link_rate)
        say(f"naive through the proxy, cold, over the link: {naive_proxy.commands} messages in "
            f"{naive_proxy.seconds:.2f} s -> {naive_proxy_est:.1f} s for all"
            f"{'' if naive_proxy.complete else ' (extrapolated)'}")
        done_uids = [u for u in uids if u in naive_proxy.bodies]
        relay.ask("RESET")
        naive_warm, _ = naive(p2.port, done_uids, by_uid, "proxy naive warm over the link",
                              args.naive_budget)
        naive_warm_bytes = relay.ask("STATS")
        # Warm: no body crosses the link, so the per-command time scales to all messages.
        naive_warm_est = naive_warm.seconds / max(1, naive_warm.commands) * len(uids)
        say(f"naive through the proxy, warm, over the link: {naive_warm.commands} messages in "
            f"{naive_warm.seconds:.2f} s ({naive_warm.seconds / max(1, naive_warm.commands) * 1e3:.1f}"
            f" ms each; link carried {naive_warm_bytes['up'] + naive_warm_bytes['down']} bytes)")
        p2.stop()
        naive_off: FetchResult | None = None
        if prefetch_field():
            off = proxy("naive-no-prefetch", relay.port, config="[upstream]\nprefetch_count = 0\n")
            naive_off, _ = naive(off.port, uids, by_uid, "proxy naive cold, no prefetch",
                                 args.naive_budget)
            off.stop()
            say(f"naive through the proxy, cold, prefetch off: {naive_off.commands} messages in "
                f"{naive_off.seconds:.2f} s -> "
                f"{extrapolate(naive_off, len(uids), total, link_rate):.1f} s for all")
        relay.stop()
        relay = None

        # --- 3. memory: clients fetching one big message at once ---------------------------
        memory: dict[str, Any] = {}
        one = proxy("memory-1", dovecot.port)
        time.sleep(0.3)
        memory["idle_rss"] = before = one.status("VmRSS")
        with rss_sampler(one) as samples:
            seconds = many_clients(one.port, 1, len(big))
        memory["cold_1"] = {"hwm": one.status("VmHWM"), "sampled_peak": max(samples or [0]),
                            "rss_before": before, "seconds": seconds}
        say(f"1 client x {mb(len(big))}, cold: peak RSS {mb(memory['cold_1']['hwm'])} "
            f"(idle {mb(before)}) in {seconds:.2f} s")
        one.stop()
        p3 = proxy("memory", dovecot.port)
        time.sleep(0.3)
        for phase in ("cold", "warm"):
            p3.reset_peak()
            before = p3.status("VmRSS")
            with rss_sampler(p3) as samples:
                seconds = many_clients(p3.port, args.clients, len(big))
            memory[phase] = {"hwm": p3.status("VmHWM"), "sampled_peak": max(samples or [0]),
                             "rss_before": before, "rss_after": p3.status("VmRSS"),
                             "seconds": seconds}
            say(f"{args.clients} clients x {mb(len(big))}, {phase}: peak RSS "
                f"{mb(memory[phase]['hwm'])} (sampled {mb(memory[phase]['sampled_peak'])}, "
                f"before {mb(before)}) in {seconds:.2f} s")
        p3.stop()

        # --- optional: profile of the warm path --------------------------------------------
        if args.profile:
            results["profile"] = profile_warm(work, dovecot.port, p0.cache_dir, messages,
                                              args.repeat)

        results["figures"] = {
            "direct_bulk": direct, "direct_bulk_runs": direct_all,
            "proxy_cold_bulk_local": cold_local,
            "proxy_warm_bulk_local": warm, "proxy_warm_bulk_local_runs": warm_all,
            "direct_naive_local": dataclasses.asdict(direct_naive_local, dict_factory=_nobodies),
            "proxy_naive_warm_local": dataclasses.asdict(proxy_naive_local,
                                                         dict_factory=_nobodies),
            "link_direct_bulk": link_bulk.seconds, "link_direct_bulk_bytes": link_bytes,
            "link_rate": link_rate,
            "link_naive_direct": dataclasses.asdict(naive_direct, dict_factory=_nobodies),
            "link_naive_direct_estimate": naive_direct_est,
            "link_proxy_cold_bulk": cold.seconds, "link_proxy_cold_setup": setup_cold,
            "link_proxy_cold_bytes": cold_bytes,
            "link_proxy_warm_bulk": warm_link, "link_proxy_warm_bulk_runs": warm_link_all,
            "link_proxy_warm_bytes": warm_link_bytes,
            "link_proxy_naive_cold": dataclasses.asdict(naive_proxy, dict_factory=_nobodies),
            "link_proxy_naive_cold_estimate": naive_proxy_est,
            "link_proxy_naive_cold_setup": setup_naive,
            "link_proxy_naive_cold_bytes": naive_proxy_bytes,
            "link_proxy_naive_warm": dataclasses.asdict(naive_warm, dict_factory=_nobodies),
            "link_proxy_naive_cold_no_prefetch": None if naive_off is None else
            dataclasses.asdict(naive_off, dict_factory=_nobodies),
            "link_proxy_naive_cold_no_prefetch_estimate": None if naive_off is None else
            extrapolate(naive_off, len(uids), total, link_rate),
            "link_proxy_naive_warm_estimate": naive_warm_est,
            "link_proxy_naive_warm_bytes": naive_warm_bytes,
            "memory": memory, "p0_hwm": results.pop("p0_hwm"), "p1_hwm": results.pop("p1_hwm"),
        }
        results["seconds"] = time.perf_counter() - t0
        return results
    except BaseException:
        for p in proxies:
            print(f"--- proxy {p.name} log tail:\n{p.log_tail()}", file=sys.stderr)
        raise
    finally:
        for p in proxies:
            p.stop()
        if relay is not None:
            relay.stop()
        dovecot.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _nobodies(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: v for k, v in items if k != "bodies"}


def fmt_list(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def many_clients(port: int, n: int, size: int) -> float:
    """``n`` clients log in and select Big, then fetch its message at the same moment."""
    barrier = threading.Barrier(n + 1, timeout=60)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            client, _ = connect(port, "Big")
            barrier.wait()
            result = client.fetch_bulk(keep=False)
            client.logout()
            if result.bytes != size:
                raise AssertionError(f"got {result.bytes} bytes, expected {size}")
        except BaseException as exc:  # noqa: BLE001  (re-raised in the main thread)
            errors.append(exc)
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.abort()

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def profile_warm(work: Path, upstream: int, cache_dir: Path, messages: list[bytes],
                 repeat: int) -> dict[str, Any]:
    """Profile warm bulk fetches through a proxy that starts on the warm cache of the
    no-latency proxy. With py-spy on PATH: wall-clock samples of every thread (the cache's
    thread pool included), summarised per thread; else cProfile (main thread only)."""
    if shutil.which("py-spy"):
        return _profile_pyspy(work, upstream, cache_dir, messages, repeat)
    out = work / "warm.prof"
    p = ProxyProcess(work, "profile", upstream, cache_dir=cache_dir, profile=out)
    try:
        times = [bulk(p.port, messages, "profiled warm").seconds for _ in range(repeat)]
    finally:
        p.stop()
    stats = pstats.Stats(str(out))
    print(f"\nprofile of {repeat} warm bulk fetches under cProfile, main thread only "
          f"({fmt_list(times)} s; cProfile slows Python code ~2x):")
    rows = []
    table = stats.stats  # type: ignore[attr-defined]
    for func, (_cc, nc, tt, ct, _callers) in sorted(table.items(), key=lambda kv: -kv[1][2])[:25]:
        name = f"{Path(func[0]).name}:{func[1]}({func[2]})"
        rows.append({"function": name, "calls": nc, "tottime": tt, "cumtime": ct})
        print(f"  {name:<60}  {nc:>8}  tot {tt:7.3f}  cum {ct:7.3f}")
    return {"tool": "cProfile", "times": times, "top": rows}


# Leaf frames of a thread that waits (py-spy counts some waits as busy).
_IDLE_LEAVES = ("EpollSelector.select", "_worker (concurrent/futures/thread.py:81)",
                "Condition.wait", "Event.wait", "Thread.join")


def _profile_pyspy(work: Path, upstream: int, cache_dir: Path, messages: list[bytes],
                   repeat: int) -> dict[str, Any]:
    p = ProxyProcess(work, "profile", upstream, cache_dir=cache_dir)
    raw = work / "warm.pyspy"
    try:
        bulk(p.port, messages, "profile warm-up")
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(p.proc.pid), "--rate", "1000",
                                "--format", "raw", "--threads", "-o", str(raw)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.5)  # py-spy attaches
        start = time.perf_counter()
        times = [bulk(p.port, messages, "profiled warm").seconds for _ in range(repeat)]
        wall = time.perf_counter() - start
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=60)
    finally:
        p.stop()
    if not raw.exists():
        print(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
        return {"tool": "py-spy", "error": err.decode(errors="replace")[-500:]}
    summary = summarize_pyspy(raw)
    print(f"\nprofile of {repeat} warm bulk fetches (py-spy, 1 kHz, all threads; "
          f"{fmt_list(times)} s under py-spy; {wall:.2f} s wall for the fetches):")
    for group, data in summary.items():
        print(f"  {group}: {data['busy']} busy samples (~ms)")
        for name, n in data["inclusive"][:18]:
            print(f"    {n:6d} {100 * n / max(1, data['busy']):5.1f}%  incl  {name}")
        for name, n in data["self"][:10]:
            print(f"    {n:6d} {100 * n / max(1, data['busy']):5.1f}%  self  {name}")
    return {"tool": "py-spy", "times": times, "wall": wall, "threads": summary}


def summarize_pyspy(path: Path) -> dict[str, Any]:
    """py-spy ``--format raw --threads`` output -> per thread group: busy samples, the
    functions with the most inclusive samples (below the event loop / worker boilerplate)
    and the lines with the most self samples. Waiting leaves are not counted."""
    import collections

    groups: dict[str, dict[str, Any]] = {}
    boiler = ("runpy", "__main__.py", "cli.py", "asyncio/runners.py", "base_events.py",
              "asyncio/events.py", "threading.py", "concurrent/futures/thread.py", "app.py")
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        if not frames or any(w in frames[-1] for w in _IDLE_LEAVES):
            continue
        group = "main thread" if "MainThread" in thread else \
            "cache thread pool" if "imapproxy-cache" in thread else "other threads"
        g = groups.setdefault(group, {"busy": 0, "incl": collections.Counter(),
                                      "self": collections.Counter()})
        n = int(count)
        g["busy"] += n
        g["self"][frames[-1]] += n
        seen = set()
        for frame in frames:
            name, _, where = frame.partition(" (")
            key = f"{name} ({where.rsplit(':', 1)[0]})"
            if key in seen or any(b in where for b in boiler):
                continue
            seen.add(key)
            g["incl"][key] += n
    return {group: {"busy": g["busy"], "inclusive": g["incl"].most_common(30),
                    "self": g["self"].most_common(15)}
            for group, g in sorted(groups.items(), key=lambda kv: -kv[1]["busy"])}


# ------------------------------------------------------------------------------ report

def report(results: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    f = results["figures"]
    total = results["mailbox"]["bytes"]
    rtt = 2 * args.latency_ms / 1000
    mem = f["memory"]
    link_limit = rtt + (total * 8 / (args.bandwidth_mbit * 1e6) if args.bandwidth_mbit else 0)
    rows: list[dict[str, Any]] = []

    def row(name: str, value: float, unit: str, target: str | None = None,
            ok: bool | None = None, note: str = "") -> None:
        rows.append({"figure": name, "value": value, "unit": unit, "target": target,
                     "result": None if ok is None else ("PASS" if ok else "MISS"), "note": note})

    ex = "" if f["link_naive_direct"]["complete"] else " (extrapolated)"
    exp = "" if f["link_proxy_naive_cold"]["complete"] else " (extrapolated)"
    row("direct bulk, no latency", f["direct_bulk"], "s")
    row("proxy bulk warm, no latency", f["proxy_warm_bulk_local"], "s")
    r1 = f["proxy_warm_bulk_local"] / f["direct_bulk"]
    row("1. warm proxy / direct", r1, "x", "<= 1.2", r1 <= 1.2)
    row("proxy bulk cold, no latency", f["proxy_cold_bulk_local"], "s")
    nl = f["proxy_naive_warm_local"]["commands"]
    row(f"naive direct, no latency ({nl} msgs)", f["direct_naive_local"]["seconds"], "s")
    row(f"naive proxy warm, no latency ({nl} msgs)", f["proxy_naive_warm_local"]["seconds"], "s",
        note=f"{f['proxy_naive_warm_local']['seconds'] / nl * 1e3:.2f} ms/msg vs "
             f"{f['direct_naive_local']['seconds'] / nl * 1e3:.2f}")
    row("link: direct bulk", f["link_direct_bulk"], "s", note="the link's practical limit")
    row("link: naive direct, all messages", f["link_naive_direct_estimate"], "s",
        note=f"{f['link_naive_direct']['commands']} msgs in "
             f"{f['link_naive_direct']['seconds']:.1f} s{ex}")
    row("link: proxy bulk cold", f["link_proxy_cold_bulk"], "s",
        note=f"+ login/select {f['link_proxy_cold_setup']:.2f} s")
    r2 = f["link_naive_direct_estimate"] / f["link_proxy_cold_bulk"]
    row("2. naive direct / proxy cold (link)", r2, "x", ">= 20", r2 >= 20)
    row("   proxy cold / link limit (RTT + bytes/bw)", f["link_proxy_cold_bulk"] / link_limit,
        "x", note=f"limit {link_limit:.3f} s" + ("" if args.bandwidth_mbit else
                                                  " (no cap: 1 RTT)"))
    row("   proxy cold / direct bulk over the link",
        f["link_proxy_cold_bulk"] / f["link_direct_bulk"], "x")
    row("link: proxy bulk warm", f["link_proxy_warm_bulk"], "s")
    r3 = f["link_proxy_warm_bulk"] / f["proxy_warm_bulk_local"]
    row("3. warm link / warm no latency", r3, "x", "<= 1.1", r3 <= 1.1)
    wb = max(b["up"] + b["down"] for b in f["link_proxy_warm_bytes"])
    row("3b. link bytes of a warm run / mailbox", wb / total * 100, "%", "< 1", wb / total < 0.01,
        note=f"{wb} bytes")
    row("link: naive through proxy, cold, all msgs", f["link_proxy_naive_cold_estimate"], "s",
        note=f"{f['link_proxy_naive_cold']['commands']} msgs in "
             f"{f['link_proxy_naive_cold']['seconds']:.1f} s{exp}; prefetch: "
             f"{results['prefetch']}")
    row("   naive direct / naive through proxy (link)",
        f["link_naive_direct_estimate"] / f["link_proxy_naive_cold_estimate"], "x")
    off = f["link_proxy_naive_cold_no_prefetch"]
    if off is not None:
        row("link: naive through proxy, cold, prefetch off", 
            f["link_proxy_naive_cold_no_prefetch_estimate"], "s",
            note=f"{off['commands']} msgs in {off['seconds']:.1f} s"
                 f"{'' if off['complete'] else ' (extrapolated)'}")
    nw = f["link_proxy_naive_warm"]
    row("link: naive through proxy, warm, all msgs", f["link_proxy_naive_warm_estimate"], "s",
        note=f"{nw['commands']} msgs in {nw['seconds']:.1f} s "
             f"({nw['seconds'] / max(1, nw['commands']) * 1e3:.1f} ms/msg), extrapolated")
    row("proxy idle RSS", mem["idle_rss"] / 1e6, "MB")
    row(f"peak RSS, 1 client x {results['mailbox']['big'] / 1e6:.0f} MB, cold",
        max(mem["cold_1"]["hwm"], mem["cold_1"]["sampled_peak"]) / 1e6, "MB",
        note=f"{mem['cold_1']['seconds']:.2f} s")
    for phase in ("cold", "warm"):
        peak = max(mem[phase]["hwm"], mem[phase]["sampled_peak"])
        row(f"4. peak RSS, {args.clients} clients x {results['mailbox']['big'] / 1e6:.0f} MB, "
            f"{phase}", peak / 1e6, "MB", "< 150", peak < 150e6,
            note=f"{mem[phase]['seconds']:.2f} s")
    row("peak RSS of the bulk proxies (local / link)", f["p0_hwm"] / 1e6, "MB",
        note=f"{f['p1_hwm'] / 1e6:.0f} MB over the link")
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    width = max(len(r["figure"]) for r in rows)
    print()
    print(f"{'figure':<{width}}  {'value':>10}      {'target':>7}  result  note")
    for r in rows:
        value = f"{r['value']:.3f}" if r["unit"] in ("s", "x") else f"{r['value']:.1f}"
        print(f"{r['figure']:<{width}}  {value:>10} {r['unit']:<4} {r['target'] or '':>7}  "
              f"{r['result'] or '':<6}  {r['note']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="INBOX size (default 2000)")
    parser.add_argument("--latency-ms", type=float, default=25.0,
                        help="relay latency each way (default 25)")
    parser.add_argument("--bandwidth-mbit", type=float, default=0.0,
                        help="relay bandwidth cap per connection and direction (default 0: none)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per warm figure (median)")
    parser.add_argument("--naive-budget", type=float, default=20.0,
                        help="seconds a naive run over the link may take before it stops and "
                             "is extrapolated (default 20)")
    parser.add_argument("--naive-local", type=int, default=500,
                        help="messages of the naive runs without latency (default 500)")
    parser.add_argument("--clients", type=int, default=10, help="clients of the memory test")
    parser.add_argument("--big-mb", type=float, default=20.0, help="size of the Big message")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every figure here")
    parser.add_argument("--profile", action="store_true",
                        help="also profile warm fetches with cProfile and print the top")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if find_dovecot() is None:
        print("dovecot is not installed (apt install dovecot-imapd)", file=sys.stderr)
        return 2
    results = run(args)
    rows = report(results, args)
    results["table"] = rows
    print_table(rows)
    m = results["machine"]
    print(f"\n{m['nproc']} x {m['cpu']}, {m['ram']}, Python {m['python']}, Dovecot "
          f"{m['dovecot']}, Linux {m['kernel']}; imapproxy at {m['commit']}; "
          f"total {results['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
