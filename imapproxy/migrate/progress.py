"""Progress on stderr: a one-line bar redrawn in place on a terminal (counts, bytes, rate),
plain log lines every few seconds otherwise (cron jobs, CI logs), and the final summary."""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW = 0.1  # seconds between redraws of the bar
LOG_EVERY = 5.0  # seconds between plain progress lines
WIDTH = 24


def megabytes(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


class Progress:
    def __init__(self, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.total_messages = 0
        self.total_bytes = 0
        self.messages = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._last = 0.0

    def start(self, messages: int, size: int) -> None:
        self.total_messages, self.total_bytes = messages, size
        self.started = time.monotonic()
        self.note(f"to copy: {messages} messages, {megabytes(size)}")

    def note(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def advance(self, messages: int, size: int) -> None:
        self.messages += messages
        self.bytes += size
        now = time.monotonic()
        if now - self._last >= (REDRAW if self.tty else LOG_EVERY):
            self._last = now
            self._show()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return (f"{self.messages}/{self.total_messages} messages, "
                f"{megabytes(self.bytes)}/{megabytes(self.total_bytes)}, "
                f"{self.messages / elapsed:.0f} msg/s, {megabytes(self.bytes / elapsed)}/s")

    def _show(self) -> None:
        if self.tty:
            done = self.messages / self.total_messages if self.total_messages else 1.0
            filled = int(done * WIDTH)
            bar = "#" * filled + "-" * (WIDTH - filled)
            self.stream.write(f"\r\x1b[K[{bar}] {self.line()}")
        else:
            self.stream.write(f"progress: {self.line()}\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
