"""The circuit breaker: closed -> open after N failures -> half-open probe -> closed/open."""

from __future__ import annotations

from imapproxy.upstream.breaker import BreakerState, CircuitBreaker
from tests.fake_clock import Clock


def test_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(3, 10.0, clock=Clock(0.0))
    breaker.failure()
    breaker.failure()
    breaker.success()  # resets the count
    breaker.failure()
    breaker.failure()
    assert breaker.allow() and breaker.state is BreakerState.CLOSED
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_one_probe_after_cooldown_and_it_closes_on_success() -> None:
    clock = Clock(0.0)
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    breaker.failure()
    clock.now = 9.9
    assert not breaker.allow()
    assert 0 < breaker.retry_after() <= 0.1 + 1e-9
    clock.now = 10.0
    assert breaker.allow()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # only one at a time
    breaker.success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    assert breaker.retry_after() == 0.0


def test_failed_probe_reopens_for_a_full_cooldown() -> None:
    clock = Clock(0.0)
    breaker = CircuitBreaker(2, 5.0, clock=clock)
    breaker.failure()
    breaker.failure()
    clock.now = 5.0
    assert breaker.allow()
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    clock.now = 9.9
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.allow()


def test_a_lost_probe_is_replaced_after_a_cooldown() -> None:
    clock = Clock(0.0)
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    breaker.failure()
    clock.now = 5.0
    assert breaker.allow()  # this probe never reports
    clock.now = 9.0
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.allow()


def test_zero_threshold_never_opens() -> None:
    breaker = CircuitBreaker(0, 5.0, clock=Clock(0.0))
    for _ in range(100):
        breaker.failure()
    assert breaker.allow() and breaker.state is BreakerState.CLOSED
