"""Shared IDLE with one upstream connection: idling followers give their connection back and
are told news in their own sequence numbers; at DONE they get one again and their numbers are
the upstream's own. A counting relay in front of the real Dovecot counts open connections."""

from __future__ import annotations

import imaplib
import re
import time
from typing import Any

from .conftest import RawClient, messages, status_of
from .test_upstream_pool import (
    CountingRelay,
    ProxyFactory,
    RawFactory,
    counting_relay,
    idle,
    idling_pair,
    inbox,
    read_until,
    relayed,
    wait_for,
)

__all__ = ["counting_relay", "inbox"]  # fixtures


def direct(account: Any) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(account.host, account.port, timeout=10)
    imap.login(account.user, account.password)
    imap.select("INBOX")
    return imap


def view(lines: list[bytes]) -> list[tuple[int, int, frozenset[bytes]]]:
    """(seq, UID, flags without \\Recent) of ``n FETCH (UID u FLAGS (...))`` answers."""
    out = []
    for line in lines:
        m = re.search(rb"(\d+) (?:FETCH )?\(.*UID (\d+)", line)
        flags = re.search(rb"FLAGS \(([^)]*)\)", line)
        if m and flags:
            names = frozenset(flags.group(1).split()) - {b"\\Recent"}
            out.append((int(m.group(1)), int(m.group(2)), names))
    return sorted(out)


def direct_view(account: Any) -> list[tuple[int, int, frozenset[bytes]]]:
    imap = direct(account)
    _, data = imap.fetch("1:*", "(UID FLAGS)")
    imap.logout()
    return view([d for d in data if isinstance(d, bytes)])


def released_pair(proxy_factory: ProxyFactory, relay: CountingRelay, raw_factory: RawFactory,
                  account: Any) -> tuple[Any, RawClient, RawClient]:
    """A shared-IDLE proxy, a leader and a follower idling, the follower's connection given
    back (parked)."""
    proxy = relayed(proxy_factory, relay, shared_idle=True, idle_release_after=0.0)
    leader, follower = idling_pair(proxy, raw_factory, account)
    wait_for(lambda: proxy.app.pool.parked == 1)
    return proxy, leader, follower


def done(client: RawClient, tag: str) -> list[bytes]:
    client.send(b"DONE\r\n")
    untagged, tagged = client.read_until_tagged(tag)
    assert status_of(tagged) == b"OK", (tagged, untagged)
    return untagged


