"""What a released shared-IDLE follower is told: the difference between the view it was told
and a fresh reading, in its own sequence numbers, each number valid when it is sent."""

from __future__ import annotations

import pytest

from imapproxy.errors import SessionEnded
from imapproxy.protocol.tokens import Atom
from imapproxy.server.idle_view import MailboxState, NewsStyle, news_lines, style_of, uid_set


def state(flags: dict[int, tuple[str, ...]], modseqs: dict[int, int] | None = None,
          uidvalidity: int = 7) -> MailboxState:
    return MailboxState(uidvalidity, sorted(flags), dict(flags), modseqs or {})


def apply(told: list[int], lines: list[bytes]) -> list[int]:
    """A client applying EXPUNGE / EXISTS to its UID list (new UIDs unknown: 0)."""
    view = list(told)
    for line in lines:
        parts = line.split()
        if parts[2] == b"EXPUNGE":
            seq = int(parts[1])
            assert 1 <= seq <= len(view), line
            del view[seq - 1]
        elif parts[2] == b"EXISTS":
            view += [0] * (int(parts[1]) - len(view))
    return view


def test_expunges_highest_first_then_exists() -> None:
    told = state({1: (), 3: (), 5: (), 8: ()})
    now = state({1: (), 5: (), 9: (), 10: ()})
    lines = news_lines(told, now, NewsStyle())
    assert lines == [b"* 4 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n", b"* 4 EXISTS\r\n"]
    assert apply(told.uids, lines) == [1, 5, 0, 0]


def test_flag_changes_in_new_numbers_recent_ignored() -> None:
    told = state({1: (), 2: ("\\Seen",), 3: ()})
    now = state({2: ("\\Seen",), 3: ("\\Flagged", "\\Seen"), 4: ("\\Deleted",)})
    assert news_lines(told, now, NewsStyle()) == [
        b"* 1 EXPUNGE\r\n", b"* 3 EXISTS\r\n", b"* 2 FETCH (FLAGS (\\Flagged \\Seen))\r\n"]
    assert news_lines(now, now, NewsStyle()) == []


def test_condstore_and_qresync_styles() -> None:
    told = state({1: (), 2: (), 3: ()}, {1: 5, 2: 5, 3: 5})
    now = state({1: (), 3: ("\\Seen",)}, {1: 5, 3: 9})
    assert news_lines(told, now, style_of((Atom("CONDSTORE"),))) == [
        b"* 2 EXPUNGE\r\n", b"* 2 FETCH (FLAGS (\\Seen) MODSEQ (9))\r\n"]
    assert news_lines(told, now, style_of((Atom("QRESYNC"),))) == [
        b"* VANISHED 2\r\n", b"* 2 FETCH (UID 3 FLAGS (\\Seen) MODSEQ (9))\r\n"]


def test_a_reading_that_contradicts_the_view_ends_the_session() -> None:
    with pytest.raises(SessionEnded):
        news_lines(state({2: (), 5: ()}), state({1: (), 2: (), 5: ()}), NewsStyle())


def test_uid_sets_are_compact() -> None:
    assert uid_set([1, 2, 3, 7, 9, 10]) == b"1:3,7,9:10"
