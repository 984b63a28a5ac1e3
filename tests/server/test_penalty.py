"""Auth penalty and connection accounting, on a fake clock."""

from __future__ import annotations

from imapproxy.config import LimitsConfig
from imapproxy.hardening_config import AuthPenaltyConfig
from imapproxy.server.limits import ConnectionLimits
from imapproxy.server.penalty import AuthPenalty
from tests.fake_clock import Clock


def test_delay_doubles_per_failure_and_is_capped() -> None:
    penalty = AuthPenalty(AuthPenaltyConfig(initial_delay=2, max_delay=15), Clock(1000.0))
    delays = []
    for n in range(6):
        delays.append(penalty.delay("192.0.2.1", "bob"))
        penalty.failed("192.0.2.1", b"bob", f"guess{n}".encode())
    assert delays == [0, 2, 4, 8, 15, 15]


def test_delay_counts_per_ip_and_per_user() -> None:
    penalty = AuthPenalty(AuthPenaltyConfig(initial_delay=2), Clock(1000.0))
    for n in range(3):
        penalty.failed("192.0.2.1", b"bob", f"guess{n}".encode())
    assert penalty.delay("192.0.2.1", "alice") == 8  # same address, other user
    assert penalty.delay("198.51.100.1", "bob") == 8  # same user, other address
    assert penalty.delay("198.51.100.1", "alice") == 0


def test_address_not_counted_when_none() -> None:
    penalty = AuthPenalty(AuthPenaltyConfig(initial_delay=2), Clock(1000.0))
    penalty.failed(None, b"bob", b"x")
    assert penalty.delay(None, "alice") == 0
    assert penalty.delay(None, "bob") == 2  # the user still is
    penalty.succeeded(None, "bob")
    assert penalty.delay(None, "bob") == 0


def test_failures_are_forgotten_and_success_resets() -> None:
    clock = Clock(1000.0)
    penalty = AuthPenalty(AuthPenaltyConfig(initial_delay=2, forget_after=60), clock)
    penalty.failed("192.0.2.1", b"bob", b"x")
    penalty.failed("192.0.2.1", b"bob", b"y")
    clock.now += 61
    assert penalty.delay("192.0.2.1", "bob") == 0
    penalty.failed("192.0.2.1", b"bob", b"z")
    penalty.succeeded("192.0.2.1", "bob")
    assert penalty.delay("192.0.2.1", "bob") == 0


def test_known_wrong_password_expires() -> None:
    clock = Clock(1000.0)
    penalty = AuthPenalty(AuthPenaltyConfig(failure_cache_ttl=30), clock)
    penalty.failed("192.0.2.1", b"bob", b"wrong")
    assert penalty.known_wrong(b"bob", b"wrong")
    assert not penalty.known_wrong(b"bob", b"right")
    assert not penalty.known_wrong(b"alice", b"wrong")
    assert not penalty.known_wrong(b"bob", b"wrong", authzid=b"admin")
    clock.now += 31
    assert not penalty.known_wrong(b"bob", b"wrong")


def test_no_password_kept_in_clear() -> None:
    penalty = AuthPenalty(AuthPenaltyConfig(), Clock(1000.0))
    penalty.failed("192.0.2.1", b"bob", b"hunter2-secret")
    assert b"hunter2-secret" not in repr(vars(penalty)).encode()
    assert all(len(k) == 32 for k in penalty._refused)


def test_connection_limits_count_and_release() -> None:
    limits = ConnectionLimits(LimitsConfig(max_connections=3, max_connections_per_ip=2,
                                           max_connections_per_user=1,
                                           max_unauthenticated_per_ip=2))
    assert limits.open("a") is None
    assert limits.open("a") is None
    assert limits.open("a") == "Too many connections from your address"
    assert limits.open("b") is None
    assert limits.open("c") == "Too many connections"
    assert limits.may_log_in("bob")
    limits.logged_in("a", "bob")
    assert not limits.may_log_in("bob")
    limits.close("a", "bob")
    limits.close("a", None)
    limits.close("b", None)
    assert (limits.total, dict(limits.per_ip), dict(limits.per_user),
            dict(limits.unauthenticated)) == (0, {}, {}, {})


def test_unauthenticated_cap_per_ip() -> None:
    limits = ConnectionLimits(LimitsConfig(max_unauthenticated_per_ip=1))
    assert limits.open("a") is None
    assert limits.open("a") == "Too many unauthenticated connections from your address"
    limits.logged_in("a", "bob")
    assert limits.open("a") is None  # the first one logged in: its slot is free again


def test_loopback_exempt_from_per_address_limits() -> None:
    limits = ConnectionLimits(LimitsConfig(max_connections=3, max_connections_per_ip=1,
                                           max_unauthenticated_per_ip=1))
    assert [limits.open("127.0.0.1") for _ in range(4)] == [None, None, None,
                                                            "Too many connections"]
    strict = ConnectionLimits(LimitsConfig(max_connections_per_ip=1, exempt_loopback=False))
    assert strict.open("127.0.0.1") is None
    assert strict.open("127.0.0.1") is not None


def test_zero_means_no_limit() -> None:
    limits = ConnectionLimits(LimitsConfig(max_connections=0, max_connections_per_ip=0,
                                           max_unauthenticated_per_ip=0))
    assert all(limits.open("a") is None for _ in range(500))
