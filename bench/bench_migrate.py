"""Migration benchmark: ``imapproxy migrate`` of a 2,000-message account, direct and through
the proxy over a slow link, against Dovecot's own ``doveadm backup`` with imapc.

    python bench/bench_migrate.py                    # 2,000 messages (~41 MB), ~1-2 min
    python bench/bench_migrate.py --messages 300     # quick run
    python bench/bench_migrate.py --json out.json

What runs (all on 127.0.0.1, in a fresh directory under /tmp, removed at the end):

- a source Dovecot (imapproxy.devserver) with one user: INBOX holds ``--messages`` messages
  of bench/corpus.py with varied flags, appended with LITERAL+ and 64 commands in flight;
- a destination Dovecot (Maildir++ layout), for doveadm's runs;
- bench/relay.py in its own process between its clients and the source: ``--latency-ms``
  each way (default 25: a 50 ms round trip);
- the proxy as a subprocess (``python -m imapproxy serve``, fresh cache), upstream = relay.

Scenarios, each into a fresh destination; the time is the wall time of the whole command
(process start, login, listing, copying, logout):

- ``migrate`` to a Maildir: from Dovecot directly; over the link; through the proxy whose
  upstream is the link (cold cache: the proxy fetches every body once over the link);
- ``doveadm backup -R imapc:`` (Dovecot's documented migration path) into the destination
  Dovecot: directly and over the link (``mail_prefetch_count = 20``, imapc features
  ``rfc822.size fetch-headers modseq``), when doveadm is installed.

Every migrate run is checked: the Maildir must hold every message, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import corpus
from bench_fetch import HOST, ProxyProcess, RelayProcess
from client import Client

from imapproxy.devserver import DovecotServer

USER, PASSWORD = "bench", "bench-password"
FLAGS = [b"", b"\\Seen", b"\\Seen \\Flagged", b"\\Answered \\Seen", b"$Label1 \\Seen"]
DOVEADM = shutil.which("doveadm") or ("/usr/bin/doveadm" if Path("/usr/bin/doveadm").exists()
                                      else None)


def seed(server: DovecotServer, messages: list[bytes]) -> None:
    server.add_user(USER, PASSWORD)
    client = Client(HOST, server.port)
    client.login(USER, PASSWORD)
    dates = [time.strftime("%d-%b-%Y %H:%M:%S +0000",
                           time.gmtime(1_600_000_000 + i * 3600)).encode()
             for i in range(len(messages))]
    client.append_many("INBOX", messages, [FLAGS[i % len(FLAGS)] for i in range(len(messages))],
                       dates)
    client.logout()


def run_migrate(port: int, target: Path) -> float:
    env = dict(os.environ, IMAPPROXY_FROM_PASSWORD=PASSWORD)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "imapproxy", "migrate", "--from", f"imap://{USER}@{HOST}:{port}",
         "--to", f"maildir:{target}"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=900, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds


def check_maildir(target: Path, messages: list[bytes]) -> None:
    bodies = sorted((target / "cur" / name).read_bytes() for name in os.listdir(target / "cur"))
    if bodies != sorted(messages):
        raise RuntimeError(f"{target}: {len(bodies)} files, not the {len(messages)} messages")


def run_doveadm(dest: DovecotServer, user: str, port: int) -> float:
    assert DOVEADM is not None
    dest.add_user(user, PASSWORD)
    cmd = [DOVEADM, "-c", str(dest.config_file), "-o", f"imapc_host={HOST}",
           "-o", f"imapc_port={port}", "-o", f"imapc_user={USER}",
           "-o", f"imapc_password={PASSWORD}", "-o", "imapc_ssl=no",
           "-o", "imapc_features=rfc822.size fetch-headers modseq",
           "-o", "mail_prefetch_count=20", "backup", "-R", "-u", user, "imapc:"]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"doveadm failed ({result.returncode}):\n{result.stderr[-3000:]}")
    imap = dest.connect(user, PASSWORD)
    typ, data = imap.select("INBOX", readonly=True)
    imap.logout()
    return seconds if typ == "OK" and data[0] else -1.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    messages = corpus.mailbox(args.messages)
    total = sum(len(m) for m in messages)
    work = Path(tempfile.mkdtemp(prefix="imapproxy-bench-migrate-"))
    results: dict[str, Any] = {"messages": len(messages), "bytes": total,
                               "latency_ms": args.latency_ms, "runs": {}}
    source = DovecotServer(work / "source")
    dest = DovecotServer(work / "dest", layout="maildir++")
    relay: RelayProcess | None = None
    proxy: ProxyProcess | None = None
    try:
        source.start()
        dest.start()
        seed(source, messages)
        relay = RelayProcess(source.port, args.latency_ms, 0)
        proxy = ProxyProcess(work, "migrate", relay.port)
        scenarios: list[tuple[str, int]] = [
            ("migrate direct", source.port), ("migrate over the link", relay.port),
            ("migrate through the proxy over the link", proxy.port)]
        for name, port in scenarios:
            target = work / name.replace(" ", "-")
            seconds = run_migrate(port, target)
            check_maildir(target, messages)
            results["runs"][name] = seconds
            print(f"{name}: {seconds:.2f} s", flush=True)
        if DOVEADM is not None:
            for i, (name, port) in enumerate((("doveadm backup direct", source.port),
                                              ("doveadm backup over the link", relay.port))):
                seconds = run_doveadm(dest, f"dsync{i}", port)
                results["runs"][name] = seconds
                print(f"{name}: {seconds:.2f} s", flush=True)
    finally:
        if proxy is not None:
            proxy.stop()
        if relay is not None:
            relay.stop()
        source.stop()
        dest.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform()}
    return results


def report(results: dict[str, Any]) -> None:
    n, size = results["messages"], results["bytes"]
    runs = results["runs"]
    base = runs["migrate direct"]
    print(f"\n{n} messages, {size / 1e6:.1f} MB; link: {results['latency_ms']} ms each way")
    print(f"{'scenario':44} {'seconds':>8} {'msg/s':>8} {'MB/s':>7} {'vs direct':>10}")
    for name, seconds in runs.items():
        if seconds <= 0:
            print(f"{name:44} failed")
            continue
        print(f"{name:44} {seconds:8.2f} {n / seconds:8.0f} {size / 1e6 / seconds:7.2f} "
              f"{seconds / base:9.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=25.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = run(args)
    report(results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
