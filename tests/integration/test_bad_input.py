"""Byte-level abuse of the proxy's front end, over raw sockets: malformed commands, overlong
lines, oversized literals, failed logins, the plaintext-login policy and the timeouts. After
every refusal the same session must go on working (a following command succeeds)."""

from __future__ import annotations

import imaplib
import socket
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from imapproxy.config import Config, ListenerConfig
from imapproxy.server.session import Session

from .conftest import RawClient, RunningProxy, code_of, imap_login, quote, status_of

RawFactory = Callable[..., RawClient]
MB = 1024 * 1024


def send_then_noop(client: RawClient, junk: bytes) -> tuple[list[bytes], bytes]:
    """Send ``junk`` and a ``z1 NOOP`` in one write; return the responses before the NOOP's
    tagged answer, and that answer."""
    client.send(junk + b"z1 NOOP\r\n")
    return client.read_until_tagged("z1")


def message(subject: str = "x", size: int = 0) -> bytes:
    body = b"body\r\n" + b"y" * size + b"\r\n"
    return (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: " + subject.encode()
            + b"\r\nMessage-ID: <" + subject.encode() + b"@example.org>\r\n\r\n" + body)


def direct_fetch_all(account: Any, mailbox: str = "INBOX") -> list[bytes]:
    imap = imap_login(account.host, account.port, account.user, account.password)
    try:
        typ, _ = imap.select(mailbox, readonly=True)
        assert typ == "OK"
        typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
        if typ != "OK":
            return []
        return [item[1] for item in data if isinstance(item, tuple)]
    finally:
        imap.logout()


def direct_count(account: Any, mailbox: str = "INBOX") -> int:
    imap = imap_login(account.host, account.port, account.user, account.password)
    try:
        typ, data = imap.status(mailbox, "(MESSAGES)")
        assert typ == "OK"
        return int(data[0].rsplit(b" ", 1)[1].rstrip(b")"))
    finally:
        imap.logout()


# --- malformed commands ----------------------------------------------------------------------

# (junk, the tag its BAD must carry: b"*" when the line has no usable tag)
MALFORMED: list[tuple[bytes, bytes]] = [
    (b"NOOP\r\n", b"*"),  # no tag
    (b"a1\r\n", b"*"),  # a tag and nothing else
    (b"* NOOP\r\n", b"*"),
    (b"+ NOOP\r\n", b"*"),
    (b"a2 )\r\n", b"a2"),
    (b"a3 LOGIN \"unterminated\r\n", b"a3"),
    (b'a4 LOGIN "bad\\escape" x\r\n', b"a4"),
    (b"a5 LOGIN a b c\r\n", b"a5"),
    (b"a6 LOGIN {abc}\r\n", b"a6"),
    (b"a7 LOGIN (a b\r\n", b"a7"),
    (b"a8 LOGIN a b)\r\n", b"a8"),
    (b"a9 LOGIN a\x00b c\r\n", b"a9"),
    (b"\x00\x01\x02\x03\xff\xfe\xfd\r\n", b"*"),  # binary garbage
    (b"\xc3\xa9t\xc3\xa9 NOOP\r\n", b"*"),  # 8-bit tag
    (b"b1 \xc3\xa9t\xc3\xa9\r\n", b"b1"),  # 8-bit command name
    (b"b2 NOOP \xff\xfe\r\n", b"b2"),  # 8-bit junk after a command taking no arguments
    (b"b3 UID\r\n", b"b3"),
    (b"b4 ID (\"a\" \"b\"\r\n", b"b4"),
    (b"b5 ID " + b"(" * 200 + b")" * 200 + b"\r\n", b"b5"),  # nested too deep
    (b"b6 CAPABILITY\x7f\r\n", b"b6"),
    (b"b7 AUTHENTICATE\r\n", b"b7"),
    (b"b8 LOGIN (a) b\r\n", b"b8"),  # found by tests/fuzz: a list for a string ended the session
    (b"b9 ID (\"a\" (\"b\"))\r\n", b"b9"),
]


