"""The filter chain end to end: real Dovecot, the proxy, imaplib and raw clients.

The sample filters (tests/filtering/sample_filters.py) rewrite the Subject and add a line,
so every content item differs from the upstream's. The fidelity check is the project's: the
filtered bytes are APPENDed to Dovecot directly, and what the proxy answers for the filtered
message must equal what Dovecot answers for those bytes.
"""

from __future__ import annotations

import imaplib
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imapproxy.cache import MessageCache
from imapproxy.config import CacheConfig, FilterRule, ListenerConfig
from imapproxy.protocol.response import fetch_attributes, parse_response
from imapproxy.protocol.tokens import Literal, Quoted, Token, serialize_tokens
from tests.filtering.sample_filters import TagFilter, registered, tag
from tests.integration.conftest import (
    TIMEOUT,
    ProxyFactory,
    RawClient,
    RunningProxy,
    imap_login,
    quote,
    status_of,
)
from tests.mailgen import generated, seed_mailbox

Start = Callable[..., RunningProxy]
ITEMS = ("RFC822.SIZE", "BODYSTRUCTURE", "ENVELOPE", "BODY[]", "BODY[HEADER]", "BODY[TEXT]",
         "BODY[1]", "BODY[1.MIME]", "BODY[HEADER.FIELDS (SUBJECT FROM)]", "BODY[TEXT]<4.40>",
         "BINARY.SIZE[1]", "RFC822.HEADER")


@pytest.fixture(autouse=True)
def sample_filters() -> Iterator[None]:
    with registered():
        yield


@pytest.fixture
def start(proxy_factory: ProxyFactory) -> Start:
    """``start(filters=("tag",), settings=..., rules=..., fixups=..., quirks=...,
    listeners=..., cache_dir=...)``: a proxy in front of the test Dovecot."""

    def factory(filters: tuple[str, ...] = ("tag",), *, settings: dict[str, Any] | None = None,
                rules: tuple[FilterRule, ...] = (), fixups: tuple[str, ...] = (),
                quirks: tuple[str, ...] = (), listeners: tuple[ListenerConfig, ...] = (),
                cache_dir: Path | None = None) -> RunningProxy:
        fields: dict[str, Any] = {
            "listeners": listeners or (ListenerConfig("127.0.0.1", 0, filters=filters,
                                                      fixups=fixups),),
            "filter_rules": rules, "filter_settings": settings or {}}
        if cache_dir is not None:
            fields["cache_dir"] = cache_dir
        return proxy_factory(upstream={"quirks": quirks}, config_fields=fields)

    return factory


def raw_login(proxy: RunningProxy, account: Any, port: int | None = None) -> RawClient:
    client = RawClient(proxy.host, port or proxy.port, timeout=TIMEOUT)
    client.login(account.user, account.password)
    return client


def fetch_items(client: RawClient, command: str) -> list[dict[str, Token]]:
    """The FETCH responses of ``command``, as {item: value} each, in order."""
    untagged = client.ok(command)
    out = []
    for response in untagged:
        items = fetch_attributes(parse_response(response))
        if items is not None:
            out.append(items)
    return out


def body_of(items: dict[str, Token], name: str = "BODY[]") -> bytes:
    token = items[name]
    assert isinstance(token, (Literal, Quoted))
    return token.value


def direct_bodies(imap: imaplib.IMAP4, mailbox: str = "INBOX") -> list[bytes]:
    imap.select(mailbox, readonly=True)
    typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK"
    return [part[1] for part in data if isinstance(part, tuple)]


SAMPLE = generated(17)  # one of every shape mailgen makes


