"""The fuzzing budget: small in CI, scaled up by environment variables for long campaigns.

- ``IMAPPROXY_FUZZ_EXAMPLES``: hypothesis examples per property (default 200; the whole
  protocol and MIME suite then runs in well under a minute on a busy 2-core machine).
- ``IMAPPROXY_FUZZ_SECONDS``: how long the network fuzz test hammers the proxy (default 20).

A campaign of about five minutes::

    IMAPPROXY_FUZZ_EXAMPLES=20000 IMAPPROXY_FUZZ_SECONDS=300 \\
        .venv/bin/python -m pytest -q tests/fuzz
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("IMAPPROXY_FUZZ_EXAMPLES", "200"))
NETWORK_SECONDS = float(os.environ.get("IMAPPROXY_FUZZ_SECONDS", "20"))
HANG_SECONDS = 5.0  # one input through one parser: far beyond this is an endless loop


def fuzz_settings(weight: float = 1.0) -> Any:
    """Hypothesis settings for one fuzz property: ``weight`` times the example budget, no
    per-example deadline (a shared CI machine is noisy; :func:`no_hang` catches loops), no
    example database (each run explores afresh)."""
    return settings(max_examples=max(10, int(EXAMPLES * weight)), deadline=None,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


class Hang(Exception):
    """An input kept a parser busy past HANG_SECONDS."""


@contextlib.contextmanager
def no_hang(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Raise :class:`Hang` inside the block after ``seconds`` (SIGALRM: main thread only)."""
    def expired(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
