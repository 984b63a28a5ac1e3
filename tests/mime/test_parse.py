"""parse_message: offsets, sizes, flags and the Dovecot rules that shape the part tree."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imapproxy.mime import Part, bodystructure, parse_message
from imapproxy.mime.part import DIGEST, IS_MIME, MULTIPART, OVERFLOW, RFC822, TEXT
from tests.mailgen import messages

MULTI = (
    b"Subject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"preamble\r\n"
    b"--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--XX\r\n\r\nsecond\r\n"
    b"--XX--\r\nepilogue\r\n"
)


def test_offsets_and_sizes_of_a_multipart() -> None:
    root = parse_message(MULTI)
    header = MULTI.index(b"\r\n\r\n") + 4
    assert (root.offset, root.header_size, root.body_size) == (0, header, len(MULTI) - header)
    assert root.flags & (MULTIPART | IS_MIME) == MULTIPART | IS_MIME
    first, second = root.children
    assert MULTI[first.offset:first.body_offset] == b"Content-Type: text/plain\r\n\r\n"
    # the CRLF before a boundary line belongs to the multipart, not to the part
    assert MULTI[first.body_offset:first.end] == b"hello"
    assert (first.body_lines, first.body_vsize) == (0, 5)
    assert MULTI[second.offset:second.body_offset] == b"\r\n"
    assert MULTI[second.body_offset:second.end] == b"second"
    assert second.flags & TEXT and second.flags & IS_MIME
    assert root.body_lines == MULTI[header:].count(b"\n")


def test_bare_lf_counts_as_crlf_in_virtual_sizes() -> None:
    raw = b"Subject: x\nFrom: a@b\n\nline1\nline2\r\nline3\rx\n"
    root = parse_message(raw)
    assert (root.header_size, root.header_vsize, root.header_lines) == (22, 25, 3)
    assert (root.body_size, root.body_vsize, root.body_lines) == (21, 23, 3)
    assert root.vsize == 48  # what Dovecot answers as RFC822.SIZE


def test_content_type_alone_makes_a_message_mime() -> None:
    root = parse_message(b"Content-Type: text/html\r\nContent-ID: <x>\r\n\r\nhi\r\n")
    assert root.flags & IS_MIME and root.content.id == b"<x>"
    assert root.content.type == b"text" and root.content.subtype == b"html"


def test_content_headers_without_mime_are_forgotten() -> None:
    root = parse_message(b"Content-ID: <x>\r\nContent-Description: d\r\n\r\nhi\r\n")
    assert not root.flags & IS_MIME and root.flags & TEXT
    assert root.content.id is None and root.content.description is None


def test_digest_parts_default_to_message_rfc822() -> None:
    raw = (b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: in\r\n\r\nx\r\n"
           b"--d\r\nContent-Type: text/plain\r\n\r\ny\r\n--d--\r\n")
    root = parse_message(raw)
    assert root.flags & DIGEST
    first, second = root.children
    assert first.flags & RFC822 and first.children[0].envelope is not None
    assert first.children[0].envelope.subject == b"in"
    assert second.flags & TEXT


def test_multipart_without_boundary_has_no_children() -> None:
    root = parse_message(b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nbody\r\n--x--\r\n")
    assert root.flags & MULTIPART and root.children == []
    assert bodystructure(root, extended=False) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")')


def test_boundary_of_an_outer_multipart_ends_inner_parts() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\n"
           b"Content-Type: multipart/alternative; boundary=in\r\n\r\n--in\r\n\r\ninner\r\n"
           b"--out\r\n\r\nsecond\r\n--out--\r\n")
    root = parse_message(raw)
    assert [len(c.children) for c in root.children] == [1, 0]
    inner = root.children[0].children[0]
    assert raw[inner.body_offset:inner.end] == b"inner"


def test_header_ended_by_a_boundary_gives_its_newline_to_the_parent() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: message/rfc822\r\n\r\n--b--\r\n")
    part = parse_message(raw).children[0]
    assert raw[part.offset:part.body_offset] == b"Content-Type: message/rfc822\r\n"
    # the embedded message starts at that newline, with an empty header and body
    message = part.children[0]
    assert raw[message.offset:message.offset + 2] == b"\r\n"
    assert message.header_size == message.body_size == 0


def test_message_rfc822_without_header_separator() -> None:
    root = parse_message(b"Content-Type: message/rfc822\r\n\r\nhello\r\n")
    message = root.children[0]
    assert message.header_lines == 1 and message.body_size == 0  # "hello" is a header line
    assert root.body_lines == 1


def test_nesting_is_limited_like_dovecot() -> None:
    depth = 110
    raw = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                   for i in range(depth)) + b"\r\nleaf\r\n"
    root = parse_message(raw)
    levels = 0
    part: Part | None = root
    while part is not None and part.children:
        part = part.children[0]
        levels += 1
    assert levels == 99  # at most 100 parts nested, counting the root
    assert part is not None and part.flags & OVERFLOW and not part.flags & MULTIPART
    assert b'"application" "octet-stream"' in bodystructure(root)


def test_walk_numbers_parts_as_imap_does() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\none\r\n--a\r\n"
           b"Content-Type: message/rfc822\r\n\r\nContent-Type: multipart/alternative; boundary=c"
           b"\r\n\r\n--c\r\n\r\nx\r\n--c\r\n\r\ny\r\n--c--\r\n--a--\r\n")
    assert [n for n, _ in parse_message(raw).walk()] == ["", "1", "2", "2.1", "2.2"]
    assert [n for n, _ in parse_message(b"Subject: x\r\n\r\nbody\r\n").walk()] == ["", "1"]


def test_part_round_trips_through_bytes() -> None:
    for raw in messages(40):
        root = parse_message(raw)
        assert Part.from_bytes(root.to_bytes()) == root


@pytest.mark.parametrize("blob", [b"", b"[]", b"[2, []]", b"[1, [1, 2]]", b"\xff"])
def test_from_bytes_rejects_other_data(blob: bytes) -> None:
    with pytest.raises(ValueError):
        Part.from_bytes(blob)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    b"--b\r\n", b"--b--\r\n", b"--c\r\n", b"\r\n", b"\n", b"text\r\n", b"Subject: s\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: message/rfc822\r\n",
    b"Content-Type: multipart/digest; boundary=c\r\n", b" folded\r\n", b"\r", b"x",
]), max_size=30))
def test_any_input_gives_a_consistent_tree(chunks: list[bytes]) -> None:
    raw = b"".join(chunks)
    root = parse_message(raw)
    assert root.offset == 0 and root.end == len(raw)

    def check(part: Part) -> None:
        assert 0 <= part.offset <= part.body_offset <= part.end <= len(raw)
        assert part.header_vsize >= part.header_size and part.body_vsize >= part.body_size
        if part.flags & RFC822:
            assert len(part.children) == 1
        for child in part.children:
            assert part.body_offset <= child.offset and child.end <= part.end
            check(child)

    check(root)
    bodystructure(root)
    assert Part.from_bytes(root.to_bytes()) == root


def test_parse_is_fast_enough() -> None:
    """The cache serves thousands of messages: a 20 KB message parses well under 1 ms (the
    bound here is loose for slow CI machines)."""
    raw = next(m for m in messages() if 15_000 < len(m) < 30_000)
    parse_message(raw)
    start = time.perf_counter()
    for _ in range(50):
        parse_message(raw)
    assert (time.perf_counter() - start) / 50 < 0.005