def test_every_item_comes_from_the_filtered_bytes(start: Start, account: Any,
                                                  imap_direct: imaplib.IMAP4) -> None:
    seed_mailbox(imap_direct, "INBOX", SAMPLE)
    originals = direct_bodies(imap_direct)
    seed_mailbox(imap_direct, "Expected", [tag(raw, b"FILTERED") for raw in originals])
    proxy = start()
    client = raw_login(proxy, account)
    client.ok("EXAMINE INBOX")
    wanted = "UID FETCH 1:* (" + " ".join(i.replace("BODY[", "BODY.PEEK[") for i in ITEMS) + ")"
    cold = fetch_items(client, wanted)
    warm = fetch_items(client, wanted)
    direct = RawClient(account.host, account.port, timeout=TIMEOUT)
    direct.login(account.user, account.password)
    direct.ok("EXAMINE Expected")
    expected = fetch_items(direct, wanted)
    assert len(cold) == len(expected) == len(SAMPLE)
    for got, again, want, raw in zip(cold, warm, expected, originals, strict=True):
        assert body_of(got) == tag(raw, b"FILTERED")
        assert int(serialize_tokens((got["RFC822.SIZE"],))) == len(body_of(got))
        for name in want:
            if name != "UID":
                assert serialize_tokens((got[name],)) == serialize_tokens((want[name],)), name
                assert again[name] == got[name], name
    # A FETCH of RFC822.SIZE alone is the filtered size too.
    sizes = fetch_items(client, "FETCH 1:* (RFC822.SIZE)")
    assert [s["RFC822.SIZE"] for s in sizes] == [w["RFC822.SIZE"] for w in expected]


def test_a_failing_filter_leaves_the_message_unfiltered(start: Start, account: Any,
                                                        imap_direct: imaplib.IMAP4) -> None:
    ok, refused, buggy = (b"Subject: s\r\n\r\nfine\r\n", b"Subject: s\r\n\r\nFAILME\r\n",
                          b"Subject: s\r\n\r\nCRASHME\r\n")
    seed_mailbox(imap_direct, "INBOX", [ok, refused, buggy])
    proxy = start(settings={"tag": {"fail_on": "FAILME", "crash_on": "CRASHME"}})
    client = raw_login(proxy, account)
    client.ok("SELECT INBOX")
    bodies = [body_of(i) for i in fetch_items(client, "FETCH 1:3 (BODY.PEEK[])")]
    assert bodies == [tag(ok, b"FILTERED"), refused, buggy]
    runs = proxy.app.metrics.registry.get_sample_value
    assert runs("imapproxy_filter_runs_total", {"filter": "tag", "result": "failed"}) == 2
    assert runs("imapproxy_filter_runs_total", {"filter": "tag", "result": "ok"}) == 1
    client.ok("NOOP")
    sizes = fetch_items(client, "FETCH 2 (RFC822.SIZE)")
    assert sizes[0]["RFC822.SIZE"].value == str(len(refused))  # type: ignore[union-attr]


def _variant_keys(cache_dir: Path, account: Any, proxy: RunningProxy) -> list[bytes]:
    with MessageCache(cache_dir, CacheConfig()) as cache:
        user = cache.for_user(proxy.config.upstream, account.user)
        return [k for k in user.mailboxes() if b"\0filtered:" in k]


