"""The operator's view of a running proxy: the Prometheus endpoint with real values, and
``imapproxy who`` / ``imapproxy kick`` through the admin socket."""

from __future__ import annotations

import imaplib
import re
import time
import urllib.request
from typing import Any

import pytest

from imapproxy.cli import main
from imapproxy.config import ObservabilityConfig
from tests.mailgen import generated, seed_mailbox

from .conftest import RunningProxy


@pytest.fixture
def observed(proxy_factory: Any) -> RunningProxy:
    return proxy_factory(config_fields={"observability": ObservabilityConfig(
        metrics_bind=("127.0.0.1", 0))})


def _scrape(proxy: RunningProxy) -> dict[str, float]:
    assert proxy.app.metrics_bound is not None
    host, port = proxy.app.metrics_bound
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)", line)
        if match:
            values[match[1]] = float(match[2])
    return values


def test_metrics_endpoint_counts_real_work(observed: RunningProxy, account: Any,
                                           raw_factory: Any,
                                           imap_direct: imaplib.IMAP4) -> None:
    seed_mailbox(imap_direct, "INBOX", generated(3))
    bad = raw_factory(observed.host, observed.port)
    assert b"NO" in bad.command(f'LOGIN {account.user} "wrong password"')[1]
    assert b"NO" in bad.command(f'LOGIN {account.user} "wrong password"')[1]  # not asked upstream
    client = raw_factory(observed.host, observed.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    client.ok("FETCH 1 (BODY.PEEK[])")  # cold: from the upstream; 2 and 3 are prefetched
    client.ok("FETCH 2 (BODY.PEEK[])")  # a prefetched body
    client.ok("FETCH 1:* (BODY.PEEK[])")  # warm: cache hits (3 was prefetched too)
    assert b"BAD" in client.command("FETCH")[1]
    values = _scrape(observed)
    assert values["imapproxy_sessions_open"] == 2
    assert values['imapproxy_logins_total{result="ok"}'] == 1
    assert values['imapproxy_logins_total{result="failed"}'] == 1  # the upstream's refusal
    assert values['imapproxy_guard_events_total{event="known_wrong_password"}'] == 1
    assert values['imapproxy_guard_events_total{event="penalty"}'] >= 1
    assert values['imapproxy_commands_total{command="FETCH",result="OK"}'] == 3
    assert values["imapproxy_prefetched_bodies_total"] == 2
    assert values["imapproxy_prefetch_hits_total"] == 2
    assert values['imapproxy_commands_total{command="FETCH",result="BAD"}'] == 1
    assert values['imapproxy_commands_total{command="SELECT",result="OK"}'] == 1
    assert values['imapproxy_upstream_round_trip_seconds_count{command="SELECT"}'] == 1
    assert values['imapproxy_upstream_round_trip_seconds_sum{command="SELECT"}'] > 0
    assert values["imapproxy_upstream_connections"] == 1
    assert values["imapproxy_cache_entries"] == 3
    assert values["imapproxy_cache_memory_entries"] == 3  # the hot tier holds them too
    assert values["imapproxy_cache_memory_bytes"] >= sum(map(len, generated(3)))
    assert values["imapproxy_cache_hits_total"] >= 3
    client.ok("LOGOUT")
    assert client.is_closed()
    bad.close()
    for _ in range(50):
        values = _scrape(observed)
        if values["imapproxy_sessions_open"] == 0:
            break
        time.sleep(0.1)
    assert values["imapproxy_sessions_open"] == 0
    assert values["imapproxy_sessions_total"] == 2
    # still open: parked for the user's next login (upstream.reuse_idle_seconds)
    assert values["imapproxy_upstream_connections"] == 1
    client = raw_factory(observed.host, observed.port)
    client.login(account.user, account.password)
    values = _scrape(observed)
    assert values['imapproxy_upstream_connection_events_total{event="reused"}'] == 1
    assert values["imapproxy_upstream_connections"] == 1


def test_who_lists_sessions_and_kick_ends_them(proxy: RunningProxy, account: Any,
                                               raw_factory: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    raw_factory(proxy.host, proxy.port)  # a second session, not logged in
    socket_path = str(proxy.config.admin_socket)
    assert main(["who", "--socket", socket_path]) == 0
    out = capsys.readouterr().out
    assert account.user in out and "INBOX" in out and "2 sessions" in out
    assert main(["who", "--socket", socket_path, "--json"]) == 0
    assert '"mailbox": "INBOX"' in capsys.readouterr().out

    parked = raw_factory(proxy.host, proxy.port)  # logs out: its upstream connection parks
    parked.login(account.user, account.password)
    parked.ok("LOGOUT")
    for _ in range(50):
        if proxy.app.pool.parked == 1:
            break
        time.sleep(0.1)
    assert proxy.app.pool.parked == 1
    assert main(["kick", account.user, "--socket", socket_path]) == 0
    assert (f"ended 1 sessions of {account.user}, closed 1 parked upstream connections"
            in capsys.readouterr().out)
    assert client.is_closed()
    assert proxy.app.pool.parked == 0
    assert main(["kick", "nobody-here", "--socket", socket_path]) == 0
    assert "ended 0 sessions" in capsys.readouterr().out


def test_who_without_a_proxy_says_so(tmp_path: Any,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who", "--socket", str(tmp_path / "none.sock")]) == 1
    assert "no proxy answers" in capsys.readouterr().err