def test_ten_idling_clients_one_upstream_connection(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    proxy = relayed(proxy_factory, counting_relay, shared_idle=True, idle_release_after=0.0,
                    reuse_idle_seconds=1.0)
    clients = [raw_factory(proxy.host, proxy.port) for _ in range(10)]
    for client in clients:
        client.login(account.user, account.password)
        client.ok("SELECT INBOX")
    # Different views: the last client is told of an expunge and a new message, the others
    # are not told until they idle.
    imap = direct(account)
    imap.store("2", "+FLAGS", "\\Deleted")
    imap.expunge()
    imap.append("INBOX", None, None, messages(4)[3])
    seen = clients[9].ok("NOOP")
    assert b"* 2 EXPUNGE\r\n" in seen and b"* 3 EXISTS\r\n" in seen, seen
    for n, client in enumerate(clients):
        idle(client, f"i{n}")
    for client in clients[:9]:
        assert read_until(client, b" EXISTS")[-1] == b"* 3 EXISTS\r\n"
    counting_relay.wait_live(1, timeout=8.0)  # the leader's; parked ones expired
    assert proxy.app.pool.idle.leaders == 1 and proxy.app.pool.idle.idling == 10

    started = time.monotonic()
    imap.append("INBOX", None, None, messages(5)[4])
    for client in clients:
        assert b"* 4 EXISTS\r\n" in read_until(client, b" EXISTS")
    woke = time.monotonic() - started
    imap.store("1", "+FLAGS", "\\Deleted")
    imap.expunge()  # the first message: 1 in every client's numbers
    for client in clients:
        assert read_until(client, b" EXPUNGE")[-1] == b"* 1 EXPUNGE\r\n"
    imap.store("2", "+FLAGS", "\\Flagged")
    for client in clients:
        line = read_until(client, b" FETCH ")[-1]
        assert line.startswith(b"* 2 FETCH (") and b"\\Flagged" in line, line
    imap.logout()
    counting_relay.wait_live(1, timeout=8.0)

    expected = direct_view(account)
    assert [uid for _, uid, _ in expected] == [3, 4, 5]
    for n, client in enumerate(clients):
        done(client, f"i{n}")
        assert view(client.ok("FETCH 1:* (UID FLAGS)")) == expected, n
    assert counting_relay.live == 10
    assert woke < 5


def test_leader_leaving_hands_over_to_a_released_follower(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    """The leader leaving hands over to a released follower: it takes a connection again
    (nothing parked: a new login), runs the upstream IDLE there, and its numbers are that
    connection's."""
    proxy = relayed(proxy_factory, counting_relay, shared_idle=True, idle_release_after=0.0,
                    max_parked_per_user=0)
    leader, follower = idling_pair(proxy, raw_factory, account)
    counting_relay.wait_live(1)
    done(leader, "a")  # the follower leads now: its IDLE runs on a connection again
    wait_for(lambda: counting_relay.live == 2)
    leader.ok("UID STORE 3 +FLAGS (\\Seen)")
    imap = direct(account)
    imap.store("1", "+FLAGS", "\\Deleted")
    imap.expunge()
    imap.logout()
    seen = read_until(follower, b" EXPUNGE")
    assert seen[-1] == b"* 1 EXPUNGE\r\n", seen
    assert any(u.startswith(b"* 3 FETCH") and b"\\Seen" in u for u in seen), seen
    untagged = done(follower, "b")
    assert not any(b"EXPUNGE" in u or b"EXISTS" in u for u in untagged), untagged
    expected = direct_view(account)
    assert [(seq, uid) for seq, uid, _ in expected] == [(1, 2), (2, 3)]
    assert view(follower.ok("FETCH 1:* (UID FLAGS)")) == expected
    assert b"* 1 EXPUNGE\r\n" in leader.ok("NOOP")
    assert view(leader.ok("FETCH 1:* (UID FLAGS)")) == expected
    assert proxy.app.pool.idle.idling == 0


def test_done_right_after_a_change_tells_it_once(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    """Whether the shared reading or the reconciliation at DONE tells it, the follower hears
    of each change exactly once, before its tagged OK."""
    proxy, leader, follower = released_pair(proxy_factory, counting_relay, raw_factory, account)
    imap = direct(account)
    imap.store("2", "+FLAGS", "\\Deleted")
    imap.expunge()
    imap.append("INBOX", None, None, messages(4)[3])
    imap.logout()
    untagged = done(follower, "b")
    assert untagged.count(b"* 2 EXPUNGE\r\n") == 1, untagged
    assert untagged[-1] == b"* 3 EXISTS\r\n", untagged
    expected = direct_view(account)
    assert view(follower.ok("FETCH 1:* (UID FLAGS)")) == expected
    assert proxy.app.pool.reuses >= 1  # the parked connection served again
    done(leader, "a")


def test_qresync_follower_gets_vanished_and_modseq(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    proxy = relayed(proxy_factory, counting_relay, shared_idle=True, idle_release_after=0.0)
    leader, follower = (raw_factory(proxy.host, proxy.port) for _ in range(2))
    leader.login(account.user, account.password)
    leader.ok("SELECT INBOX")
    follower.login(account.user, account.password)
    follower.ok("ENABLE QRESYNC")
    follower.ok("SELECT INBOX")
    idle(leader, "a")
    idle(follower, "b")
    counting_relay.wait_live(1)  # ENABLEd connections are never parked: logged out
    imap = direct(account)
    imap.store("3", "+FLAGS", "\\Flagged")
    line = read_until(follower, b"\\Flagged")[-1]  # after the view it was told at release
    assert re.fullmatch(rb"\* 3 FETCH \(UID 3 FLAGS \([^)]*\\Flagged[^)]*\) MODSEQ \(\d+\)\)\r\n",
                        line), line
    imap.store("2", "+FLAGS", "\\Deleted")
    imap.expunge()
    imap.logout()
    assert read_until(follower, b"VANISHED")[-1] == b"* VANISHED 2\r\n"
    done(follower, "b")
    expected = direct_view(account)
    assert view(follower.ok("FETCH 1:* (UID FLAGS)")) == expected
    done(leader, "a")


def test_leader_renews_its_upstream_idle(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    proxy = relayed(proxy_factory, counting_relay, shared_idle=True, idle_renew_seconds=0.3)
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    counting_relay.throttle_on = b" IDLE\r\n"
    idle(client, "a")
    wait_for(lambda: len(counting_relay.seen) >= 3, timeout=5.0)
    assert len(counting_relay.seen) >= 3  # re-issued, unseen by the client
    imap = direct(account)
    imap.append("INBOX", None, None, messages(4)[3])
    imap.logout()
    assert read_until(client, b" EXISTS")[-1] == b"* 4 EXISTS\r\n"
    untagged = done(client, "a")
    assert not any(u.startswith(b"+") for u in untagged), untagged


def test_changes_while_no_one_leads_reach_every_follower(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    """The new leader waits for a connection slot while mail is expunged: its IDLE will not
    report that (its SELECT saw it), so it tells the other followers to look."""
    proxy = relayed(proxy_factory, counting_relay, shared_idle=True, idle_release_after=0.0,
                    max_parked_per_user=0, max_connections_per_user=2, queue_timeout=10.0)
    leader, first, second, other = (raw_factory(proxy.host, proxy.port) for _ in range(4))
    leader.login(account.user, account.password)
    leader.ok("SELECT INBOX")
    idle(leader, "a")
    for client, tag in ((first, "b"), (second, "c")):
        client.login(account.user, account.password)
        client.ok("SELECT INBOX")
        idle(client, tag)
        counting_relay.wait_live(1)  # released
    other.login(account.user, account.password)  # both slots held: the next leader waits
    done(leader, "a")
    imap = direct(account)
    imap.store("2", "+FLAGS", "\\Deleted")
    imap.expunge()
    imap.logout()
    leader.ok("LOGOUT")
    assert read_until(first, b" EXPUNGE")[-1] == b"* 2 EXPUNGE\r\n"
    other.ok("LOGOUT")  # a slot for the reading of the last follower
    assert read_until(second, b" EXPUNGE")[-1] == b"* 2 EXPUNGE\r\n"
    expected = direct_view(account)
    for client, tag in ((first, "b"), (second, "c")):
        done(client, tag)
        assert view(client.ok("FETCH 1:* (UID FLAGS)")) == expected


def test_empty_mailbox_then_first_message(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any) -> None:
    proxy = relayed(proxy_factory, counting_relay, shared_idle=True, idle_release_after=0.0)
    leader, follower = (raw_factory(proxy.host, proxy.port) for _ in range(2))
    for client in (leader, follower):
        client.login(account.user, account.password)
        assert b"* 0 EXISTS\r\n" in client.ok("EXAMINE INBOX")
    idle(leader, "a")
    idle(follower, "b")
    wait_for(lambda: proxy.app.pool.parked == 1)
    imap = direct(account)
    imap.append("INBOX", None, None, messages(1)[0])
    imap.logout()
    assert read_until(follower, b" EXISTS")[-1] == b"* 1 EXISTS\r\n"
    done(follower, "b")
    assert view(follower.ok("FETCH 1:* (UID FLAGS)")) == direct_view(account)
    done(leader, "a")


def test_a_new_keyword_reaches_released_followers_as_a_flags_line(
        proxy_factory: ProxyFactory, counting_relay: CountingRelay, raw_factory: RawFactory,
        account: Any, inbox: list[bytes]) -> None:
    """Another client uses a keyword the mailbox never had: Dovecot's FLAGS list grows, and
    a released follower is told the new ``* FLAGS`` line before the FETCH that carries it,
    as the leader is by its own connection."""
    _, leader, follower = released_pair(proxy_factory, counting_relay, raw_factory, account)
    imap = direct(account)
    imap.store("2", "+FLAGS", "$BrandNew")
    imap.logout()
    for client in (follower, leader):
        seen = read_until(client, b"$BrandNew")
        while not seen[-1].startswith(b"* 2 FETCH ("):  # the FETCH that carries it
            seen += read_until(client, b"$BrandNew")
        new = [line for line in seen if b"$BrandNew" in line]
        assert new[0].startswith(b"* FLAGS (") and b"\\Seen" in new[0], seen
    untagged = done(follower, "b")
    assert not any(line.startswith(b"* FLAGS") for line in untagged), untagged  # told once
    done(leader, "a")