def test_settings_are_part_of_the_cache_key(start: Start, account: Any,
                                            imap_direct: imaplib.IMAP4) -> None:
    seed_mailbox(imap_direct, "INBOX", SAMPLE[:3])
    originals = direct_bodies(imap_direct)
    cache_dir = Path(tempfile.mkdtemp(prefix="imapproxy-chain-"))
    try:
        seen: list[list[bytes]] = []
        for word in ("ONE", "TWO", "ONE"):
            proxy = start(settings={"tag": {"word": word}}, cache_dir=cache_dir)
            client = raw_login(proxy, account)
            client.ok("EXAMINE INBOX")
            seen.append([body_of(i) for i in fetch_items(client, "FETCH 1:* BODY.PEEK[]")])
            client.close()
            proxy.stop()
            assert seen[-1] == [tag(raw, word.encode()) for raw in originals]
        assert len(_variant_keys(cache_dir, account, proxy)) == 2
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def test_output_of_a_memory_only_filter_never_reaches_the_disk(
        start: Start, account: Any, imap_direct: imaplib.IMAP4) -> None:
    secret = b"Subject: s\r\n\r\nupstream-marker-4711\r\n"
    seed_mailbox(imap_direct, "INBOX", [secret])
    proxy = start(("secret",), settings={"secret": {"word": "PLAINTEXT-SECRET"}})
    client = raw_login(proxy, account)
    client.ok("EXAMINE INBOX")
    for _ in range(2):  # cold, then from memory
        got = fetch_items(client, "FETCH 1 (BODY.PEEK[] BODYSTRUCTURE)")
        assert body_of(got[0]) == tag(secret, b"PLAINTEXT-SECRET")
    client.ok("LOGOUT")
    stored = b"".join(p.read_bytes() for p in proxy.config.cache_dir.rglob("*") if p.is_file())
    assert b"upstream-marker-4711" in stored  # the upstream's bytes are cached
    assert b"PLAINTEXT-SECRET" not in stored
    assert not _variant_keys(proxy.config.cache_dir, account, proxy)


def test_search_content_keys_on_filtered_text(start: Start, account: Any,
                                              imap_direct: imaplib.IMAP4) -> None:
    msgs = [b"Subject: apples\r\n\r\nred\r\n", b"Subject: pears\r\n\r\ngreen\r\n",
            b"Subject: plums\r\n\r\nblue\r\n"]
    seed_mailbox(imap_direct, "INBOX", msgs, flags_cycle=("\\Seen", "", ""))
    proxy = start(settings={"tag": {"word": "zebra"}})
    client = imap_login(proxy.host, proxy.port, account.user, account.password)
    imap_direct.select("INBOX")
    client.select("INBOX")

    def search(imap: imaplib.IMAP4, *criteria: str) -> list[bytes]:
        typ, data = imap.uid("SEARCH", *criteria)
        assert typ == "OK", data
        return data[0].split()

    assert search(imap_direct, "BODY", "zebra") == []
    assert search(client, "BODY", "zebra") == [b"1", b"2", b"3"]
    assert search(client, "SUBJECT", '"[zebra] pears"') == [b"2"]
    assert search(client, "TEXT", "ZEBRA", "UNSEEN") == [b"2", b"3"]
    assert search(client, "OR", "BODY", "green", "HEADER", "Subject", "plums") == [b"2", b"3"]
    assert search(client, "NOT", "(BODY", "green)", "BODY", "zebra") == [b"1", b"3"]
    assert search(client, "BODY", "nowhere") == []
    assert search(client, "UNSEEN") == search(imap_direct, "UNSEEN")  # relayed as it was
    typ, data = client.search(None, "BODY", "blue")
    assert typ == "OK" and data[0].split() == [b"3"]  # sequence numbers, upstream's way
    client.logout()


def test_per_listener_user_and_client_selection(start: Start, account: Any,
                                                second_account: Any,
                                                imap_direct: imaplib.IMAP4) -> None:
    msg = b"Subject: hi\r\n\r\nbody\r\n"
    seed_mailbox(imap_direct, "INBOX", [msg])
    with imaplib.IMAP4(second_account.host, second_account.port, timeout=TIMEOUT) as other:
        other.login(second_account.user, second_account.password)
        seed_mailbox(other, "INBOX", [msg])
    rules = (FilterRule(client_name="K-9*", filters=("tag",)),
             FilterRule(user=account.user.upper(), filters=("secret",)))
    proxy = start(rules=rules, listeners=(
        ListenerConfig("127.0.0.1", 0, filters=("tag",)), ListenerConfig("127.0.0.1", 0)))
    plain_port = proxy.addresses[1][1]

    def read(who: Any, port: int, client_name: str | None = None) -> bytes:
        client = RawClient(proxy.host, port, timeout=TIMEOUT)
        if client_name is not None:
            client.ok(f'ID ("name" {quote(client_name)})')
        client.login(who.user, who.password)
        client.ok("EXAMINE INBOX")
        return body_of(fetch_items(client, "FETCH 1 BODY.PEEK[]")[0])

    assert read(second_account, proxy.port) == tag(msg, b"FILTERED")  # the listener's
    assert read(second_account, plain_port) == msg
    assert read(second_account, plain_port, "K-9 Mail") == tag(msg, b"FILTERED")
    assert read(account, plain_port) == tag(msg, b"FILTERED")  # the secret filter, per user
    assert read(account, plain_port, "k-9") == tag(msg, b"FILTERED")  # first rule wins


