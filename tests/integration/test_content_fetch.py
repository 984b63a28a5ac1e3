"""FETCH of content items through the proxy: computed from cached bytes, equal to Dovecot's
direct answer item by item, bodies fetched once, \\Seen set upstream, isolated per user."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import imaplib
import time
from pathlib import Path
from typing import Any

import pytest

from imapproxy.protocol.response import DataResponse, parse_response
from imapproxy.protocol.tokens import Atom, ParenList, serialize_tokens
from imapproxy.server.fetch import ContentFetch
from imapproxy.server.mailbox import FRESH_SECONDS
from tests.conftest import make_account

from .conftest import RawClient, RunningProxy, messages, seed_mailbox

ITEMS = ("UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[] "
         "BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[1.MIME] "
         "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)] BODY.PEEK[]<10.200>")
# Decoded content, on the generated messages (some corpus files have encodings that Dovecot
# refuses to decode: NO [UNKNOWN-CTE], checked in test_mime_fidelity).
BINARY_ITEMS = "UID BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[1]<3.50>"
COUNT = 40 + len(messages(0))  # generated messages, then the real-world corpus


def fetch_map(client: RawClient, command: str) -> dict[int, dict[bytes, bytes]]:
    """seq -> {item name: value bytes} for every FETCH response to ``command``."""
    untagged = client.ok(command)
    out: dict[int, dict[bytes, bytes]] = {}
    for raw in untagged:
        response = parse_response(raw)
        if not isinstance(response, DataResponse) or response.name != "FETCH":
            continue
        assert response.number is not None
        (items,) = response.args
        assert isinstance(items, ParenList)
        pairs = out.setdefault(response.number, {})
        for name, value in zip(items.items[::2], items.items[1::2], strict=True):
            assert isinstance(name, Atom)
            pairs[name.value.encode()] = serialize_tokens((value,))
    return out


def twin_clients(proxy: RunningProxy, account: Any, raw_factory: Any,
                 select: str = "EXAMINE INBOX") -> tuple[RawClient, RawClient]:
    """(through the proxy, direct to Dovecot), both logged in with the mailbox selected."""
    through = raw_factory(proxy.host, proxy.port)
    direct = raw_factory(account.host, account.port)
    for client in (through, direct):
        client.login(account.user, account.password)
        client.ok(select)
    return through, direct


@pytest.fixture
def seeded(account: Any, imap_direct: imaplib.IMAP4) -> Any:
    seed_mailbox(imap_direct, "INBOX", messages(40))
    return account


def test_every_item_equals_dovecot(seeded: Any, proxy: RunningProxy,
                                   raw_factory: Any) -> None:
    through, direct = twin_clients(proxy, seeded, raw_factory)
    want = fetch_map(direct, f"FETCH 1:* ({ITEMS})")
    cold = fetch_map(through, f"FETCH 1:* ({ITEMS})")
    warm = fetch_map(through, f"UID FETCH 1:* ({ITEMS})")
    assert len(want) == COUNT
    assert cold == want
    assert warm == want
    binary = fetch_map(direct, f"FETCH 1:40 ({BINARY_ITEMS})")
    assert len(binary) == 40
    assert fetch_map(through, f"FETCH 1:40 ({BINARY_ITEMS})") == binary


def test_bodies_cross_the_upstream_once(seeded: Any, proxy: RunningProxy,
                                        raw_factory: Any) -> None:
    through = raw_factory(proxy.host, proxy.port)
    through.login(seeded.user, seeded.password)
    through.ok("EXAMINE INBOX")
    fetch_map(through, "FETCH 1:* (BODY.PEEK[])")
    cache = proxy.app.cache
    assert cache is not None
    before = cache.stats()
    assert before.entries >= COUNT
    again = fetch_map(through, "FETCH 1:* (RFC822.SIZE BODYSTRUCTURE BODY.PEEK[TEXT])")
    after = cache.stats()
    assert len(again) == COUNT
    assert after.hits - before.hits == COUNT
    assert after.misses == before.misses


def test_non_peek_body_sets_seen_upstream(seeded: Any, proxy: RunningProxy,
                                          raw_factory: Any) -> None:
    through = raw_factory(proxy.host, proxy.port)
    through.login(seeded.user, seeded.password)
    through.ok("SELECT INBOX")
    through.ok("STORE 1 -FLAGS.SILENT (\\Seen)")
    got = fetch_map(through, "FETCH 1 (BODY[TEXT])")
    assert b"\\Seen" in got[1][b"FLAGS"]  # the answer reports the flag it set
    direct = raw_factory(seeded.host, seeded.port)
    direct.login(seeded.user, seeded.password)
    direct.ok("EXAMINE INBOX")
    assert b"\\Seen" in fetch_map(direct, "FETCH 1 (FLAGS)")[1][b"FLAGS"]


def test_users_never_see_each_others_cached_bytes(dovecot: Any, proxy: RunningProxy,
                                                  raw_factory: Any) -> None:
    alice, bob = make_account(dovecot), make_account(dovecot)
    for account, word in ((alice, b"alice"), (bob, b"bob")):
        imap = imaplib.IMAP4(account.host, account.port, timeout=10)
        imap.login(account.user, account.password)
        imap.append("INBOX", None, None, b"Subject: " + word + b"\r\n\r\nbody of " + word +
                    b"\r\n")
        imap.logout()
    for _ in range(2):  # cold, then from the cache
        for account, word in ((alice, b"alice"), (bob, b"bob"), (alice, b"alice")):
            client = raw_factory(proxy.host, proxy.port)
            client.login(account.user, account.password)
            client.ok("EXAMINE INBOX")
            body = fetch_map(client, "UID FETCH 1 (BODY.PEEK[])")[1][b"BODY[]"]
            assert b"body of " + word in body
            assert (b"bob" in body) == (word == b"bob")


def test_reading_one_message_cold_prefetches_the_next_ones(seeded: Any, proxy: RunningProxy,
                                                           raw_factory: Any) -> None:
    prefetch = proxy.config.upstream.prefetch_count
    assert prefetch == 32
    client = raw_factory(proxy.host, proxy.port)
    client.login(seeded.user, seeded.password)
    client.ok("EXAMINE INBOX")
    fetch_map(client, "FETCH 1 (BODY.PEEK[])")
    client.ok("NOOP")  # the next command starts once the prefetch is done
    cache = proxy.app.cache
    assert cache is not None
    assert cache.stats().entries == 1 + prefetch
    before = cache.stats()
    got = fetch_map(client, f"FETCH 2:{1 + prefetch} (BODY.PEEK[] BODYSTRUCTURE)")
    after = cache.stats()
    assert sorted(got) == list(range(2, 2 + prefetch))
    assert after.hits - before.hits == prefetch
    assert after.misses == before.misses
    # Past the prefetched ones it is cold again, and prefetches again.
    fetch_map(client, f"FETCH {2 + prefetch} (BODY.PEEK[])")
    client.ok("NOOP")
    assert cache.stats().entries == min(COUNT, 2 + 2 * prefetch)


def test_prefetch_off(seeded: Any, proxy_factory: Any, raw_factory: Any) -> None:
    proxy = proxy_factory(upstream={"prefetch_count": 0})
    client = raw_factory(proxy.host, proxy.port)
    client.login(seeded.user, seeded.password)
    client.ok("EXAMINE INBOX")
    fetch_map(client, "FETCH 3 (BODY.PEEK[])")
    client.ok("NOOP")
    assert proxy.app.cache.stats().entries == 1


def test_large_cached_message_is_streamed_byte_for_byte(account: Any, proxy: RunningProxy,
                                                        raw_factory: Any,
                                                        streamed_uids: list[int]) -> None:
    streamed = streamed_uids
    big = b"Subject: big\r\n\r\n" + b"".join(b"line %07d " % i + b"z" * 60 + b"\r\n"
                                             for i in range(40_000))  # ~3 MB
    imap = imaplib.IMAP4(account.host, account.port, timeout=10)
    imap.login(account.user, account.password)
    imap.append("INBOX", None, None, big)
    imap.logout()
    through, direct = twin_clients(proxy, account, raw_factory)
    items = "UID FLAGS RFC822.SIZE BODY.PEEK[]"
    want = direct.ok(f"FETCH 1 ({items})")
    cold = through.ok(f"FETCH 1 ({items})")
    cache = proxy.app.cache
    assert cache is not None
    before = cache.stats()
    warm = through.ok(f"FETCH 1 ({items})")  # from the cache file, in chunks
    assert cache.stats().hits == before.hits + 1
    assert streamed == [1, 1]  # cold (once cached) and warm answers came from the file
    assert cold == want
    assert warm == want
    assert fetch_map(through, "FETCH 1 (RFC822)")[1][b"RFC822"].endswith(big[-100:])


def test_large_messages_stream_only_when_a_body_is_asked(account: Any, proxy: RunningProxy,
                                                         raw_factory: Any) -> None:
    big = b"Subject: big\r\n\r\n" + b"".join(b"line %07d\r\n" % i for i in range(150_000))
    imap = imaplib.IMAP4(account.host, account.port, timeout=10)
    imap.login(account.user, account.password)
    imap.append("INBOX", None, None, big)
    imap.logout()
    through, direct = twin_clients(proxy, account, raw_factory)
    for asked in ("UID RFC822.SIZE", "BODY.PEEK[]", "UID RFC822.SIZE", "RFC822.SIZE FLAGS",
                  "BODY.PEEK[] RFC822", "RFC822 RFC822.SIZE"):
        assert through.ok(f"FETCH 1 ({asked})") == direct.ok(f"FETCH 1 ({asked})"), asked


def test_sessions_reading_one_message_at_once_fetch_it_upstream_once(
        account: Any, proxy: RunningProxy, raw_factory: Any,
        monkeypatch: pytest.MonkeyPatch, streamed_uids: list[int]) -> None:
    fetched: list[list[int]] = []
    original = ContentFetch._fetch_bodies

    async def slow_counting(self: ContentFetch, uids: list[int]) -> dict[int, bytes]:
        fetched.append(list(uids))
        await asyncio.sleep(0.5)  # the other sessions ask while this fetch is in flight
        return await original(self, uids)

    monkeypatch.setattr(ContentFetch, "_fetch_bodies", slow_counting)
    streamed = streamed_uids
    big = b"Subject: shared\r\n\r\n" + b"x" * 70 + b"\r\n" * 1 + b"".join(
        b"row %06d\r\n" % i for i in range(200_000))  # ~2 MB: streamed to the waiters
    imap = imaplib.IMAP4(account.host, account.port, timeout=10)
    imap.login(account.user, account.password)
    imap.append("INBOX", None, None, big)
    imap.logout()
    clients = []
    for _ in range(4):
        client = raw_factory(proxy.host, proxy.port)
        client.login(account.user, account.password)
        client.ok("EXAMINE INBOX")
        clients.append(client)
    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        answers = list(pool.map(lambda c: fetch_map(c, "FETCH 1 (BODY.PEEK[])"), clients))
    assert fetched == [[1]]  # one upstream body fetch for four sessions
    assert streamed == [1] * 4  # each from the cache file, none holding the message whole
    for answer in answers:
        assert answer[1][b"BODY[]"].endswith(big[-50:])
        assert answer == answers[0]


def _fetch_all(proxy: RunningProxy, raw_factory: Any, account: Any,
               items: str = "BODY.PEEK[] BODYSTRUCTURE") -> dict[int, dict[bytes, bytes]]:
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    client.ok("EXAMINE INBOX")
    return fetch_map(client, f"FETCH 1:* ({items})")


def test_cache_survives_a_restart(seeded: Any, proxy_factory: Any, raw_factory: Any,
                                  tmp_path: Path) -> None:
    template = proxy_factory()  # only for a config pointing at the test Dovecot
    config = dataclasses.replace(template.config, cache_dir=tmp_path / "cache")
    one = RunningProxy(config)
    try:
        cold = _fetch_all(one, raw_factory, seeded)
    finally:
        one.stop()
    two = RunningProxy(config)
    try:
        cache = two.app.cache
        assert cache is not None
        before = cache.stats()
        warm = _fetch_all(two, raw_factory, seeded)
        assert cache.stats().hits - before.hits == COUNT
        assert warm == cold
    finally:
        two.stop()


def test_corrupt_cache_entries_are_refetched_never_served(seeded: Any, proxy: RunningProxy,
                                                          raw_factory: Any) -> None:
    good = _fetch_all(proxy, raw_factory, seeded)
    files = [p for p in proxy.config.cache_dir.rglob("*.val")]
    assert files  # diskcache keeps the larger entries as files
    for path in files:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    cache = proxy.app.cache
    assert cache is not None
    before = cache.stats()
    # The hot tier (memory) still holds verified copies: served, the damage not even read.
    assert _fetch_all(proxy, raw_factory, seeded) == good
    assert cache.stats().corrupt == before.corrupt
    cache.hot.discard_where(lambda key: True)  # as if they had aged out of memory
    again = _fetch_all(proxy, raw_factory, seeded)
    assert again == good
    assert cache.stats().corrupt - before.corrupt == len(files)


def test_flags_changed_elsewhere_show_in_content_fetches(seeded: Any, proxy: RunningProxy,
                                                         raw_factory: Any) -> None:
    through = raw_factory(proxy.host, proxy.port)
    through.login(seeded.user, seeded.password)
    through.ok("SELECT INBOX")
    fetch_map(through, "FETCH 1:3 (FLAGS BODY.PEEK[])")  # now cached
    other = raw_factory(seeded.host, seeded.port)
    other.login(seeded.user, seeded.password)
    other.ok("SELECT INBOX")
    other.ok("STORE 2 FLAGS.SILENT (\\Flagged $Proxy)")
    got = fetch_map(through, "FETCH 1:3 (FLAGS BODY.PEEK[HEADER])")
    assert b"$Proxy" in got[2][b"FLAGS"] and b"\\Flagged" in got[2][b"FLAGS"]
    assert b"$Proxy" not in got[1][b"FLAGS"]


def _upstream_commands(proxy: RunningProxy) -> int:
    """Commands the (single) session of this proxy has sent upstream so far."""
    (session,) = list(proxy.app.sessions)
    assert session.upstream is not None
    return session.upstream._tag_counter


def test_content_of_known_messages_needs_no_upstream_round_trip(
        seeded: Any, proxy: RunningProxy, raw_factory: Any) -> None:
    through, direct = twin_clients(proxy, seeded, raw_factory, "SELECT INBOX")
    through.ok("FETCH 1:* (UID FLAGS)")  # relayed; the proxy learns every UID
    fetch_map(through, "FETCH 1:* (BODY.PEEK[])")  # bodies now cached
    asks = ("UID FETCH 7:9 (BODY.PEEK[] BODYSTRUCTURE)", "FETCH 3:5 (UID RFC822.SIZE ENVELOPE)",
            "FETCH * (BODY.PEEK[HEADER])")
    before = _upstream_commands(proxy)
    for ask in asks:
        assert fetch_map(through, ask) == fetch_map(direct, ask), ask
    assert _upstream_commands(proxy) == before

    # Another client expunges message 2: the proxy's view follows the upstream's EXPUNGE.
    other = raw_factory(seeded.host, seeded.port)
    other.login(seeded.user, seeded.password)
    other.ok("SELECT INBOX")
    other.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    assert any(b"EXPUNGE" in r for r in through.ok("NOOP"))
    direct.ok("NOOP")
    before = _upstream_commands(proxy)
    ask = "FETCH 2:4 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
    assert fetch_map(through, ask) == fetch_map(direct, ask)
    assert _upstream_commands(proxy) == before

    # A new message: its UID is unknown until the upstream names it, so the upstream is asked.
    other.ok("APPEND INBOX {16+}\r\nSubject: new\r\n\r\n")
    through.ok("NOOP")
    direct.ok("NOOP")
    before = _upstream_commands(proxy)
    ask = "FETCH * (UID BODY.PEEK[])"
    assert fetch_map(through, ask) == fetch_map(direct, ask)
    assert _upstream_commands(proxy) > before


def test_a_client_reading_one_message_at_a_time_is_served_locally(
        seeded: Any, proxy: RunningProxy, raw_factory: Any) -> None:
    through, direct = twin_clients(proxy, seeded, raw_factory)
    first = fetch_map(through, "UID FETCH 1 (BODY.PEEK[])")  # learns the UIDs, prefetches
    assert first == fetch_map(direct, "UID FETCH 1 (BODY.PEEK[])")
    through.ok("NOOP")  # the prefetch is done
    before = _upstream_commands(proxy)
    for uid in range(2, 2 + proxy.config.upstream.prefetch_count):
        ask = f"UID FETCH {uid} (BODY.PEEK[])"
        assert fetch_map(through, ask) == fetch_map(direct, ask)
    assert _upstream_commands(proxy) == before  # prefetched, and no state round trips


def test_select_learns_every_uid_in_the_same_round_trip(seeded: Any, proxy: RunningProxy,
                                                        raw_factory: Any) -> None:
    through, direct = twin_clients(proxy, seeded, raw_factory, "SELECT INBOX")
    (session,) = list(proxy.app.sessions)
    assert session.mailbox is not None
    assert session.mailbox.uids_complete and len(session.mailbox.uids) == COUNT
    # The client saw exactly what Dovecot says to SELECT (the UID SEARCH stayed internal).
    assert through.ok("SELECT INBOX") == direct.ok("SELECT INBOX")


WEBMAIL_PAGE = "FETCH {first}:{last} (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])"


def _second_visit(proxy: RunningProxy, seeded: Any, raw_factory: Any,
                  select: str = "SELECT INBOX") -> tuple[RawClient, RawClient, int]:
    """A session that read the mailbox (so the proxy knows its size and caches its bodies)
    has logged out; a new one has just selected it, as webmail does per page view. Returns
    (through the proxy, direct, upstream commands sent so far by the new session)."""
    first, _ = twin_clients(proxy, seeded, raw_factory, "SELECT INBOX")
    fetch_map(first, "FETCH 1:* (UID FLAGS BODY.PEEK[])")
    first.ok("LOGOUT")
    through, direct = twin_clients(proxy, seeded, raw_factory, select)
    return through, direct, _upstream_commands(proxy)


def test_state_read_with_select_answers_the_next_fetch(
        seeded: Any, proxy: RunningProxy, raw_factory: Any) -> None:
    """select_state_count: the newest messages' FLAGS/UID/RFC822.SIZE came with the SELECT,
    so the webmail page FETCH right after it needs no upstream round trip, and answers what
    Dovecot answers."""
    through, direct, before = _second_visit(proxy, seeded, raw_factory)
    ask = WEBMAIL_PAGE.format(first=COUNT - 49, last=COUNT)
    assert fetch_map(through, ask) == fetch_map(direct, ask)
    assert _upstream_commands(proxy) == before
    # Only the first FETCH after the SELECT: the next one asks the upstream again.
    ask = "FETCH 1:3 (UID FLAGS BODY.PEEK[HEADER])"
    assert fetch_map(through, ask) == fetch_map(direct, ask)
    assert _upstream_commands(proxy) > before


@pytest.mark.parametrize("between", ["NOOP", "wait", "older", "state FETCH"])
def test_state_read_with_select_is_not_used_when_it_may_be_stale(
        seeded: Any, proxy: RunningProxy, raw_factory: Any, between: str) -> None:
    """Another client changes flags right after the SELECT. A command in between, more than
    FRESH_SECONDS, or messages older than those read with the SELECT: the upstream is asked,
    and the change shows."""
    through, direct, _ = _second_visit(proxy, seeded, raw_factory)
    other = raw_factory(seeded.host, seeded.port)
    other.login(seeded.user, seeded.password)
    other.ok("SELECT INBOX")
    target = 3 if between == "older" else COUNT
    other.ok(f"STORE {target} +FLAGS.SILENT ($Stale)")
    if between == "NOOP":
        through.ok("NOOP")
    elif between == "state FETCH":  # relayed as it is: the client is told the new flag
        assert b"$Stale" in through.ok(f"FETCH {target} (FLAGS)")[0]
    elif between == "wait":
        time.sleep(FRESH_SECONDS + 0.2)
    before = _upstream_commands(proxy)
    ask = f"FETCH {target} (UID FLAGS BODY.PEEK[HEADER])"
    got = fetch_map(through, ask)
    assert b"$Stale" in got[target][b"FLAGS"]
    assert got == fetch_map(direct, ask)
    assert _upstream_commands(proxy) > before


def test_select_state_off(seeded: Any, proxy_factory: Any, raw_factory: Any) -> None:
    proxy = proxy_factory(upstream={"select_state_count": 0})
    through, direct, before = _second_visit(proxy, seeded, raw_factory)
    ask = WEBMAIL_PAGE.format(first=COUNT - 4, last=COUNT)
    assert fetch_map(through, ask) == fetch_map(direct, ask)
    assert _upstream_commands(proxy) > before


@pytest.mark.parametrize("condstore", ["ENABLE CONDSTORE", "SELECT INBOX (CONDSTORE)"])
def test_no_state_read_with_select_once_condstore_is_on(
        seeded: Any, proxy: RunningProxy, raw_factory: Any, condstore: str) -> None:
    """With CONDSTORE on, FETCH answers may carry MODSEQ (RFC 7162 lets a server add it):
    the page FETCH goes upstream as it is, and equals Dovecot's."""
    through, direct, _ = _second_visit(proxy, seeded, raw_factory, select="EXAMINE INBOX")
    for client in (through, direct):
        client.ok(condstore)
        if condstore.startswith("ENABLE"):
            client.ok("SELECT INBOX")
    before = _upstream_commands(proxy)
    ask = WEBMAIL_PAGE.format(first=COUNT - 9, last=COUNT)
    assert fetch_map(through, ask) == fetch_map(direct, ask)
    assert _upstream_commands(proxy) > before
