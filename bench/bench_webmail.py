"""Webmail load: many short sessions against a far IMAP server, direct vs through the proxy.

Each simulated webmail user loops, until the time budget is spent or it has run
``--max-sessions`` sessions: connect, LOGIN, SELECT INBOX, FETCH the headers of the newest 50
messages, UID FETCH 3 bodies at random, LOGOUT. That is what a webmail front end does per page
view (it keeps no IMAP connection of its own). The server is a local Dovecot behind
bench/relay.py (25 ms each way by default), so every upstream round trip costs what it costs
on a real WAN; the proxy runs beside the clients, in front of the relay.

Printed, for direct and for the proxy, in one run: completed sessions/s, p50 and p99 session
latency, and per session the upstream connections (= LOGINs) and command lines the relay saw.
The issue's targets: >= 5x fewer upstream logins and >= 3x better p99 through the proxy at 100
concurrent users.

    python bench/bench_webmail.py                    # 100 users, 10 accounts, 20 s a side
    python bench/bench_webmail.py --users 20 --seconds 5
    python bench/bench_webmail.py --proxy-config extra.toml   # e.g. connection-reuse settings
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import corpus
from bench_fetch import HOST, ProxyProcess, RelayProcess, machine
from client import Client

from imapproxy.devserver import DovecotServer, find_dovecot

PASSWORD = "webmail-password"


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # of sessions started after the ramp
    completed: int = 0  # every session that ended well, ramp included (per-session counts)
    failures: int = 0
    errors: list[str] = field(default_factory=list)


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    """One whole response: a line, with its literals."""
    out = bytearray()
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        out += line
        if line.endswith(b"}\r\n") and b"{" in line:
            size = int(line[line.rindex(b"{") + 1:-3].rstrip(b"+"))
            out += await reader.readexactly(size)
            continue
        return bytes(out)


async def _command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: str,
                   text: str) -> list[bytes]:
    writer.write(f"{tag} {text}\r\n".encode())
    responses: list[bytes] = []
    while True:
        response = await _read_response(reader)
        if response.startswith(tag.encode() + b" "):
            if not response.startswith(tag.encode() + b" OK"):
                raise RuntimeError(f"{text.split()[0]}: {response[:120]!r}")
            return responses
        responses.append(response)


async def webmail_session(port: int, user: str, count: int, rng: random.Random) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        await _read_response(reader)  # greeting
        await _command(reader, writer, "a", f'LOGIN {user} "{PASSWORD}"')
        await _command(reader, writer, "b", "SELECT INBOX")
        first = max(1, count - 49)
        headers = await _command(reader, writer, "c",
                                 f"FETCH {first}:{count} (UID FLAGS RFC822.SIZE "
                                 f"BODY.PEEK[HEADER])")
        if len(headers) < count - first + 1:
            raise RuntimeError(f"FETCH headers: {len(headers)} answers")
        for seq in rng.sample(range(first, count + 1), 3):
            await _command(reader, writer, "d", f"FETCH {seq} (BODY.PEEK[])")
        await _command(reader, writer, "e", "LOGOUT")
    finally:
        writer.close()


async def load(port: int, users: list[str], count: int, seconds: float, max_sessions: int,
               seed: int, think: float = 0.0, ramp: float = 0.0) -> Tally:
    """Every simulated user loops over sessions until ``seconds`` or ``max_sessions``,
    pausing ``think`` seconds on average (0.5-1.5x, at random) between two: the time a person
    spends on a page; their first sessions start spread over ``think`` seconds too. With think
    0 the users are a closed loop that saturates the machine. Sessions started in the first
    ``ramp`` seconds are not timed: every user starts then (a burst no steady load has)."""
    tally = Tally()
    timed_from = time.perf_counter() + ramp
    deadline = time.perf_counter() + seconds

    async def user_loop(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        if think > 0:  # people arrive at random, not all in the same millisecond
            await asyncio.sleep(rng.uniform(0, think))
        for _ in range(max_sessions):
            if time.perf_counter() >= deadline:
                return
            start = time.perf_counter()
            try:
                await asyncio.wait_for(webmail_session(port, users[i], count, rng), 120)
            except (OSError, RuntimeError, TimeoutError, asyncio.IncompleteReadError) as exc:
                tally.failures += 1
                if len(tally.errors) < 5:
                    tally.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            tally.completed += 1
            if start >= timed_from:
                tally.latencies.append(time.perf_counter() - start)
            if think > 0:
                await asyncio.sleep(min(think * rng.uniform(0.5, 1.5),
                                        max(0.0, deadline - time.perf_counter())))

    await asyncio.gather(*(user_loop(i) for i in range(len(users))))
    return tally


def measure(port: int, relay: RelayProcess, users: list[str], count: int,
            args: argparse.Namespace, proxy: ProxyProcess | None = None) -> dict[str, Any]:
    relay.ask("RESET")
    cpu_before = proxy.cpu_seconds() if proxy is not None else 0.0
    started = time.perf_counter()
    own_cpu = time.process_time()
    tally = asyncio.run(load(port, users, count, args.seconds, args.max_sessions, args.seed,
                             args.think_ms / 1000, args.ramp))
    elapsed = time.perf_counter() - started
    own_cpu = time.process_time() - own_cpu
    stats = relay.ask("STATS")
    done = tally.completed
    cpu = proxy.cpu_seconds() - cpu_before if proxy is not None else None
    ordered = sorted(tally.latencies)
    return {
        "sessions": done, "timed_sessions": len(ordered), "failures": tally.failures, "errors": tally.errors,
        "seconds": elapsed, "sessions_per_s": done / elapsed if elapsed else 0.0,
        "p50": statistics.median(ordered) if ordered else None,
        "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else None,
        "upstream_logins_per_session": stats["connections"] / done if done else None,
        "upstream_lines_per_session": stats["lines_up"] / done if done else None,
        "upstream_bytes_down": stats["down"],
        "proxy_cpu_ms_per_session": cpu * 1000 / done if cpu is not None and done else None,
        # The simulated users are one Python process too: near 1.0 it is the bottleneck.
        "load_generator_cpu_share": own_cpu / elapsed if elapsed else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="imapproxy-webmail-"))
    os.chmod(work, 0o755)
    dovecot = DovecotServer(work / "dovecot")
    relay: RelayProcess | None = None
    proxy: ProxyProcess | None = None
    results: dict[str, Any] = {"machine": machine(), "args": vars(args).copy()}
    results["args"].pop("json", None)
    results["args"]["proxy_config"] = str(args.proxy_config) if args.proxy_config else None
    try:
        dovecot.start()
        messages = corpus.mailbox(args.messages, args.seed)
        accounts = [f"web{i}" for i in range(args.accounts)]
        for name in accounts:
            dovecot.add_user(name, PASSWORD)
            client = Client(HOST, dovecot.port)
            client.login(name, PASSWORD)
            client.append_many("INBOX", messages)
            client.logout()
        users = [accounts[i % len(accounts)] for i in range(args.users)]
        relay = RelayProcess(dovecot.port, args.latency_ms, 0.0)
        print(f"{len(accounts)} accounts x {len(messages)} messages; {args.users} users; "
              f"{args.latency_ms:.0f} ms each way; think {args.think_ms:.0f} ms; "
              f"{args.seconds:.0f} s a side")

        results["direct"] = direct = measure(relay.port, relay, users, len(messages), args)
        _say("direct", direct)
        config = args.proxy_config.read_text() if args.proxy_config else None
        proxy = ProxyProcess(work, "webmail", relay.port, config=config, profile=args.profile)
        if args.warmup > 0:  # the proxy's cache fills, as it would in production
            warm = argparse.Namespace(**{**vars(args), "seconds": args.warmup})
            measure(proxy.port, relay, users, len(messages), warm)
        results["proxy"] = through = measure(proxy.port, relay, users, len(messages), args,
                                             proxy)
        _say("proxy", through)
        results["ratios"] = ratios = _ratios(direct, through)
        print(json.dumps(ratios, indent=2))
    finally:
        if proxy is not None:
            proxy.stop()
        if relay is not None:
            relay.stop()
        dovecot.stop()
    return results


def _say(name: str, m: dict[str, Any]) -> None:
    p50 = f"{m['p50'] * 1000:.0f} ms" if m["p50"] is not None else "-"
    p99 = f"{m['p99'] * 1000:.0f} ms" if m["p99"] is not None else "-"
    logins = m["upstream_logins_per_session"]
    lines = m["upstream_lines_per_session"]
    print(f"{name:>6}: {m['sessions']} sessions ({m['failures']} failed) in {m['seconds']:.1f} s"
          f" = {m['sessions_per_s']:.1f}/s; p50 {p50}, p99 {p99}; upstream per session: "
          f"{logins if logins is None else round(logins, 3)} logins, "
          f"{lines if lines is None else round(lines, 2)} command lines")
    if m.get("proxy_cpu_ms_per_session") is not None:
        print(f"        proxy CPU {m['proxy_cpu_ms_per_session']:.1f} ms per session")
    print(f"        load generator busy {m['load_generator_cpu_share']:.0%} of a core")
    for error in m["errors"]:
        print(f"        {error}")


def _ratios(direct: dict[str, Any], proxy: dict[str, Any]) -> dict[str, Any]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return None if not a or not b else round(a / b, 2)

    return {
        "throughput proxy/direct": ratio(proxy["sessions_per_s"], direct["sessions_per_s"]),
        "p50 direct/proxy": ratio(direct["p50"], proxy["p50"]),
        "p99 direct/proxy (target >= 3)": ratio(direct["p99"], proxy["p99"]),
        "upstream logins direct/proxy (target >= 5)": ratio(
            direct["upstream_logins_per_session"], proxy["upstream_logins_per_session"])
        or (f"no upstream login in {proxy['sessions']} sessions"
            if proxy["upstream_logins_per_session"] == 0 else None),
        "upstream commands direct/proxy": ratio(
            direct["upstream_lines_per_session"], proxy["upstream_lines_per_session"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100, help="concurrent webmail users")
    parser.add_argument("--accounts", type=int, default=10, help="IMAP accounts they share")
    parser.add_argument("--messages", type=int, default=200, help="INBOX size per account")
    parser.add_argument("--seconds", type=float, default=20.0, help="time budget per side")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds of load through the proxy before measuring it")
    parser.add_argument("--max-sessions", type=int, default=1000,
                        help="sessions per user at most (bounds the run)")
    parser.add_argument("--latency-ms", type=float, default=25.0)
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="mean pause of a user between two sessions (default 0: closed "
                             "loop, as fast as the machine goes)")
    parser.add_argument("--ramp", type=float, default=1.0,
                        help="seconds at the start of each side whose sessions are not timed")
    parser.add_argument("--proxy-config", type=Path, help="extra TOML for the proxy")
    parser.add_argument("--profile", type=Path, help="cProfile the proxy into this file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    if find_dovecot() is None:
        print("dovecot is not installed (apt install dovecot-imapd)", file=sys.stderr)
        return 2
    results = run(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