def test_append_filter_rewrites_what_goes_upstream(start: Start, account: Any,
                                                   imap_direct: imaplib.IMAP4) -> None:
    proxy = start(("append-marker",), settings={"append-marker": {"fail_on": "SECRET"}})
    client = imap_login(proxy.host, proxy.port, account.user, account.password)
    client.create("Sent")
    msg = b"Subject: draft\r\n\r\nhello\r\n"
    typ, data = client.append("Sent", None, None, msg)
    assert typ == "OK", data
    assert direct_bodies(imap_direct, "Sent") == [b"X-Appended-Via: imapproxy Sent\r\n" + msg]
    # A message the append filter cannot handle is refused, never stored as it came.
    typ, data = client.append("Sent", None, None, b"Subject: x\r\n\r\nSECRET\r\n")
    assert typ == "NO" and b"[CANNOT]" in data[0]
    assert len(direct_bodies(imap_direct, "Sent")) == 1
    client.noop()
    client.logout()


# --- client fixups and server quirks ---------------------------------------------------------


def _exists(responses: list[bytes]) -> list[bytes]:
    return [r for r in responses if r.endswith(b"EXISTS\r\n")]


def test_delay_newmail(start: Start, account: Any, imap_direct: imaplib.IMAP4) -> None:
    seed_mailbox(imap_direct, "INBOX", [b"Subject: 1\r\n\r\none\r\n"])
    plain = raw_login(start(()), account)
    fixed = raw_login(start((), fixups=("delay-newmail",)), account)
    for client in (plain, fixed):
        client.ok("SELECT INBOX")
    imap_direct.append("INBOX", None, None, b"Subject: new\r\n\r\nnew\r\n")
    assert _exists(plain.ok("FETCH 1 (FLAGS)")) == [b"* 2 EXISTS\r\n"]
    assert _exists(fixed.ok("FETCH 1 (FLAGS)")) == []
    assert _exists(fixed.ok("STATUS INBOX (MESSAGES)")) == []
    assert _exists(fixed.ok("NOOP")) == [b"* 2 EXISTS\r\n"]
    # A response about a message the client was not told of lets the news out first.
    imap_direct.append("INBOX", None, None, b"Subject: newer\r\n\r\nnewer\r\n")
    assert _exists(fixed.ok("FETCH 1 (FLAGS)")) == []
    answer = fixed.ok("FETCH 1:* (FLAGS)")
    assert answer.index(b"* 3 EXISTS\r\n") < next(
        i for i, r in enumerate(answer) if r.startswith(b"* 3 FETCH"))
    imap_direct.append("INBOX", None, None, b"Subject: newest\r\n\r\nnewest\r\n")
    assert _exists(fixed.ok("FETCH 1 (BODY.PEEK[])")) == []
    answer = fixed.ok("FETCH 1:* (BODY.PEEK[])")
    assert answer.index(b"* 4 EXISTS\r\n") < next(
        i for i, r in enumerate(answer) if r.startswith(b"* 4 FETCH"))


def test_tb_extra_mailbox_sep(start: Start, account: Any, imap_direct: imaplib.IMAP4) -> None:
    imap_direct.create("Work")
    plain = raw_login(start(()), account)
    assert status_of(plain.command('SELECT "Work/"')[1]) == b"NO"
    fixed = raw_login(start((), fixups=("tb-extra-mailbox-sep",)), account)
    fixed.ok('SELECT "Work/"')
    fixed.ok('STATUS "Work/" (MESSAGES)')
    fixed.ok('CREATE "Work/Sub/"')
    typ, data = imap_direct.list("Work/", "*")
    assert typ == "OK" and any(b"Work/Sub" in line for line in data)