@pytest.mark.parametrize("junk, tag", MALFORMED, ids=[repr(j[:20]) for j, _ in MALFORMED])
def test_malformed_before_login_gets_bad(raw_proxy: RawClient, junk: bytes, tag: bytes) -> None:
    before, noop = send_then_noop(raw_proxy, junk)
    assert len(before) == 1, before
    assert before[0].startswith(tag + b" BAD "), before
    assert status_of(noop) == b"OK"


SELECTED_MALFORMED: list[tuple[bytes, bytes]] = [
    *MALFORMED,
    (b"c1 FETCH 1 (FLAGS\r\n", b"c1"),  # unbalanced parens
    (b"c2 FETCH 1 FLAGS)\r\n", b"c2"),
    (b"c3 FETCH 1 BODY[HEADER\r\n", b"c3"),  # unterminated section
    (b"c4 SEARCH SUBJECT \"abc\r\n", b"c4"),
    (b"c5 STORE 1 +FLAGS (\\Seen\r\n", b"c5"),
    (b"c6 SELECT \"INBOX\\\"\r\n", b"c6"),
    (b"c7 FETCH 1 (FLAGS)) junk\r\n", b"c7"),
    (b"c8 UID FETCH\x00 1 FLAGS\r\n", b"c8"),
    (b"c9 SELECT (INBOX)\r\n", b"c9"),
]


@pytest.mark.parametrize("junk, tag", SELECTED_MALFORMED,
                         ids=[repr(j[:20]) for j, _ in SELECTED_MALFORMED])
def test_malformed_when_selected_gets_bad(raw_proxy_login: RawClient, junk: bytes,
                                          tag: bytes) -> None:
    raw_proxy_login.ok("SELECT INBOX")
    before, noop = send_then_noop(raw_proxy_login, junk)
    assert len(before) == 1, before
    assert before[0].startswith(tag + b" BAD "), before
    assert status_of(noop) == b"OK"
    raw_proxy_login.ok("SEARCH ALL")  # still selected, upstream still in step


def test_eight_bit_mailbox_name_is_refused_and_session_continues(
        raw_proxy_login: RawClient) -> None:
    """An atom with 8-bit bytes is well-formed enough to relay; Dovecot refuses it."""
    _, tagged = raw_proxy_login.command(b"SELECT \xe9t\xe9")
    assert status_of(tagged) in (b"NO", b"BAD")
    raw_proxy_login.ok("SELECT INBOX")


def test_empty_lines_are_ignored(raw_proxy: RawClient) -> None:
    before, noop = send_then_noop(raw_proxy, b"\r\n\r\n   \r\n")
    assert before == [] and status_of(noop) == b"OK"


def test_many_bad_commands_in_a_row(raw_proxy: RawClient) -> None:
    junk = b"".join(b"j%d )(\r\n" % i for i in range(200))
    before, noop = send_then_noop(raw_proxy, junk)
    assert len(before) == 200 and all(b" BAD " in b for b in before)
    assert status_of(noop) == b"OK"


# --- line length -----------------------------------------------------------------------------


@pytest.fixture
def small_proxy(proxy_factory: Callable[..., RunningProxy]) -> RunningProxy:
    return proxy_factory(max_line_length=1024, max_literal_size=1 * MB)


def test_overlong_line_gets_bad_and_session_continues(small_proxy: RunningProxy,
                                                      raw_factory: RawFactory,
                                                      account: Any) -> None:
    client = raw_factory(small_proxy.host, small_proxy.port)
    before, noop = send_then_noop(client, b"a1 LOGIN " + b"x" * 5000 + b" y\r\n")
    assert len(before) == 1 and before[0].startswith(b"a1 BAD "), before
    assert status_of(noop) == b"OK"
    client.login(account.user, account.password)  # a normal line still works
    before, noop = send_then_noop(client, b"a2 SELECT " + b"I" * 3000 + b"\r\n")
    assert len(before) == 1 and before[0].startswith(b"a2 BAD "), before
    assert status_of(noop) == b"OK"
    client.ok("SELECT INBOX")


