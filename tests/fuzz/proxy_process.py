"""The proxy as its own process (``python -m imapproxy serve``), so the network fuzz test can
watch what an operator would: that the process stays up, its resident memory, and its log."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

START_TIMEOUT = 20.0
CRASH_SIGNS = ("session crashed", "Traceback", "Task exception was never retrieved")
# The upstream answered a tag the proxy never sent (its own are U1, U2, ...): bytes of the
# client reached the upstream as a command of their own.
SMUGGLED = re.compile(r"late answer to upstream command (?!U\d+$)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProxyProcess:
    def __init__(self, upstream_host: str, upstream_port: int, workdir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.log_path = workdir / "proxy.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imapproxy", "serve", "--listen", f"{self.host}:{self.port}",
             "--upstream", f"imap://{upstream_host}:{upstream_port}",
             "--cache-dir", str(workdir / "cache"), "--log-level", "INFO"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"proxy exited at start:\n{self.log_text()}")
            with contextlib.suppress(OSError), \
                    socket.create_connection((self.host, self.port), timeout=1):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"proxy not listening after {START_TIMEOUT} s:\n{self.log_text()}")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def rss(self) -> int:
        """Resident set size in bytes (Linux /proc)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def crash_lines(self) -> list[str]:
        return [line for line in self.log_text().splitlines()
                if any(sign in line for sign in CRASH_SIGNS) or SMUGGLED.search(line)]

    def stop(self) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()