def test_tb_lsub_flags(start: Start, account: Any, imap_direct: imaplib.IMAP4) -> None:
    imap_direct.create("Real")
    imap_direct.subscribe("Real")
    imap_direct.create("Ghost")
    imap_direct.subscribe("Ghost")
    imap_direct.delete("Ghost")  # still subscribed, no longer selectable
    plain = raw_login(start(()), account)
    fixed = raw_login(start((), fixups=("tb-lsub-flags",)), account)
    listed = plain.ok('LSUB "" "*"')
    before = [r for r in listed if b"Ghost" in r]
    assert before and b"\\Noselect" not in before[0], listed
    lines = fixed.ok('LSUB "" "*"')
    ghost = [r for r in lines if b"Ghost" in r]
    real = [r for r in lines if b"Real" in r]
    assert b"\\Noselect" in ghost[0] and b"\\Noselect" not in real[0]


def test_netscape_eoh(start: Start, account: Any, imap_direct: imaplib.IMAP4) -> None:
    # No end-of-header line at all: Dovecot's answer has none either.
    seed_mailbox(imap_direct, "INBOX", [b"From: a@b\r\nSubject: header only"])
    item = "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"
    plain = raw_login(start(()), account)
    plain.ok("EXAMINE INBOX")
    fixed = raw_login(start((), fixups=("netscape-eoh",)), account)
    fixed.ok("EXAMINE INBOX")
    name = "BODY[HEADER.FIELDS (SUBJECT)]"
    before = body_of(fetch_items(plain, f"FETCH 1 ({item})")[0], name)
    after = body_of(fetch_items(fixed, f"FETCH 1 ({item})")[0], name)
    assert not before.endswith(b"\r\n\r\n")
    assert after == before + b"\r\n"


def test_uid_first(start: Start, account: Any, imap_direct: imaplib.IMAP4) -> None:
    from imapproxy.server.filter_hooks import _uid_first
    from imapproxy.upstream.connection import Received

    raw = b"* 3 FETCH (FLAGS (\\Seen) MODSEQ (5) UID 42)\r\n"
    fixed = _uid_first(Received(raw, parse_response(raw)), parse_response(raw))  # type: ignore[arg-type]
    assert fixed.raw == b"* 3 FETCH (UID 42 FLAGS (\\Seen) MODSEQ (5))\r\n"
    seed_mailbox(imap_direct, "INBOX", [b"Subject: x\r\n\r\nx\r\n"])
    client = raw_login(start((), fixups=("uid-first",)), account)
    client.ok("SELECT INBOX")
    assert client.ok("FETCH 1 (FLAGS UID)")[0].startswith(b"* 1 FETCH (UID 1 ")


def test_quirk_no_uidplus(start: Start, account: Any, imap_direct: imaplib.IMAP4) -> None:
    seed_mailbox(imap_direct, "INBOX", [b"Subject: x\r\n\r\nx\r\n"], flags_cycle=("\\Deleted",))
    client = raw_login(start((), quirks=("no-uidplus",)), account)
    assert b"UIDPLUS" not in b"".join(client.ok("CAPABILITY"))
    client.ok("SELECT INBOX")
    assert status_of(client.command("UID EXPUNGE 1")[1]) == b"BAD"
    assert status_of(client.command("UID EXPUNGE 1")[1]) == b"BAD"
    assert len(direct_bodies(imap_direct)) == 1  # nothing was expunged