def test_overlong_line_arriving_in_pieces(small_proxy: RunningProxy,
                                          raw_factory: RawFactory) -> None:
    """The first kilobyte is refused before the newline arrives; the rest of the line is
    skipped, not taken for a new command."""
    client = raw_factory(small_proxy.host, small_proxy.port)
    client.send(b"a1 NOOP " + b"x" * 3000)
    first = client.read_response()  # answered without waiting for the end of the line
    assert first.startswith(b"a1 BAD "), first
    client.send(b"y" * 3000 + b" z9 NOOP\r\n")
    time.sleep(0.05)
    before, noop = send_then_noop(client, b"")
    assert before == []  # nothing for the tail of the long line (not even "z9")
    assert status_of(noop) == b"OK"


def test_line_just_under_the_limit_is_fine(small_proxy: RunningProxy,
                                           raw_factory: RawFactory) -> None:
    client = raw_factory(small_proxy.host, small_proxy.port)
    arg = b"x" * (1024 - len(b"a1 ID (\"k\" \"\")\r\n"))
    untagged, tagged = client.command(b'ID ("k" "' + arg + b'")', tag="a1")
    assert status_of(tagged) == b"OK" and untagged[0].startswith(b"* ID ")


# --- oversized literals ----------------------------------------------------------------------


def test_oversized_synchronising_literal_is_refused_before_any_byte(
        raw_proxy_login: RawClient, account: Any) -> None:
    raw_proxy_login.send(b"A1 APPEND INBOX {999999999}\r\n")
    first = raw_proxy_login.read_response()  # no "+": the client must not send the literal
    assert first.startswith(b"A1 NO [TOOBIG]"), first
    before, noop = send_then_noop(raw_proxy_login, b"")
    assert before == [] and status_of(noop) == b"OK"
    # the same before login
    assert direct_count(account) == 0


def test_oversized_synchronising_literal_before_login(raw_proxy: RawClient,
                                                      account: Any) -> None:
    raw_proxy.send(b"L1 LOGIN {999999999}\r\n")
    first = raw_proxy.read_response()
    assert first.startswith(b"L1 NO [TOOBIG]"), first
    raw_proxy.login(account.user, account.password)


def test_configured_literal_limit(small_proxy: RunningProxy, raw_factory: RawFactory,
                                  account: Any) -> None:
    client = raw_factory(small_proxy.host, small_proxy.port)
    client.login(account.user, account.password)
    client.send(b"A1 APPEND INBOX {%d}\r\n" % (MB + 1))
    first = client.read_response()
    assert first.startswith(b"A1 NO [TOOBIG]"), first
    msg = message("fits", 500_000)
    client.send(b"A2 APPEND INBOX {%d}\r\n" % len(msg))
    assert client.read_response().startswith(b"+")
    client.send(msg + b"\r\n")
    _, tagged = client.read_until_tagged("A2")
    assert status_of(tagged) == b"OK"
    assert direct_fetch_all(account) == [msg]


