"""The framer: lines, literals, caps enforced before buffering, resync after junk."""

import pytest

from imapproxy.protocol.framing import Frame, Framer, NeedContinuation, Rejected, tag_of


def events(framer: Framer, data: bytes) -> list[object]:
    framer.receive_data(data)
    out = []
    while (ev := framer.next_event()) is not None:
        out.append(ev)
    return out


def test_lines_split_across_chunks() -> None:
    f = Framer()
    assert events(f, b"a1 NO") == []
    assert events(f, b"OP\r\na2 CAPA") == [Frame(b"a1 NOOP\r\n")]
    assert events(f, b"BILITY\r\n") == [Frame(b"a2 CAPABILITY\r\n")]


def test_sync_literal_asks_for_continuation_then_completes() -> None:
    f = Framer()
    assert events(f, b"a LOGIN {3}\r\n") == [NeedContinuation(3)]
    assert events(f, b"b") == []
    assert events(f, b"ob x\r\n") == [Frame(b"a LOGIN {3}\r\nbob x\r\n")]


def test_nonsync_and_binary_literals_need_no_continuation() -> None:
    f = Framer()
    assert events(f, b"a APPEND X {2+}\r\nhi ~{1}\r\n") == [NeedContinuation(1)]
    assert events(f, b"\x00\r\n") == [Frame(b"a APPEND X {2+}\r\nhi ~{1}\r\n\x00\r\n")]


def test_literal_may_contain_line_breaks_and_announcements() -> None:
    f = Framer(server_side=False)
    body = b"x {5}\r\ny\r\n"
    data = b"* 1 FETCH (BODY[] {%d}\r\n" % len(body) + body + b")\r\n"
    assert events(f, data) == [Frame(data)]


def test_oversized_sync_literal_refused_before_its_bytes() -> None:
    f = Framer(max_literal_size=100)
    assert events(f, b"t1 APPEND INBOX {101}\r\n") == [Rejected("t1", "literal too big", "TOOBIG")]
    assert f.buffered == 0
    assert events(f, b"t2 NOOP\r\n") == [Frame(b"t2 NOOP\r\n")]


def test_oversized_nonsync_literal_is_discarded_without_buffering() -> None:
    f = Framer(max_literal_size=100)
    assert events(f, b"t1 APPEND INBOX {100000+}\r\n") == [
        Rejected("t1", "literal too big", "TOOBIG")]
    for _ in range(100):
        assert events(f, b"x" * 1000) == []
        assert f.buffered == 0
    assert events(f, b" more\r\nt2 NOOP\r\n") == [Frame(b"t2 NOOP\r\n")]


def test_long_line_rejected_and_resynchronised() -> None:
    f = Framer(max_line_length=50)
    assert events(f, b"t1 " + b"x" * 60) == [Rejected("t1", "line too long")]
    assert f.buffered == 0
    assert events(f, b"yyy\r\nt2 NOOP\r\n") == [Frame(b"t2 NOOP\r\n")]


def test_long_complete_line_keeps_following_commands() -> None:
    f = Framer(max_line_length=20)
    assert events(f, b"t1 " + b"x" * 30 + b"\r\nt2 NOOP\r\n") == [
        Rejected("t1", "line too long"), Frame(b"t2 NOOP\r\n")]


def test_tag_of() -> None:
    assert tag_of(b"a1 NOOP") == "a1"
    assert tag_of(b"a1") is None
    assert tag_of(b"(x NOOP") is None


@pytest.mark.parametrize("cut", [None, 1, 40, 64])
def test_long_line_skips_the_nonsync_literal_it_announces(cut: int | None) -> None:
    """Found by tests/fuzz: the literal of a refused line was read as commands (whole line),
    or not, depending on how the bytes arrived."""
    data = b"t1 APPEND INBOX " + b"x" * 60 + b" {10+}\r\nt9 LOGOUT\r\nt2 NOOP\r\n"
    f = Framer(max_line_length=50)
    chunks = [data] if cut is None else [data[i:i + cut] for i in range(0, len(data), cut)]
    got = [ev for chunk in chunks for ev in events(f, chunk)]
    assert got == [Rejected("t1", "line too long"), Frame(b"t2 NOOP\r\n")]