def test_quirk_rfc822_size_from_bytes(start: Start, account: Any,
                                      imap_direct: imaplib.IMAP4) -> None:
    msg = b"Subject: x\r\n\r\nbody\r\n"
    seed_mailbox(imap_direct, "INBOX", [msg])
    client = raw_login(start((), quirks=("rfc822-size-from-bytes",)), account)
    client.ok("SELECT INBOX")
    items = fetch_items(client, "FETCH 1 (FLAGS RFC822.SIZE)")
    assert items[0]["RFC822.SIZE"].value == str(len(msg))  # type: ignore[union-attr]


# --- a real client -----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="Debian's isync not installed")
def test_mbsync_stores_the_filtered_messages(tmp_path: Path, start: Start, account: Any,
                                             imap_direct: imaplib.IMAP4) -> None:
    """mbsync reads RFC822.SIZE first and then the bodies; what it stores must be the
    filtered message, byte for byte (its own X-TUID line aside, LF line ends)."""
    from tests.integration.test_mbsync import _mbsyncrc, _run_mbsync

    seed_mailbox(imap_direct, "INBOX", SAMPLE, flags_cycle=())
    originals = direct_bodies(imap_direct)
    proxy = start(settings={"tag": {"word": "SYNCED"}})
    result = _run_mbsync(_mbsyncrc(tmp_path, "filtered", proxy.host, proxy.port,
                                   account.user, account.password))
    assert result.returncode == 0, result.stderr
    stored = sorted(
        re.sub(rb"(?m)^X-TUID: [^\n]*\n", b"", path.read_bytes(), count=1)
        for sub in ("cur", "new") for path in (tmp_path / "filtered" / "INBOX" / sub).iterdir())
    # mbsync stores with LF line ends (as it does for unfiltered mail)
    assert stored == sorted(tag(raw, b"SYNCED").replace(b"\r\n", b"\n") for raw in originals)


def test_config_file_runs_every_listener_with_its_filters(
        tmp_path: Path, dovecot: Any, account: Any, imap_direct: imaplib.IMAP4) -> None:
    from imapproxy.config import load_config

    msg = b"Subject: hi\r\n\r\nbody\r\n"
    seed_mailbox(imap_direct, "INBOX", [msg])
    path = tmp_path / "gateway.toml"
    path.write_text(f'''
[upstream]
url = "imap://{dovecot.host}:{dovecot.port}"
[[listener]]
bind = "127.0.0.1:0"
filters = ["tag"]
[[listener]]
bind = "127.0.0.1:0"
filters = ["tag", "tag"]
[filters.tag]
word = "FILE"
[cache]
dir = "{tmp_path / 'cache'}"
''')
    proxy = RunningProxy(load_config(path))
    try:
        seen = []
        for _, port in proxy.addresses:
            client = raw_login(proxy, account, port)
            client.ok("EXAMINE INBOX")
            seen.append(body_of(fetch_items(client, "FETCH 1 BODY.PEEK[]")[0]))
            client.close()
    finally:
        proxy.stop()
    assert seen == [tag(msg, b"FILE"), tag(tag(msg, b"FILE"), b"FILE")]


def test_prefetch_filters_ahead_and_warm_reads_never_filter_again(
        start: Start, account: Any, imap_direct: imaplib.IMAP4) -> None:
    seed_mailbox(imap_direct, "INBOX", SAMPLE)
    proxy = start()
    step = proxy.app.filtering.catalog.chain(("tag",)).filters[0]
    assert isinstance(step, TagFilter)
    client = raw_login(proxy, account)
    client.ok("EXAMINE INBOX")
    client.ok("FETCH 1 (BODY.PEEK[])")  # cold: the next bodies are prefetched
    client.ok("NOOP")  # waits for the prefetch
    assert step.calls == len(SAMPLE)
    for seq in range(1, len(SAMPLE) + 1):
        client.ok(f"FETCH {seq} (BODY.PEEK[] BODYSTRUCTURE RFC822.SIZE)")
    assert step.calls == len(SAMPLE)


