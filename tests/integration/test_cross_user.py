"""Two users with the same mailbox names and the same UIDs (and, when Dovecot gives it, the
same UIDVALIDITY) but different mail, read through one proxy in interleaved concurrent
sessions, first with a cold cache and then a warm one: every content item each user gets is
Dovecot's answer for that user's own message, and no byte holds the other user's marker."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from tests.conftest import Account
from tests.marked_mail import MarkerScanner, ScannedClient, marked_message, new_marker

from .conftest import TIMEOUT, RawClient, RunningProxy, quote, status_of

MAILBOXES = ("INBOX", "Shared")
MESSAGES = 3
ITEMS = ("BODY.PEEK[]", "BODY.PEEK[1]", "BODY.PEEK[2.MIME]", "BODY.PEEK[HEADER]",
         "BODY.PEEK[TEXT]", "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]", "BODY.PEEK[]<10.40>",
         "BODYSTRUCTURE", "BODY", "ENVELOPE", "RFC822.SIZE", "RFC822.HEADER", "RFC822",
         "BINARY.PEEK[3]", "BINARY.PEEK[2]", "BINARY.SIZE[3]")
SESSIONS_PER_USER = 2
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")


@dataclass
class Seeded:
    account: Account
    marker: bytes
    uidvalidity: dict[str, bytes]
    expected: dict[tuple[str, str], list[bytes]]  # (mailbox, item) -> Dovecot's answers


def seed_both(first: Account, second: Account) -> tuple[Seeded, Seeded]:
    """The same mailboxes created and filled for both users in lockstep (same names, same
    UIDs; Dovecot derives UIDVALIDITY from the clock, so usually the same one too)."""
    markers = (new_marker(), new_marker())
    clients = [RawClient(a.host, a.port) for a in (first, second)]
    try:
        for client, account in zip(clients, (first, second), strict=True):
            client.login(account.user, account.password)
        for client in clients:
            client.ok("CREATE Shared")
        for mailbox in MAILBOXES:
            for i in range(MESSAGES):
                for client, marker in zip(clients, markers, strict=True):
                    msg = marked_message(marker, i)
                    _, tagged = client.command(
                        f"APPEND {mailbox} {{{len(msg)}+}}\r\n".encode() + msg)
                    assert status_of(tagged) == b"OK", tagged
        return tuple(  # type: ignore[return-value]
            Seeded(account, marker, *dovecot_answers(client))
            for client, account, marker in zip(clients, (first, second), markers, strict=True))
    finally:
        for client in clients:
            client.close()


def dovecot_answers(client: RawClient) -> tuple[dict[str, bytes],
                                                dict[tuple[str, str], list[bytes]]]:
    uidvalidity: dict[str, bytes] = {}
    expected: dict[tuple[str, str], list[bytes]] = {}
    for mailbox in MAILBOXES:
        untagged = client.ok(f"EXAMINE {mailbox}")
        uidvalidity[mailbox] = next(m.group(1) for line in untagged
                                    if (m := _UIDVALIDITY.search(line)))
        for item in ITEMS:
            expected[mailbox, item] = fetch(client, item)
    return uidvalidity, expected


def fetch(client: RawClient, item: str) -> list[bytes]:
    """``UID FETCH 1:* (UID item)``'s FETCH responses."""
    untagged = client.ok(f"UID FETCH 1:* (UID {item})")
    found = [r for r in untagged if b" FETCH " in r]
    assert len(found) == MESSAGES, (item, untagged)
    return found


def read_everything(proxy: RunningProxy, user: Seeded, other: Seeded,
                    errors: list[str], start: threading.Barrier) -> None:
    scanner = MarkerScanner([other.marker], own=user.marker)
    try:
        with ScannedClient(proxy.host, proxy.port, scanner, TIMEOUT) as client:
            client.ok(f"LOGIN {quote(user.account.user)} {quote(user.account.password)}")
            start.wait(TIMEOUT)
            for mailbox in MAILBOXES:
                client.ok(f"EXAMINE {mailbox}")
                for item in ITEMS:
                    got = fetch(client, item)
                    if got != user.expected[mailbox, item]:
                        errors.append(f"{user.account.user} {mailbox} {item}: {got[0][:300]!r}"
                                      f" != {user.expected[mailbox, item][0][:300]!r}")
    except (OSError, EOFError, AssertionError, threading.BrokenBarrierError) as exc:
        errors.append(f"{user.account.user}: {exc!r}")
    if scanner.leaks:
        errors.append(f"{user.account.user} got the other user's data: {scanner.leaks[:2]!r}")
    if not scanner.saw_own:
        errors.append(f"{user.account.user} never saw its own mail")


def test_same_names_and_uids_never_cross(proxy: RunningProxy, account: Account,
                                         second_account: Account) -> None:
    a, b = seed_both(account, second_account)
    assert a.expected != b.expected
    print("same UIDVALIDITY:", a.uidvalidity == b.uidvalidity)
    for phase in ("cold cache", "warm cache"):
        errors: list[str] = []
        pairs = [(a, b), (b, a)] * SESSIONS_PER_USER
        start = threading.Barrier(len(pairs))
        threads = [threading.Thread(target=read_everything, args=(proxy, user, other, errors,
                                                                  start))
                   for user, other in pairs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads), phase
        assert not errors, (phase, errors[:4])
