"""Every RFC 3501 command and every advertised extension, through the proxy, against the real
Dovecot; where the answer is deterministic, compared with the same command sent directly.

Comparisons: read-only commands run on ONE account (a proxied and a direct session side by
side, both EXAMINE so neither takes the \\Recent flags); stateful commands run the same script
on TWO fresh accounts seeded identically, one through the proxy and one directly. Compared: every
untagged response byte for byte, and the tagged line without its tag, after removing Dovecot's
timing text and normalising UIDVALIDITY values (which differ between two accounts).
"""

from __future__ import annotations

import base64
import imaplib
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from imapproxy.server.capabilities import OWN, RELAYED, preauth_capabilities
from tests.conftest import Account, make_account

from .conftest import (
    TIMEOUT,
    TIMING,
    RawClient,
    RunningProxy,
    code_of,
    imap_login,
    messages,
    quote,
    seed_mailbox,
    status_of,
)

RawFactory = Callable[..., RawClient]

INBOX_COUNT = 8
ARCHIVE_COUNT = 3


# --- set-up ----------------------------------------------------------------------------------


def seed_messages() -> list[bytes]:
    """The generated messages only (``messages`` appends the CPython corpus when present)."""
    return messages(INBOX_COUNT + ARCHIVE_COUNT, seed=7)[:INBOX_COUNT + ARCHIVE_COUNT]


def populate(account: Any) -> None:
    """The same content for every account: INBOX with 8 messages (some flagged), Archive with 3,
    Archive/2023 and Work (subscribed) empty. Seeded directly. Setting the flags needs a
    read-write SELECT, which takes the \\Recent flags: the same for every account."""
    imap = imap_login(account.host, account.port, account.user, account.password)
    try:
        msgs = seed_messages()
        for box in ("Archive", "Archive/2023", "Work"):
            imap.create(box)
        imap.subscribe("Work")
        seed_mailbox(imap, "INBOX", msgs[:INBOX_COUNT])
        seed_mailbox(imap, "Archive", msgs[INBOX_COUNT:])
        typ, _ = imap.select("INBOX")
        assert typ == "OK"
        typ, data = imap.search(None, "ALL")
        assert data[0].split() == [str(i).encode() for i in range(1, INBOX_COUNT + 1)], data
        imap.store("1:3", "+FLAGS", r"(\Seen)")
        imap.store("2", "+FLAGS", r"(\Flagged)")
        imap.store("4", "+FLAGS", r"(\Answered $Label1)")
        imap.close()
    finally:
        imap.logout()


@pytest.fixture
def seeded(account: Any) -> Any:
    populate(account)
    return account


@pytest.fixture
def twins(dovecot: Any, account: Any) -> tuple[Any, Account]:
    """Two accounts with identical content: the first for the proxy, the second direct."""
    other = make_account(dovecot)
    populate(account)
    populate(other)
    return account, other


def connect_pair(proxy: RunningProxy, raw_factory: RawFactory, proxied_account: Any,
                 direct_account: Any) -> tuple[RawClient, RawClient]:
    via = raw_factory(proxy.host, proxy.port)
    via.login(proxied_account.user, proxied_account.password)
    direct = raw_factory(direct_account.host, direct_account.port)
    direct.login(direct_account.user, direct_account.password)
    return via, direct


_UIDVALIDITY = re.compile(rb"(UIDVALIDITY|APPENDUID|COPYUID) \d+")


def normalise(response: bytes) -> bytes:
    response = TIMING.sub(b"", response)
    return _UIDVALIDITY.sub(rb"\1 <uidvalidity>", response)


def outcome(client: RawClient, command: bytes | str) -> list[bytes]:
    """Untagged responses and the tagged line without its tag, normalised. The order of LIST
    and LSUB responses is not defined (Dovecot's follows the file system): those are sorted.
    The text of BAD is not compared: the proxy refuses malformed and out-of-state commands
    itself, in its own words."""
    untagged, tagged = client.command(command)
    if status_of(tagged) == b"BAD":
        tagged = tagged.split(b" ", 2)[0] + b" BAD\r\n"
    result = [normalise(r) for r in untagged]
    name = (command.encode() if isinstance(command, str) else command).split(b" ", 1)[0]
    if name.upper() in (b"LIST", b"LSUB"):
        result.sort()
    return result + [normalise(tagged.split(b" ", 1)[1])]


def assert_same(via: RawClient, direct: RawClient, command: bytes | str) -> list[bytes]:
    got, want = outcome(via, command), outcome(direct, command)
    assert got == want, f"{command!r}:\nproxy:  {got!r}\ndirect: {want!r}"
    return got


def caps_of(line: bytes) -> list[str]:
    """Capability names from ``* CAPABILITY ...`` or a line with a [CAPABILITY ...] code."""
    m = re.search(rb"CAPABILITY ([^\]\r\n]*)", line)
    assert m is not None, line
    return m.group(1).decode().split()


def append_raw(client: RawClient, mailbox: str, message: bytes, *, flags: str | None = None,
               date: str | None = None, nonsync: bool = False) -> tuple[list[bytes], bytes]:
    """APPEND with a real literal; synchronising unless ``nonsync`` (LITERAL+)."""
    tag = client.new_tag()
    head = f"{tag} APPEND {quote(mailbox)}"
    if flags is not None:
        head += f" ({flags})"
    if date is not None:
        head += f' "{date}"'
    head += f" {{{len(message)}{'+' if nonsync else ''}}}\r\n"
    if nonsync:
        client.send(head.encode() + message + b"\r\n")
        return client.read_until_tagged(tag)
    client.send(head.encode())
    first = client.read_response()
    if not first.startswith(b"+"):
        assert first.startswith(tag.encode() + b" "), first
        return [], first
    client.send(message + b"\r\n")
    return client.read_until_tagged(tag)


