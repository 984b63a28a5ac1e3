"""The throttle back-off: 50 ms doubling to 16 s, halved per quiet shrink period."""

from __future__ import annotations

from imapproxy.upstream.backoff import Backoff
from tests.fake_clock import Clock


def test_no_throttle_no_pause() -> None:
    assert Backoff(clock=Clock(100.0)).delay() == 0.0


def test_doubles_from_initial_up_to_the_maximum() -> None:
    backoff = Backoff(0.05, 16.0, 0.5, clock=Clock(100.0))
    seen = [backoff.throttled() for _ in range(12)]
    assert seen[:4] == [0.05, 0.1, 0.2, 0.4]
    assert seen[8] == 12.8
    assert seen[9:] == [16.0, 16.0, 16.0]
    assert backoff.delay() == 16.0


def test_halves_per_quiet_period_then_forgets() -> None:
    clock = Clock(100.0)
    backoff = Backoff(0.05, 16.0, 0.5, clock=clock)
    for _ in range(4):
        backoff.throttled()  # 0.4 s
    clock.now += 0.49
    assert backoff.delay() == 0.4  # not a whole period yet
    clock.now += 0.01
    assert backoff.delay() == 0.2
    clock.now += 1.0
    assert backoff.delay() == 0.05
    clock.now += 0.5
    assert backoff.delay() == 0.0  # below the initial step: no pause at all
    assert backoff.throttled() == 0.05  # and the next throttle starts over


def test_throttle_after_partial_shrink_doubles_the_shrunk_value() -> None:
    clock = Clock(100.0)
    backoff = Backoff(0.05, 16.0, 0.5, clock=clock)
    for _ in range(5):
        backoff.throttled()  # 0.8 s
    clock.now += 1.0  # two periods: 0.2 s
    assert backoff.throttled() == 0.4


def test_no_shrink_period_means_no_shrinking() -> None:
    clock = Clock(100.0)
    backoff = Backoff(0.05, 1.0, 0.0, clock=clock)
    backoff.throttled()
    clock.now += 1000
    assert backoff.delay() == 0.05