def test_state_only_fetch_and_bad_search_with_a_chain(start: Start, account: Any,
                                                      imap_direct: imaplib.IMAP4) -> None:
    seed_mailbox(imap_direct, "INBOX", SAMPLE[:4])
    proxy = start()
    step = proxy.app.filtering.catalog.chain(("tag",)).filters[0]
    assert isinstance(step, TagFilter)
    client = raw_login(proxy, account)
    client.ok("SELECT INBOX")
    flags = client.ok("FETCH 1:* (UID FLAGS)")
    assert len(flags) == 4 and step.calls == 0  # relayed: no body read, nothing filtered
    for bad in ("UID SEARCH BODY", "SEARCH HEADER Subject", "SEARCH BODY x BOGUS"):
        assert status_of(client.command(bad)[1]) == b"BAD", bad
    assert client.ok("UID SEARCH TEXT filtered-word") == [b"* SEARCH 1 2 3 4\r\n"]
    client.ok("EXPUNGE")
    client.ok("UID SEARCH BODY nothing-matches-this")
    client.ok("CREATE Empty")
    client.ok("SELECT Empty")
    assert client.ok("SEARCH BODY x") == [b"* SEARCH\r\n"]


@pytest.mark.parametrize("name", ["tag", "secret"])
def test_messages_left_alone_are_not_stored_twice(name: str, start: Start, account: Any,
                                                  imap_direct: imaplib.IMAP4) -> None:
    plain, tagged = b"Subject: a\r\n\r\nleave me\r\n", b"Subject: b\r\n\r\nTAGME\r\n"
    seed_mailbox(imap_direct, "INBOX", [plain, tagged])
    expected = [plain, tag(tagged, b"FILTERED")]
    proxy = start((name,), settings={name: {"only_if": "TAGME"}})
    step = proxy.app.filtering.catalog.chain((name,)).filters[0]
    assert isinstance(step, TagFilter)
    items = "(BODY.PEEK[] RFC822.SIZE BODYSTRUCTURE BODY.PEEK[1])"
    for _ in range(2):  # cold, then warm (from the variant cache, or memory)
        client = raw_login(proxy, account)
        client.ok("EXAMINE INBOX")
        got = fetch_items(client, f"FETCH 1:2 {items}")
        assert [body_of(g) for g in got] == expected
        assert [int(serialize_tokens((g["RFC822.SIZE"],))) for g in got] == [
            len(m) for m in expected]
        client.close()
    assert step.calls == 2
    if name == "tag":
        with MessageCache(proxy.config.cache_dir, CacheConfig()) as cache:
            user = cache.for_user(proxy.config.upstream, account.user)
            (key, uidvalidity), = [(k, v) for k, v in user.mailboxes().items()
                                   if b"\0filtered:" in k]
            variant = user.mailbox(key, uidvalidity)
            assert variant.get(1) == b""  # not a second copy
            assert variant.get(2) == tag(tagged, b"FILTERED")


def test_large_messages_left_alone_and_changed(start: Start, account: Any,
                                               imap_direct: imaplib.IMAP4,
                                               streamed_uids: list[int]) -> None:
    """Over the streaming threshold: the unchanged one is streamed from the cache, the
    changed one served from memory; both consistent, cold and warm."""
    streamed = streamed_uids
    filler = b"".join(b"line %07d of a large message\r\n" % i for i in range(40_000))
    left = b"Subject: big\r\n\r\n" + filler
    changed = b"Subject: big TAGME\r\n\r\n" + filler
    seed_mailbox(imap_direct, "INBOX", [left, changed])
    expected = [left, tag(changed, b"FILTERED")]
    proxy = start(settings={"tag": {"only_if": "TAGME"}})
    client = raw_login(proxy, account)
    client.ok("EXAMINE INBOX")
    for _ in range(2):
        got = fetch_items(client, "UID FETCH 1:2 (RFC822.SIZE BODY.PEEK[])")
        assert [body_of(g) for g in got] == expected
        assert [int(serialize_tokens((g["RFC822.SIZE"],))) for g in got] == [
            len(m) for m in expected]
    assert streamed == [1, 1]