def sample_message(subject: str = "hello", size: int = 0) -> bytes:
    body = b"Hello there.\r\n"
    if size:
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
        body += line * (size // len(line) + 1)
    return (b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Date: Tue, 05 Mar 2024 10:00:00 +0100\r\nMessage-ID: <"
            + subject.encode() + b"@example.org>\r\n\r\n" + body)


# --- CAPABILITY, NOOP, LOGOUT ----------------------------------------------------------------


def test_capability_before_login_is_the_proxys_own(raw_proxy: RawClient) -> None:
    untagged = raw_proxy.ok("CAPABILITY")
    assert len(untagged) == 1
    caps = caps_of(untagged[0])
    # loopback client, no TLS configured: AUTH=PLAIN allowed, no STARTTLS
    assert caps == preauth_capabilities(starttls=False, login_allowed=True)
    assert "IMAP4rev1" in caps and "LOGINDISABLED" not in caps and "STARTTLS" not in caps
    assert caps_of(raw_proxy.greeting) == caps


def test_capability_after_login_is_allowlist_intersect_dovecot(
        proxy: RunningProxy, account: Any, imap_direct: imaplib.IMAP4,
        raw_factory: RawFactory) -> None:
    typ, data = imap_direct.capability()  # after login: imaplib's .capabilities is pre-login
    assert typ == "OK"
    dovecot_caps = {c.upper() for c in data[-1].decode().split()}
    assert "SORT" in dovecot_caps and "IDLE" in dovecot_caps
    expected = set(OWN) | (set(RELAYED) & dovecot_caps)
    client = raw_factory(proxy.host, proxy.port)
    _, tagged = client.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
    assert status_of(tagged) == b"OK"
    assert set(caps_of(tagged)) == expected  # the [CAPABILITY ...] code of LOGIN's OK
    untagged = client.ok("CAPABILITY")
    caps = caps_of(untagged[0])
    assert set(caps) == expected
    assert len(caps) == len(set(caps))
    # Dovecot has these; the proxy must not pass them on
    for leaked in ("SORT", "THREAD=REFERENCES", "ESEARCH", "NOTIFY", "CATENATE",
                   "MULTIAPPEND", "URL-PARTIAL", "SEARCHRES", "LOGIN-REFERRALS", "SASL-IR"):
        assert leaked not in caps
    # and what both sides have is there
    for needed in ("IMAP4REV1", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "CONDSTORE",
                   "LITERAL+", "ID", "ENABLE", "UNSELECT"):
        assert needed in {c.upper() for c in caps}


def test_capability_takes_no_arguments(raw_proxy: RawClient) -> None:
    _, tagged = raw_proxy.command("CAPABILITY IMAP4rev1")
    assert status_of(tagged) == b"BAD"
    raw_proxy.ok("NOOP")


def test_noop_before_and_after_login(raw_proxy: RawClient, account: Any) -> None:
    assert raw_proxy.ok("NOOP") == []
    raw_proxy.login(account.user, account.password)
    _, tagged = raw_proxy.command("NOOP")
    assert status_of(tagged) == b"OK"


def test_logout_says_bye_and_closes(proxy: RunningProxy, raw_factory: RawFactory,
                                    account: Any) -> None:
    client = raw_factory(proxy.host, proxy.port)
    client.login(account.user, account.password)
    untagged, tagged = client.command("LOGOUT", tag="bye1")
    assert [u[:6] for u in untagged] == [b"* BYE "]
    assert tagged.startswith(b"bye1 OK")
    assert client.is_closed()
    deadline = time.monotonic() + 5
    while proxy.session_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.session_count() == 0


def test_logout_before_login(raw_proxy: RawClient) -> None:
    untagged, tagged = raw_proxy.command("LOGOUT")
    assert untagged[0].startswith(b"* BYE") and status_of(tagged) == b"OK"
    assert raw_proxy.is_closed()


# --- LOGIN, AUTHENTICATE ---------------------------------------------------------------------


def test_login_with_imaplib(proxy: RunningProxy, account: Any) -> None:
    client = imaplib.IMAP4(proxy.host, proxy.port, timeout=TIMEOUT)
    typ, _ = client.login(account.user, account.password)
    assert typ == "OK"
    assert client.state == "AUTH"
    typ, data = client.list()
    assert typ == "OK" and any(b"INBOX" in d for d in data)
    client.logout()


def test_login_with_literals(raw_proxy: RawClient, account: Any) -> None:
    user, password = account.user.encode(), account.password.encode()
    raw_proxy.send(b"L1 LOGIN {%d}\r\n" % len(user))
    assert raw_proxy.read_response().startswith(b"+")
    raw_proxy.send(user + b" {%d}\r\n" % len(password))
    assert raw_proxy.read_response().startswith(b"+")
    raw_proxy.send(password + b"\r\n")
    _, tagged = raw_proxy.read_until_tagged("L1")
    assert status_of(tagged) == b"OK"
    raw_proxy.ok("SELECT INBOX")


def test_login_twice_is_bad(raw_proxy: RawClient, account: Any) -> None:
    raw_proxy.login(account.user, account.password)
    _, tagged = raw_proxy.command(f"LOGIN {quote(account.user)} {quote(account.password)}")
    assert status_of(tagged) == b"BAD"
    raw_proxy.ok("NOOP")


def _plain(account: Any, authzid: str = "") -> bytes:
    return base64.b64encode(f"{authzid}\0{account.user}\0{account.password}".encode())


def test_authenticate_plain_with_initial_response(raw_proxy: RawClient, account: Any) -> None:
    untagged, tagged = raw_proxy.command(b"AUTHENTICATE PLAIN " + _plain(account))
    assert untagged == []
    assert status_of(tagged) == b"OK"
    assert "IDLE" in caps_of(tagged)
    raw_proxy.ok("SELECT INBOX")


def test_authenticate_plain_with_continuation(raw_proxy: RawClient, account: Any) -> None:
    raw_proxy.send(b"A1 AUTHENTICATE PLAIN\r\n")
    assert raw_proxy.read_response().startswith(b"+")
    raw_proxy.send(_plain(account) + b"\r\n")
    _, tagged = raw_proxy.read_until_tagged("A1")
    assert status_of(tagged) == b"OK"
    raw_proxy.ok("SELECT INBOX")


def test_authenticate_plain_with_authzid_equal_to_user(raw_proxy: RawClient,
                                                       account: Any) -> None:
    _, tagged = raw_proxy.command(b"AUTHENTICATE PLAIN " + _plain(account, account.user))
    assert status_of(tagged) == b"OK"


def test_authenticate_cancelled_and_bad_base64(raw_proxy: RawClient, account: Any) -> None:
    raw_proxy.send(b"A1 AUTHENTICATE PLAIN\r\n")
    assert raw_proxy.read_response().startswith(b"+")
    raw_proxy.send(b"*\r\n")
    _, tagged = raw_proxy.read_until_tagged("A1")
    assert status_of(tagged) == b"BAD"
    _, tagged = raw_proxy.command("AUTHENTICATE PLAIN !!!notbase64")
    assert status_of(tagged) == b"BAD"
    _, tagged = raw_proxy.command("AUTHENTICATE PLAIN " + base64.b64encode(b"nonul").decode())
    assert status_of(tagged) == b"BAD"
    raw_proxy.ok("NOOP")
    raw_proxy.login(account.user, account.password)  # still usable


def test_authenticate_wrong_password_and_unknown_mechanism(raw_proxy: RawClient,
                                                           account: Any) -> None:
    wrong = base64.b64encode(f"\0{account.user}\0nope".encode())
    _, tagged = raw_proxy.command(b"AUTHENTICATE PLAIN " + wrong)
    assert status_of(tagged) == b"NO"
    assert code_of(tagged) == b"AUTHENTICATIONFAILED"
    _, tagged = raw_proxy.command("AUTHENTICATE CRAM-MD5")
    assert status_of(tagged) == b"NO"
    _, tagged = raw_proxy.command(b"AUTHENTICATE PLAIN " + _plain(account))
    assert status_of(tagged) == b"OK"


# --- read-only commands compared on one account ----------------------------------------------

READ_ONLY_AUTHENTICATED = [
    'LIST "" "*"',
    'LIST "" "%"',
    'LIST "" "Archive/%"',
    'LIST "" ""',
    'LIST "Archive" "*"',
    'LSUB "" "*"',
    "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)",
    "STATUS Archive (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)",
    "STATUS Nonexistent (MESSAGES)",
    "NAMESPACE",
    'LIST "" "*" RETURN (SPECIAL-USE)',
    'LIST (SPECIAL-USE) "" "*"',
    'LIST (SUBSCRIBED) "" "*"',
    'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"',
    'LIST "" "*" RETURN (CHILDREN SPECIAL-USE)',
    'LIST "" ("INBOX" "Archive")',
    'LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT))',
    'LIST "" "%" RETURN (SUBSCRIBED CHILDREN STATUS (MESSAGES UNSEEN))',
    "EXAMINE Nonexistent",
]

READ_ONLY_SELECTED = [
    "FETCH 1:* (FLAGS)",
    "FETCH 1:5 (UID FLAGS INTERNALDATE RFC822.SIZE)",
    "FETCH 2 BODY[]",  # not \Seen: EXAMINE is read-only
    "FETCH 2 BODY.PEEK[]",
    "FETCH 3 RFC822",
    "FETCH 1:3 BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]",
    "FETCH 1:3 BODY.PEEK[HEADER.FIELDS.NOT (FROM SUBJECT)]",
    "FETCH 1:* BODYSTRUCTURE",
    "FETCH 1:* BODY",
    "FETCH 1:* ENVELOPE",
    "FETCH 4 BODY.PEEK[]<10.50>",
    "FETCH 4 BODY.PEEK[]<0.0>",
    "FETCH 4 BODY.PEEK[TEXT]<5.20>",
    "FETCH 4 BODY.PEEK[1]",
    "FETCH 5 (RFC822.HEADER RFC822.TEXT)",
    "FETCH 1:* FAST",
    "FETCH 1:* ALL",
    "FETCH 1:* FULL",
    "FETCH 99 FLAGS",
    "FETCH 1 (FLAGS",
    "SEARCH ALL",
    "SEARCH SEEN",
    "SEARCH UNSEEN",
    "SEARCH FLAGGED NOT ANSWERED",
    "SEARCH OR KEYWORD $Label1 FLAGGED",
    "SEARCH 2:4 NOT 3",
    "SEARCH LARGER 100 SINCE 1-Jan-2000",
    'SEARCH SUBJECT "e"',
    'SEARCH CHARSET UTF-8 BODY "e"',
    'SEARCH HEADER Message-ID "@"',
    "UID SEARCH ALL",
    "UID SEARCH UID 2:*",
    "UID FETCH 1:* (FLAGS)",
    "UID FETCH 3:4 (BODY.PEEK[HEADER] RFC822.SIZE)",
    "CHECK",
    "NOOP",
]


@pytest.fixture
def read_only_pair(proxy: RunningProxy, raw_factory: RawFactory,
                   seeded: Any) -> tuple[RawClient, RawClient]:
    return connect_pair(proxy, raw_factory, seeded, seeded)


def test_read_only_commands_match_dovecot(read_only_pair: tuple[RawClient, RawClient]) -> None:
    via, direct = read_only_pair
    for command in READ_ONLY_AUTHENTICATED:
        assert_same(via, direct, command)
    assert_same(via, direct, "EXAMINE INBOX")
    for command in READ_ONLY_SELECTED:
        assert_same(via, direct, command)
    assert_same(via, direct, "EXAMINE Archive")
    assert_same(via, direct, "FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert_same(via, direct, "CLOSE")


def test_list_extensions_content(raw_proxy_login: RawClient, seeded: Any) -> None:
    """SPECIAL-USE, LIST-EXTENDED and LIST-STATUS answers through the proxy hold what they
    should (the comparison above shows they equal Dovecot's; this shows they are not empty)."""
    client = raw_proxy_login
    special = client.ok('LIST "" "*" RETURN (SPECIAL-USE)')
    assert any(b"\\Drafts" in r and r.endswith(b" Drafts\r\n") for r in special), special
    assert any(b"\\Trash" in r for r in special)
    only_special = client.ok('LIST (SPECIAL-USE) "" "*"')
    assert {r.rsplit(b" ", 1)[1] for r in only_special} == {
        b"Drafts\r\n", b"Sent\r\n", b"Trash\r\n", b"Junk\r\n"}
    subscribed = client.ok('LIST (SUBSCRIBED) "" "*"')
    assert any(b"\\Subscribed" in r and r.endswith(b" Work\r\n") for r in subscribed)
    assert not any(r.endswith(b" Archive\r\n") for r in subscribed)
    children = client.ok('LIST "" "%" RETURN (CHILDREN)')
    assert any(b"\\HasChildren" in r and r.endswith(b" Archive\r\n") for r in children)
    with_status = client.ok('LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT))')
    pairs = dict(zip(with_status[::2], with_status[1::2]))
    inbox = [s for line, s in pairs.items() if line.endswith(b" INBOX\r\n")]
    assert inbox == [b"* STATUS INBOX (MESSAGES %d UIDNEXT %d)\r\n"
                     % (INBOX_COUNT, INBOX_COUNT + 1)]
    assert all(line.startswith(b"* LIST ") and s.startswith(b"* STATUS ")
               for line, s in pairs.items())


def test_fetch_results_are_the_messages(read_only_pair: tuple[RawClient, RawClient]) -> None:
    """Beyond matching Dovecot: the literal bytes relayed are the message appended."""
    via, _ = read_only_pair
    expected = seed_messages()
    via.ok("EXAMINE INBOX")
    untagged = via.ok("FETCH 1:* BODY.PEEK[]")
    assert len(untagged) == INBOX_COUNT
    for number, response in enumerate(untagged, 1):
        assert response.startswith(b"* %d FETCH (BODY[] {" % number)
        literal = response.split(b"}\r\n", 1)[1].rsplit(b")", 1)[0]
        assert literal == expected[number - 1]
    partial = via.ok("FETCH 1 BODY.PEEK[]<3.7>")
    assert partial[0].split(b"\r\n", 1)[1].startswith(expected[0][3:10])


# --- stateful commands compared on two accounts with identical content -----------------------

STATEFUL: dict[str, list[str]] = {
    "select": ["SELECT INBOX", "SELECT Archive", "SELECT Nonexistent", "FETCH 1 FLAGS"],
    "examine_then_select": ["EXAMINE INBOX", "STORE 1 +FLAGS (\\Deleted)", "SELECT INBOX",
                            "FETCH 1:* FLAGS"],
    "create": ['CREATE Foo', 'CREATE Foo/Bar/Baz', 'CREATE Foo', 'CREATE INBOX',
               'CREATE "With space"', 'CREATE &AOk-t&AOk-', 'LIST "" "*"'],
    "delete": ["CREATE Gone", "DELETE Gone", "DELETE Gone", "DELETE INBOX", "DELETE Archive",
               'LIST "" "*"'],
    "rename": ["RENAME Work Job", "RENAME Archive Old", "RENAME Nonexistent Other",
               "RENAME Job INBOX", 'LIST "" "*"', "STATUS Old (MESSAGES)",
               "RENAME INBOX Moved", "STATUS INBOX (MESSAGES)", "STATUS Moved (MESSAGES)"],
    "subscribe": ["SUBSCRIBE Archive", "SUBSCRIBE Archive/2023", 'LSUB "" "*"',
                  'LSUB "" "%"', 'LIST (SUBSCRIBED) "" "*"'],
    "unsubscribe": ["UNSUBSCRIBE Work", "UNSUBSCRIBE Work", 'LSUB "" "*"'],
    "status": ["STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)",
               "STATUS Archive (MESSAGES UNSEEN)", "STATUS Nope (MESSAGES)",
               "STATUS INBOX (BOGUS)"],
    "check": ["SELECT INBOX", "CHECK"],
    "close": ["SELECT INBOX", "STORE 1:2 +FLAGS.SILENT (\\Deleted)", "CLOSE", "FETCH 1 FLAGS",
              "STATUS INBOX (MESSAGES)", "CLOSE"],
    "expunge": ["SELECT INBOX", "STORE 2,4,7 +FLAGS (\\Deleted)", "EXPUNGE",
                "FETCH 1:* (UID FLAGS)", "EXPUNGE"],
    "store": ["SELECT INBOX", "STORE 1 FLAGS (\\Draft)", "STORE 2:3 +FLAGS (\\Flagged $Work)",
              "STORE 2 -FLAGS (\\Seen)", "STORE 4 FLAGS.SILENT (\\Answered)",
              "STORE 5:* +FLAGS.SILENT (\\Seen)", "STORE 1 -FLAGS.SILENT (\\Draft)",
              "FETCH 1:* FLAGS", "STORE 99 +FLAGS (\\Seen)", "STORE 1 +FLAGS (\\Recent)"],
    "fetch_sets_seen": ["SELECT INBOX", "FETCH 5 BODY[TEXT]", "FETCH 5 FLAGS",
                        "FETCH 6 RFC822.TEXT", "FETCH 6 FLAGS", "FETCH 7 BODY.PEEK[]",
                        "FETCH 7 FLAGS"],
    "copy": ["SELECT INBOX", "COPY 1:2 Archive", "COPY 3 Nonexistent", "COPY 99 Archive",
             "STATUS Archive (MESSAGES UIDNEXT)", "EXAMINE Archive", "FETCH 1:* (UID FLAGS)"],
    "uid": ["SELECT INBOX", "UID FETCH 2:5 (UID FLAGS)", "UID STORE 2:3 +FLAGS (\\Flagged)",
            "UID STORE 4 FLAGS.SILENT (\\Seen)", "UID SEARCH FLAGGED", "UID COPY 5:6 Work",
            "UID FETCH 1:* FLAGS", "UID FETCH 999 FLAGS", "STATUS Work (MESSAGES UIDNEXT)"],
    "uidplus": ["SELECT INBOX", "STORE 1:4 +FLAGS.SILENT (\\Deleted)", "UID EXPUNGE 2:3",
                "FETCH 1:* (UID FLAGS)", "UID COPY 5 Archive", "COPY 1 Archive",
                "UID EXPUNGE 1:*"],
    "move": ["SELECT INBOX", "MOVE 1 Archive", "UID MOVE 5:6 Work", "MOVE 99 Archive",
             "MOVE 1 Nonexistent", "FETCH 1:* UID", "STATUS Archive (MESSAGES)",
             "STATUS Work (MESSAGES)"],
    "unselect": ["SELECT INBOX", "STORE 1 +FLAGS.SILENT (\\Deleted)", "UNSELECT",
                 "FETCH 1 FLAGS", "SELECT INBOX", "FETCH 1 FLAGS", "UNSELECT", "UNSELECT"],
    "condstore": ["ENABLE CONDSTORE", "SELECT INBOX (CONDSTORE)", "FETCH 1:* (MODSEQ)",
                  "STORE 1 +FLAGS (\\Flagged)", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
                  "STORE 2 (UNCHANGEDSINCE 1) +FLAGS (\\Answered)",
                  "UID FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 2)",
                  "SEARCH MODSEQ 1", "STATUS Archive (HIGHESTMODSEQ MESSAGES)"],
    "select_condstore_without_enable": ["SELECT INBOX (CONDSTORE)", "FETCH 2 (FLAGS MODSEQ)",
                                        "EXAMINE Archive (CONDSTORE)"],
    "qresync": ["ENABLE QRESYNC", "SELECT INBOX", "STORE 3 +FLAGS (\\Deleted)", "EXPUNGE",
                "UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)", "UNSELECT"],
    "enable": ["ENABLE CONDSTORE QRESYNC", "ENABLE CONDSTORE"],
}


@pytest.mark.parametrize("scenario", list(STATEFUL))
def test_stateful_commands_match_dovecot(proxy: RunningProxy, raw_factory: RawFactory,
                                         twins: tuple[Any, Any], scenario: str) -> None:
    via, direct = connect_pair(proxy, raw_factory, *twins)
    for command in STATEFUL[scenario]:
        assert_same(via, direct, command)


def test_append_matches_dovecot(proxy: RunningProxy, raw_factory: RawFactory,
                                twins: tuple[Any, Any]) -> None:
    via, direct = connect_pair(proxy, raw_factory, *twins)
    cases: list[dict[str, Any]] = [
        {"mailbox": "INBOX", "message": sample_message("plain")},
        {"mailbox": "Archive", "message": sample_message("flagged"),
         "flags": "\\Seen \\Flagged", "date": "05-Mar-2024 10:00:00 +0100"},
        {"mailbox": "INBOX", "message": sample_message("keyword"), "flags": "$Custom"},
        {"mailbox": "Nonexistent", "message": sample_message("nowhere")},
    ]
    for case in cases:
        results = []
        for client in (via, direct):
            untagged, tagged = append_raw(client, **case)
            results.append([normalise(u) for u in untagged if not u.startswith(b"+")]
                           + [normalise(tagged.split(b" ", 1)[1])])
        assert results[0] == results[1], case
    assert_same(via, direct, "EXAMINE Archive")
    assert_same(via, direct, "FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE)")
    assert_same(via, direct, "EXAMINE INBOX")
    assert_same(via, direct, "FETCH 9:* (FLAGS BODY.PEEK[])")


# --- APPEND ----------------------------------------------------------------------------------


def test_append_flags_and_date(imap_proxy: imaplib.IMAP4, imap_direct: imaplib.IMAP4) -> None:
    msg = sample_message("dated")
    typ, data = imap_proxy.append("INBOX", r"(\Seen \Flagged $Done)",
                                  '"24-Dec-2023 18:30:00 +0100"', msg)
    assert typ == "OK"
    assert b"APPENDUID" in data[0]
    imap_direct.select("INBOX")
    typ, data = imap_direct.fetch("1", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert typ == "OK"
    meta = data[0][0]
    assert b"\\Seen" in meta and b"\\Flagged" in meta and b"$Done" in meta
    m = re.search(rb'INTERNALDATE "([^"]+)"', meta)
    assert m, meta
    stored = datetime.strptime(m.group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
    assert stored == datetime(2023, 12, 24, 17, 30, tzinfo=UTC)  # same instant
    assert data[0][1] == msg


def test_append_one_megabyte_literal(imap_proxy: imaplib.IMAP4,
                                     imap_direct: imaplib.IMAP4) -> None:
    msg = sample_message("big", size=1024 * 1024)
    assert len(msg) > 1024 * 1024
    typ, data = imap_proxy.append("INBOX", None, None, msg)
    assert typ == "OK", data
    imap_direct.select("INBOX")
    typ, data = imap_direct.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
    assert data[0][1] == msg
    assert b"RFC822.SIZE %d" % len(msg) in data[0][0]
    # and back through the proxy, byte for byte
    imap_proxy.select("INBOX", readonly=True)
    typ, data = imap_proxy.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == msg


def test_literal_plus_from_the_client(raw_proxy_login: RawClient,
                                      imap_direct: imaplib.IMAP4) -> None:
    msg = sample_message("literalplus")
    untagged, tagged = append_raw(raw_proxy_login, "INBOX", msg, flags="\\Seen", nonsync=True)
    assert status_of(tagged) == b"OK", tagged
    assert not any(u.startswith(b"+") for u in untagged)  # no continuation for {n+}
    # two non-synchronising literals in one command, all sent at once
    raw_proxy_login.send(b"C1 CREATE {6+}\r\nLitBox\r\nC2 STATUS {6+}\r\nLitBox (MESSAGES)\r\n")
    _, tagged = raw_proxy_login.read_until_tagged("C1")
    assert status_of(tagged) == b"OK"
    untagged, tagged = raw_proxy_login.read_until_tagged("C2")
    assert status_of(tagged) == b"OK"
    assert untagged == [b'* STATUS LitBox (MESSAGES 0)\r\n']
    imap_direct.select("INBOX")
    _, data = imap_direct.fetch("1", "(FLAGS BODY.PEEK[])")
    assert data[0][1] == msg and b"\\Seen" in data[0][0]


def test_login_with_literal_plus(raw_proxy: RawClient, account: Any) -> None:
    user, password = account.user.encode(), account.password.encode()
    raw_proxy.send(b"L1 LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n"
                   % (len(user), user, len(password), password))
    untagged, tagged = raw_proxy.read_until_tagged("L1")
    assert status_of(tagged) == b"OK"
    assert untagged == []


def test_uidplus_appenduid_copyuid_uid_expunge(raw_proxy_login: RawClient) -> None:
    client = raw_proxy_login
    _, tagged = append_raw(client, "INBOX", sample_message("u1"))
    m = re.search(rb"\[APPENDUID (\d+) (\d+)\] ", tagged)
    assert m, tagged
    uid = m.group(2).decode()
    client.ok("SELECT INBOX")
    assert client.ok(f"UID FETCH {uid} (UID)") == [f"* 1 FETCH (UID {uid})\r\n".encode()]
    client.ok("CREATE Dest")
    _, tagged = client.command(f"UID COPY {uid} Dest")
    assert status_of(tagged) == b"OK"
    assert re.search(rb"\[COPYUID \d+ " + uid.encode() + rb" 1\]", tagged), tagged
    # UID EXPUNGE removes only the given UID, though both are \Deleted
    append_raw(client, "INBOX", sample_message("u2"))
    client.ok("NOOP")
    client.ok("STORE 1:* +FLAGS.SILENT (\\Deleted)")
    untagged = client.ok(f"UID EXPUNGE {uid}")
    assert [u for u in untagged if b"EXPUNGE" in u] == [b"* 1 EXPUNGE\r\n"]
    untagged = client.ok("UID SEARCH ALL")
    assert untagged == [f"* SEARCH {int(uid) + 1}\r\n".encode()]


# --- IDLE ------------------------------------------------------------------------------------


def test_idle_shows_new_mail_from_another_connection(raw_proxy_login: RawClient,
                                                     dovecot: Any, account: Any) -> None:
    client = raw_proxy_login
    untagged = client.ok("SELECT INBOX")
    assert b"* 0 EXISTS\r\n" in untagged
    client.send(b"I1 IDLE\r\n")
    assert client.read_response().startswith(b"+")
    dovecot.append(account.user, account.password, "INBOX", sample_message("during-idle"))
    seen = []
    while True:  # Dovecot may send RECENT after EXISTS; the socket timeout bounds this
        response = client.read_response()
        seen.append(response)
        if response == b"* 1 EXISTS\r\n":
            break
        assert not response.startswith(b"I1 "), seen
    client.send(b"DONE\r\n")
    rest, tagged = client.read_until_tagged("I1")
    assert status_of(tagged) == b"OK"
    assert all(r.startswith(b"* ") for r in rest)
    untagged = client.ok("FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
    assert b"Subject: during-idle" in untagged[0]


def test_idle_done_with_lowercase_and_flag_change(raw_proxy_login: RawClient, seeded: Any
                                                  ) -> None:
    client = raw_proxy_login
    client.ok("SELECT INBOX")
    client.send(b"I2 IDLE\r\n")
    assert client.read_response().startswith(b"+")
    direct = imap_login(seeded.host, seeded.port, seeded.user, seeded.password)
    try:
        direct.select("INBOX")
        direct.store("5", "+FLAGS", r"(\Flagged)")
        response = client.read_response()
        assert response.startswith(b"* 5 FETCH (") and b"\\Flagged" in response
    finally:
        direct.logout()
    client.send(b"done\r\n")
    _, tagged = client.read_until_tagged("I2")
    assert status_of(tagged) == b"OK"
    client.ok("NOOP")


def test_idle_ended_by_something_else_than_done(raw_proxy_login: RawClient) -> None:
    client = raw_proxy_login
    client.ok("SELECT INBOX")
    client.send(b"I3 IDLE\r\n")
    assert client.read_response().startswith(b"+")
    client.send(b"I4 NOOP\r\n")
    _, tagged = client.read_until_tagged("I3")
    assert status_of(tagged) == b"BAD"
    client.ok("NOOP")  # the session is still usable


def test_idle_in_authenticated_state(raw_proxy_login: RawClient) -> None:
    raw_proxy_login.send(b"I5 IDLE\r\n")
    assert raw_proxy_login.read_response().startswith(b"+")
    raw_proxy_login.send(b"DONE\r\n")
    _, tagged = raw_proxy_login.read_until_tagged("I5")
    assert status_of(tagged) == b"OK"


# --- ID, NAMESPACE, ENABLE -------------------------------------------------------------------


def test_id_is_answered_by_the_proxy(raw_proxy: RawClient, account: Any) -> None:
    untagged = raw_proxy.ok('ID ("name" "pytest" "version" "1.0")')
    assert len(untagged) == 1 and untagged[0].startswith(b'* ID ("name" "imapproxy"')
    assert raw_proxy.ok("ID NIL") == untagged
    _, tagged = raw_proxy.command('ID ("odd")')
    assert status_of(tagged) == b"BAD"
    raw_proxy.login(account.user, account.password)
    assert raw_proxy.ok("ID NIL") == untagged


def test_namespace(raw_proxy_login: RawClient) -> None:
    untagged = raw_proxy_login.ok("NAMESPACE")
    assert len(untagged) == 1 and untagged[0].startswith(b"* NAMESPACE ((")


def test_enable(raw_proxy_login: RawClient) -> None:
    assert raw_proxy_login.ok("ENABLE CONDSTORE") == [b"* ENABLED CONDSTORE\r\n"]
    # not advertised by the proxy: nothing enabled, even if Dovecot would know it
    assert raw_proxy_login.ok("ENABLE UTF8=ACCEPT NOTIFY") == [b"* ENABLED\r\n"]
    untagged = raw_proxy_login.ok("ENABLE QRESYNC")
    assert untagged == [b"* ENABLED QRESYNC\r\n"]
    untagged = raw_proxy_login.ok("SELECT INBOX")
    assert any(b"HIGHESTMODSEQ" in u for u in untagged)


def test_enable_before_login_is_bad(raw_proxy: RawClient) -> None:
    _, tagged = raw_proxy.command("ENABLE CONDSTORE")
    assert status_of(tagged) == b"BAD"
    raw_proxy.ok("NOOP")


# --- unsolicited responses from another session ----------------------------------------------


def test_unsolicited_updates_reach_the_client_at_noop(
        proxy: RunningProxy, raw_factory: RawFactory, seeded: Any, dovecot: Any) -> None:
    via = raw_factory(proxy.host, proxy.port)
    via.login(seeded.user, seeded.password)
    observer = raw_factory(seeded.host, seeded.port)  # a direct session, for comparison
    observer.login(seeded.user, seeded.password)
    for client in (via, observer):
        untagged = client.ok("EXAMINE INBOX")
        assert b"* %d EXISTS\r\n" % INBOX_COUNT in untagged
    # another direct session changes the mailbox: expunge #3, flag #6, deliver one new message
    other = imap_login(seeded.host, seeded.port, seeded.user, seeded.password)
    try:
        other.select("INBOX")
        other.store("3", "+FLAGS", r"(\Deleted)")
        other.expunge()
        other.store("5", "+FLAGS", r"(\Draft)")  # was #6 before the expunge
    finally:
        other.logout()
    dovecot.append(seeded.user, seeded.password, "INBOX", sample_message("new"))
    got = via.ok("NOOP")
    want = observer.ok("NOOP")
    assert got == want
    assert b"* 3 EXPUNGE\r\n" in got
    assert b"* %d EXISTS\r\n" % INBOX_COUNT in got  # 8 - 1 + 1
    flagged = [r for r in got if re.match(rb"\* \d+ FETCH \(.*\\Draft", r)]
    assert len(flagged) == 1
    # UID 6: sequence number 6 if announced before the EXPUNGE of #3, 5 after it
    before = got.index(flagged[0]) < got.index(b"* 3 EXPUNGE\r\n")
    assert flagged[0].startswith(b"* 6 FETCH (" if before else b"* 5 FETCH (")
    assert via.ok("FETCH 5 (UID FLAGS)") == [
        b"* 5 FETCH (UID 6 FLAGS (\\Flagged \\Draft $Label1))\r\n"]
    # sequence numbers are now consistent: the new message is the last one
    untagged = via.ok(f"FETCH {INBOX_COUNT} BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
    assert b"Subject: new" in untagged[0]


def test_unsolicited_expunge_during_fetch_is_relayed(
        proxy: RunningProxy, raw_factory: RawFactory, seeded: Any) -> None:
    via = raw_factory(proxy.host, proxy.port)
    via.login(seeded.user, seeded.password)
    via.ok("SELECT INBOX")
    other = imap_login(seeded.host, seeded.port, seeded.user, seeded.password)
    try:
        other.select("INBOX")
        other.store("1", "+FLAGS", r"(\Deleted)")
        other.expunge()
    finally:
        other.logout()
    # FETCH must not send EXPUNGE (RFC 3501 7.4.1); the next NOOP does
    fetched = via.ok("FETCH 1:* (UID)")
    noop = via.ok("NOOP")
    assert b"* 1 EXPUNGE\r\n" in fetched + noop
    assert len([r for r in fetched if b" FETCH (UID " in r]) in (INBOX_COUNT, INBOX_COUNT - 1)
    assert via.ok("SEARCH ALL") == [
        b"* SEARCH " + b" ".join(b"%d" % i for i in range(1, INBOX_COUNT)) + b"\r\n"]


# --- commands in the wrong state, unknown and unadvertised commands --------------------------

WRONG_STATE = {
    "not authenticated": ["SELECT INBOX", "EXAMINE INBOX", "CREATE X", "DELETE X",
                          "RENAME X Y", "SUBSCRIBE X", "UNSUBSCRIBE X", 'LIST "" "*"',
                          'LSUB "" "*"', "STATUS INBOX (MESSAGES)", "NAMESPACE", "IDLE",
                          "ENABLE CONDSTORE", "CHECK", "CLOSE", "EXPUNGE", "SEARCH ALL",
                          "FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "COPY 1 X", "MOVE 1 X",
                          "UNSELECT", "UID FETCH 1 FLAGS", "UID EXPUNGE 1"],
    "authenticated": ["LOGIN a b", "AUTHENTICATE PLAIN", "CHECK", "CLOSE", "EXPUNGE",
                      "SEARCH ALL", "FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "COPY 1 X",
                      "MOVE 1 X", "UNSELECT", "UID FETCH 1 FLAGS", "UID STORE 1 FLAGS ()",
                      "UID SEARCH ALL", "UID COPY 1 X", "UID MOVE 1 X", "UID EXPUNGE 1",
                      "STARTTLS"],
    "selected": ["LOGIN a b", "AUTHENTICATE PLAIN", "STARTTLS"],
}


@pytest.mark.parametrize("state", list(WRONG_STATE))
def test_command_in_wrong_state_is_bad_and_session_continues(
        raw_proxy: RawClient, account: Any, state: str) -> None:
    if state != "not authenticated":
        raw_proxy.login(account.user, account.password)
    if state == "selected":
        raw_proxy.ok("SELECT INBOX")
    for command in WRONG_STATE[state]:
        untagged, tagged = raw_proxy.command(command, tag="W1")
        assert status_of(tagged) == b"BAD", (command, tagged)
        assert untagged == [], (command, untagged)
        raw_proxy.ok("NOOP")
    if state == "selected":  # still selected
        raw_proxy.ok("SEARCH ALL")


UNKNOWN = ["FOOBAR", "XYZZY 1 2 3", "UID FOO 1", "UID NOOP", "SORT (DATE) UTF-8 ALL",
           "THREAD REFERENCES UTF-8 ALL", "UID SORT (DATE) UTF-8 ALL", "GETQUOTAROOT INBOX",
           "GETACL INBOX", "NOTIFY NONE", "COMPRESS DEFLATE", "XLIST \"\" \"*\"",
           "GETMETADATA INBOX /private/comment", "URLFETCH foo", "X-DOVECOT-NOTHING"]


@pytest.mark.parametrize("logged_in", [False, True])
def test_unknown_commands_are_bad(raw_proxy: RawClient, account: Any, logged_in: bool) -> None:
    if logged_in:
        raw_proxy.login(account.user, account.password)
        raw_proxy.ok("SELECT INBOX")
    for command in UNKNOWN:
        untagged, tagged = raw_proxy.command(command, tag="U1")
        assert status_of(tagged) == b"BAD", (command, tagged)
        assert untagged == [], (command, untagged)
    raw_proxy.ok("NOOP")


def test_pipelined_commands_are_answered_in_order(raw_proxy_login: RawClient,
                                                  seeded: Any) -> None:
    raw_proxy_login.send(b"p1 SELECT INBOX\r\np2 FETCH 1 FLAGS\r\np3 BOGUS\r\n"
                         b"p4 SEARCH ALL\r\np5 NOOP\r\n")
    for tag, status in (("p1", b"OK"), ("p2", b"OK"), ("p3", b"BAD"), ("p4", b"OK"),
                        ("p5", b"OK")):
        _, tagged = raw_proxy_login.read_until_tagged(tag)
        assert status_of(tagged) == status, tagged