def test_oversized_non_synchronising_literal_is_discarded_in_flat_memory(
        small_proxy: RunningProxy, raw_factory: RawFactory, account: Any) -> None:
    """A client announcing ``{N+}`` sends the bytes without waiting. The proxy answers
    NO [TOOBIG] and must throw them away as they come, never buffering them.

    Memory: the proxy runs in a thread of this process, so the process RSS (and its
    high-water mark ru_maxrss) would mix in the test's own buffers and allocator slack and is
    never given back, which makes it a poor measure. tracemalloc counts every Python
    allocation of every thread, which is where a buffered literal would live (bytearray /
    bytes); its peak while 24 MB stream through must stay a small fraction of that. The
    client side sends one preallocated 64 KB chunk over and over, so it adds nothing."""
    client = raw_factory(small_proxy.host, small_proxy.port)
    client.login(account.user, account.password)
    size = 24 * MB  # the limit is 1 MB
    chunk = b"z" * 65536
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline, _ = tracemalloc.get_traced_memory()
        client.send(b"A1 APPEND INBOX {%d+}\r\n" % size)
        for _ in range(size // len(chunk)):
            client.send(chunk)
        client.send(b"\r\nz1 NOOP\r\n")
        before, noop = client.read_until_tagged("z1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(before) == 1 and before[0].startswith(b"A1 NO [TOOBIG]"), before
    assert status_of(noop) == b"OK"
    growth = peak - baseline
    assert growth < 4 * MB, f"proxy held {growth} bytes while discarding a {size}-byte literal"
    client.ok("SELECT INBOX")
    assert direct_count(account) == 0  # nothing reached Dovecot


def test_oversized_non_synchronising_literal_before_login(small_proxy: RunningProxy,
                                                          raw_factory: RawFactory,
                                                          account: Any) -> None:
    client = raw_factory(small_proxy.host, small_proxy.port)
    size = 2 * MB + 17
    client.send(b"L1 LOGIN {%d+}\r\n" % size + b"u" * size + b" {3+}\r\npwd\r\n")
    before, noop = send_then_noop(client, b"")
    assert len(before) == 1 and before[0].startswith(b"L1 NO [TOOBIG]"), before
    assert status_of(noop) == b"OK"
    client.login(account.user, account.password)


# --- APPEND goes through to the upstream before it is acknowledged ---------------------------


def test_append_ok_means_stored_upstream(raw_proxy_login: RawClient, account: Any) -> None:
    stored: list[bytes] = []
    for i, size in enumerate((0, 10_000, 300_000, 1_500_000)):
        msg = message(f"stored{i}", size)
        raw_proxy_login.send(b"A%d APPEND INBOX {%d}\r\n" % (i, len(msg)))
        assert raw_proxy_login.read_response().startswith(b"+")
        raw_proxy_login.send(msg + b"\r\n")
        _, tagged = raw_proxy_login.read_until_tagged(f"A{i}")
        assert status_of(tagged) == b"OK", tagged
        stored.append(msg)
        # immediately visible on a direct connection, byte for byte
        assert direct_fetch_all(account) == stored


def test_append_to_missing_mailbox_passes_trycreate(raw_proxy_login: RawClient,
                                                    account: Any) -> None:
    msg = message("nowhere")
    raw_proxy_login.send(b"A1 APPEND NoSuchBox {%d+}\r\n" % len(msg) + msg + b"\r\n")
    _, tagged = raw_proxy_login.read_until_tagged("A1")
    assert status_of(tagged) == b"NO" and code_of(tagged) == b"TRYCREATE", tagged
    raw_proxy_login.ok("CREATE NoSuchBox")
    raw_proxy_login.send(b"A2 APPEND NoSuchBox {%d+}\r\n" % len(msg) + msg + b"\r\n")
    _, tagged = raw_proxy_login.read_until_tagged("A2")
    assert status_of(tagged) == b"OK"
    assert direct_fetch_all(account, "NoSuchBox") == [msg]


# --- LOGIN failures and the plaintext policy -------------------------------------------------


def test_login_wrong_password(raw_proxy: RawClient, account: Any) -> None:
    untagged, tagged = raw_proxy.command(f"LOGIN {quote(account.user)} \"wrong-password\"")
    assert untagged == []
    assert status_of(tagged) == b"NO" and code_of(tagged) == b"AUTHENTICATIONFAILED", tagged
    assert b"wrong-password" not in tagged
    _, tagged = raw_proxy.command('LOGIN "no-such-user" "whatever"')
    assert status_of(tagged) == b"NO" and code_of(tagged) == b"AUTHENTICATIONFAILED", tagged
    _, tagged = raw_proxy.command("SELECT INBOX")  # still not authenticated
    assert status_of(tagged) == b"BAD"
    raw_proxy.login(account.user, account.password)  # the same session can still log in
    raw_proxy.ok("SELECT INBOX")


def test_imaplib_sees_login_failure(proxy: RunningProxy, account: Any) -> None:
    client = imaplib.IMAP4(proxy.host, proxy.port, timeout=10)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(account.user, account.password + "x")
    finally:
        client.shutdown()


def test_loopback_client_may_log_in_without_tls(proxy: RunningProxy, raw_proxy: RawClient,
                                                account: Any) -> None:
    assert proxy.config.listeners[0].allow_plaintext_auth is False
    assert proxy.config.listeners[0].tls == "none"
    caps = raw_proxy.ok("CAPABILITY")[0].split()
    assert b"AUTH=PLAIN" in caps and b"LOGINDISABLED" not in caps
    raw_proxy.login(account.user, account.password)


class _FakeWriter:
    def __init__(self, peer: object) -> None:
        self.peer = peer

    def get_extra_info(self, name: str) -> object:
        return self.peer if name == "peername" else None


def _session(peer: object, *, allow: bool = False, tls: str = "none") -> Session:
    listener = ListenerConfig(host="127.0.0.1", port=0, tls=tls,  # type: ignore[arg-type]
                              allow_plaintext_auth=allow)
    return Session(None, _FakeWriter(peer), Config(listeners=(listener,)),  # type: ignore[arg-type]
                   listener, None)


@pytest.mark.parametrize("peer, allow, tls, expected", [
    (("127.0.0.1", 40000), False, "none", True),
    (("127.9.8.7", 40000), False, "none", True),
    (("::1", 40000, 0, 0), False, "none", True),
    (("192.0.2.10", 40000), False, "none", False),
    (("192.0.2.10", 40000), True, "none", True),
    (("192.0.2.10", 40000), False, "starttls", False),  # not yet: STARTTLS first
    (("192.0.2.10", 40000), False, "implicit", True),
    (("2001:db8::1", 40000, 0, 0), False, "none", False),
    (("fe80::1%eth0", 40000, 0, 2), False, "none", False),
    (("10.0.0.1", 40000), False, "none", False),
    (("localhost", 40000), False, "none", False),  # not an address: not trusted
    ("/run/imapproxy.sock", False, "none", False),
    (None, False, "none", False),
    (None, True, "none", True),
])
def test_plaintext_auth_allowed(peer: object, allow: bool, tls: str, expected: bool) -> None:
    assert _session(peer, allow=allow, tls=tls).plaintext_auth_allowed() is expected


def test_plaintext_auth_allowed_for_ipv4_mapped_loopback() -> None:
    """A loopback client of a dual-stack [::] listener shows up as ::ffff:127.0.0.1
    (regression: was refused plaintext LOGIN)."""
    assert _session(("::ffff:127.0.0.1", 40000, 0, 0)).plaintext_auth_allowed() is True


def test_is_loopback_is_what_the_policy_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    import imapproxy.server.session as session_module

    monkeypatch.setattr(session_module, "is_loopback", lambda peer: False)
    assert _session(("127.0.0.1", 40000)).plaintext_auth_allowed() is False


# --- timeouts --------------------------------------------------------------------------------


def test_preauth_timeout_says_bye(proxy_factory: Callable[..., RunningProxy],
                                  raw_factory: RawFactory) -> None:
    quick = proxy_factory(preauth_timeout=0.5)
    client = raw_factory(quick.host, quick.port)
    started = time.monotonic()
    response = client.read_response()
    assert response.startswith(b"* BYE "), response
    assert client.is_closed(timeout=8)
    assert time.monotonic() - started < 8


def test_idle_timeout_after_login_says_bye(proxy_factory: Callable[..., RunningProxy],
                                           raw_factory: RawFactory, account: Any) -> None:
    quick = proxy_factory(idle_timeout=0.5)
    client = raw_factory(quick.host, quick.port)
    client.login(account.user, account.password)
    response = client.read_response()
    assert response.startswith(b"* BYE "), response
    assert client.is_closed(timeout=8)


def _idle_until_timeout(proxy_factory: Callable[..., RunningProxy], raw_factory: RawFactory,
                        account: Any) -> tuple[RawClient, bytes, float]:
    quick = proxy_factory(idle_timeout=0.5)
    client = raw_factory(quick.host, quick.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    client.send(b"I1 IDLE\r\n")
    assert client.read_response().startswith(b"+")
    while True:
        response = client.read_response()
        if not response.startswith(b"* OK"):  # Dovecot's "Still here" keep-alives
            break
    return client, response, time.monotonic()


def test_idle_timeout_during_idle_says_bye(proxy_factory: Callable[..., RunningProxy],
                                           raw_factory: RawFactory, account: Any) -> None:
    client, response, _ = _idle_until_timeout(proxy_factory, raw_factory, account)
    assert response.startswith(b"* BYE "), response
    assert client.is_closed(timeout=8)


def test_idle_timeout_during_idle_closes_promptly(proxy_factory: Callable[..., RunningProxy],
                                                  raw_factory: RawFactory,
                                                  account: Any) -> None:
    """Regression: the connection stayed open 5 s after the BYE (the upstream IDLE was never
    ended, so the upstream LOGOUT at the session's end timed out)."""
    client, response, bye_at = _idle_until_timeout(proxy_factory, raw_factory, account)
    assert response.startswith(b"* BYE ")
    assert client.is_closed(timeout=8)
    assert time.monotonic() - bye_at < 2.5


def test_client_vanishing_does_not_disturb_others(proxy: RunningProxy,
                                                  raw_factory: RawFactory,
                                                  account: Any) -> None:
    for junk in (b"", b"a1 LOGIN", b"a1 APPEND INBOX {100+}\r\nabc", b"\xff" * 1000):
        sock = socket.create_connection((proxy.host, proxy.port), timeout=5)
        sock.recv(1024)
        sock.sendall(junk)
        sock.close()
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    client.ok("SELECT INBOX")
    deadline = time.monotonic() + 8
    while proxy.session_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.session_count() == 1


@pytest.mark.parametrize("sequence_set", [
    ",".join(["1:1048576"] * 300).encode(),  # was ~60 s of a stalled event loop
    b"1:" + b"9" * 5000,  # was a ValueError ending the session
    b"1:4294967295",
])
def test_huge_fetch_sets_are_answered_promptly(raw_proxy_login: RawClient,
                                               sequence_set: bytes) -> None:
    """Found by tests/fuzz: expanding a client's set in the proxy must stay cheap."""
    raw_proxy_login.ok("SELECT INBOX")
    started = time.monotonic()
    for command in (b"UID FETCH ", b"FETCH "):
        _, tagged = raw_proxy_login.command(command + sequence_set + b" (BODY.PEEK[])")
        assert status_of(tagged) in (b"OK", b"NO", b"BAD"), tagged
    assert time.monotonic() - started < 5.0
    raw_proxy_login.ok("NOOP")


@pytest.mark.parametrize("head", [
    b"SELECT \xff ", b'SELECT a["x"] ', b'LIST "" ~', b"SELECT a[(] ", b"CHECK ",
    b"CREATE Other (USE (\\Drafts)) ", b"APPEND INBOX (\\Bad) ", b'APPEND INBOX "bad date" ',
    b"COPY 1 INBOX x ", b"STATUS INBOX (MESSAGES) x ", b"UID EXPUNGE 1 ", b"APPEND INBOX x ",
])
def test_literal_data_is_never_run_upstream_as_commands(raw_proxy_login: RawClient,
                                                        account: Any, head: bytes) -> None:
    """Found by tests/fuzz/test_network_fuzz.py: Dovecot stops at an argument it refuses or
    does not take, skips to the line feed and reads what follows as commands: the data of a
    non-synchronising literal. Relayed as such, it ran upstream unseen by the proxy."""
    raw_proxy_login.ok("SELECT INBOX")
    smuggled = b"\r\nx9 CREATE Smuggled\r\n"
    _, tagged = raw_proxy_login.command(head + b"{%d+}\r\n" % len(smuggled) + smuggled)
    assert status_of(tagged) in (b"OK", b"NO", b"BAD"), tagged
    raw_proxy_login.ok("NOOP")
    imap = imap_login(account.host, account.port, account.user, account.password)
    try:
        typ, data = imap.list('""', "Smuggled")
        assert typ == "OK" and data == [None], data
    finally:
        imap.logout()
