"""The session's view of its selected mailbox: only what the upstream said, kept current."""

from __future__ import annotations

import time

import pytest

from imapproxy.protocol.response import parse_response
from imapproxy.server.mailbox import SelectedMailbox, parse_set


def feed(box: SelectedMailbox, *lines: bytes) -> None:
    for line in lines:
        box.observe(parse_response(line))


def selected(uids: list[int]) -> SelectedMailbox:
    box = SelectedMailbox(b"INBOX", read_only=False)
    feed(box, b"* %d EXISTS\r\n" % len(uids), b"* OK [UIDVALIDITY 7] x\r\n")
    for seq, uid in enumerate(uids, 1):
        feed(box, b"* %d FETCH (FLAGS () UID %d)\r\n" % (seq, uid))
    return box


def test_learns_uids_from_fetch_responses() -> None:
    box = selected([3, 5, 9])
    assert box.uidvalidity == 7
    assert box.uids == [3, 5, 9] and box.uids_complete
    assert box.resolve("2:*", by_uid=False) == [(2, 5), (3, 9)]
    assert box.resolve("4:9", by_uid=True) == [(2, 5), (3, 9)]
    assert box.resolve("10:*", by_uid=True) == [(3, 9)]  # n:* always names the last one
    assert box.resolve("4", by_uid=False) is None  # out of range: the upstream answers


def test_new_messages_are_unknown_until_named() -> None:
    box = selected([3, 5])
    feed(box, b"* 3 EXISTS\r\n")
    assert not box.uids_complete
    assert box.resolve("1", by_uid=False) is None
    feed(box, b"* 3 FETCH (UID 12 FLAGS (\\Recent))\r\n")
    assert box.uids == [3, 5, 12] and box.uids_complete


def test_expunge_and_vanished_keep_the_map_right() -> None:
    box = selected([3, 5, 9, 11, 20])
    feed(box, b"* 2 EXPUNGE\r\n")
    assert box.uids == [3, 9, 11, 20] and box.exists == 4
    feed(box, b"* VANISHED 9,20\r\n")
    assert box.uids == [3, 11] and box.exists == 2
    feed(box, b"* VANISHED (EARLIER) 1:100\r\n")  # history, not news
    assert box.uids == [3, 11] and box.exists == 2
    assert box.resolve("*", by_uid=False) == [(2, 11)]


def test_an_unexpected_uid_forgets_the_rest() -> None:
    box = selected([3, 5, 9])
    feed(box, b"* 2 FETCH (UID 6)\r\n")
    assert box.uids == [3, 6] and not box.uids_complete


def test_gaps_are_not_guessed() -> None:
    box = SelectedMailbox(b"INBOX", read_only=False)
    feed(box, b"* 4 EXISTS\r\n", b"* 3 FETCH (UID 30)\r\n")
    assert box.uids == [] and box.resolve("3", by_uid=False) is None


@pytest.mark.parametrize(("text", "star", "numbers"), [
    ("1", None, {1}), ("2:4,9", None, {2, 3, 4, 9}), ("4:2", None, {2, 3, 4}),
    ("3:*", 5, {3, 4, 5}), ("*", 7, {7}), ("*", None, None), ("a", 3, None), ("1:x", 3, None),
    ("1:99999999", 3, None),
])
def test_parse_set(text: str, star: int | None, numbers: set[int] | None) -> None:
    assert parse_set(text, star) == numbers


def test_parse_set_bounds_its_work() -> None:
    """Found by tests/fuzz: a set repeating a big range cost seconds per FETCH (the loop
    stalled for every session), and 5000 digits raised ValueError."""
    started = time.monotonic()
    assert parse_set(",".join(["1:1000000"] * 200), 10) is None
    assert parse_set("1:" + "9" * 5000, 10) is None
    assert parse_set(",".join(["1:4294967295"] * 5000), 10, ceiling=11) == set(range(1, 12))
    assert time.monotonic() - started < 1.0


def test_resolve_huge_set_costs_no_more_than_the_mailbox() -> None:
    box = SelectedMailbox(b"INBOX", read_only=False)
    feed(box, b"* 2 EXISTS\r\n", b"* 1 FETCH (UID 5)\r\n", b"* 2 FETCH (UID 9)\r\n")
    assert box.resolve("1:4294967295", by_uid=True) == [(1, 5), (2, 9)]
    assert box.resolve("1:4294967295", by_uid=False) is None  # out of range: upstream's call
    assert box.resolve("2:1", by_uid=False) == [(1, 5), (2, 9)]
