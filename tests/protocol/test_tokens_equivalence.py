"""The regex TokenReader against the reference (pre-rewrite) reader: same tokens, same end
position, and ProtocolError on exactly the same inputs, never any other exception."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from imapproxy.protocol.errors import ProtocolError
from imapproxy.protocol.response import parse_response
from imapproxy.protocol.tokens import Token, TokenReader

from . import reference_tokens

Outcome = tuple[str, object, int]
EXAMPLES = int(os.environ.get("TOKENS_EXAMPLES", "400"))  # raise for a longer campaign
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def outcome(reader: TokenReader | reference_tokens.TokenReader, single: bool) -> Outcome:
    try:
        result: object = reader.read_token() if single else reader.read_tokens()
    except ProtocolError:
        return ("error", None, 0)
    return ("ok", result, reader.pos)


def check_same(data: bytes, pos: int = 0, max_depth: int = 64) -> None:
    """Both readers, whole-line and single-token, from ``pos`` and from the first space."""
    starts = {min(pos, len(data)), data.find(b" ") + 1}
    for start in starts:
        for single in (False, True):
            new = outcome(TokenReader(data, start, max_depth=max_depth), single)
            old = outcome(reference_tokens.TokenReader(data, start, max_depth=max_depth), single)
            assert new == old, (data, start, single)


# --- (a) arbitrary bytes and IMAP-flavoured soup ---------------------------------------------

PIECES = [b" ", b"  ", b"(", b")", b'"', b"\\", b'\\"', b"\\\\", b"\r\n", b"\n", b"\r", b"\x00",
          b"\x7f", b"\x1f", b"\xff", b"[", b"]", b"{", b"}", b"~", b"~{", b"+", b"{3}\r\n",
          b"{2+}\r\n", b"~{1}\r\n", b"{0}\n", b"{00}\r\n", b"{1}", b"{+}\r\n", b"{1++}\r\n",
          b"{" + b"9" * 21 + b"}\r\n", b"{" + b"1" * 20 + b"+}\r\n", b"{" + b"1" * 21 + b"+}\r\n",
          b"{" + b"9" * 22 + b"}\r\n", b"NIL", b"abc", b"12", b"BODY[", b"BODY[]", b"<0.10>",
          b"HEADER.FIELDS (", b'"x"', b"\\Seen", b"*", b"%", b"x" * 50]
soup = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=3)), max_size=40).map(
    b"".join)


@SETTINGS
@given(st.one_of(st.binary(max_size=200), soup), st.integers(0, 8), st.integers(0, 4))
@example(b'BODY["\\\n"] x\r\n', 0, 64)
@example(b'BODY["\\', 0, 64)
@example(b"~{1}x", 0, 64)
@example(b"a~{1}\r\nxb\r\n", 0, 64)
@example(b"(((a)))\r\n", 0, 2)
@example(b'a"b"(c){1}\r\nx[y]z\r\n', 0, 64)
@example(b"\r", 0, 64)
@example(b"", 0, 64)
def test_arbitrary_bytes(data: bytes, pos: int, depth: int) -> None:
    check_same(data, pos, max_depth=depth if depth < 4 else 64)


# --- (b) well-formed token streams, with odd spacing ------------------------------------------

atom_text = st.text(st.sampled_from("abcXYZ019.-:*,$%&'!#/_=~<>\\]+\xe9\xff"), min_size=1,
                    max_size=12).filter(lambda s: not s.startswith("~{"))
quoted_body = st.binary(max_size=20).map(lambda b: bytes(c for c in b if c not in b"\0\r\n"))


def quote(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


header_field = st.one_of(st.sampled_from([b"FROM", b"To", b"x-a"]), quoted_body.map(quote))
section = st.builds(
    lambda kind, part, fields, partial: kind + b"[" + part + fields + b"]" + partial,
    st.sampled_from([b"BODY", b"BODY.PEEK", b"BINARY", b""]),
    st.sampled_from([b"", b"1.", b"2.1."]),
    st.one_of(st.sampled_from([b"", b"HEADER", b"TEXT", b"MIME"]),
              st.lists(header_field, min_size=1, max_size=3).map(
                  lambda f: b"HEADER.FIELDS (" + b" ".join(f) + b")")),
    st.sampled_from([b"", b"<0>", b"<0.10>", b"<4294967296.1>"]))
literal = st.builds(
    lambda body, binary, nonsync, newline: (b"~{" if binary else b"{") + b"%d" % len(body)
    + (b"+}" if nonsync else b"}") + newline + body,
    st.binary(max_size=30), st.booleans(), st.booleans(), st.sampled_from([b"\r\n", b"\n"]))
leaf = st.one_of(atom_text.map(lambda s: s.encode("latin-1")), section, quoted_body.map(quote),
                 literal, st.just(b"NIL"))
separator = st.sampled_from([b" ", b" ", b" ", b"  ", b""])


@st.composite
def stream(draw: st.DrawFn, depth: int = 0) -> bytes:
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 5))):
        if depth < 3 and draw(st.integers(0, 4)) == 0:
            parts.append(b"(" + draw(separator) + draw(stream(depth + 1)) + draw(separator) + b")")
        else:
            parts.append(draw(leaf))
        parts.append(draw(separator))
    return b"".join(parts)


lines = st.builds(lambda lead, body, end: lead + body + end, separator, stream(),
                  st.sampled_from([b"\r\n", b"\n", b"", b"\r\n\r\n", b"\r"]))


@st.composite
def mutated(draw: st.DrawFn, source: st.SearchStrategy[bytes]) -> bytes:
    """A valid line with one byte inserted, deleted or replaced: the edges of the grammar."""
    data = draw(source)
    at = draw(st.integers(0, len(data)))
    byte = draw(st.sampled_from(list(b' ()"\\[]{}~+\r\n\x00x9')).map(lambda c: bytes([c])))
    how = draw(st.sampled_from(["insert", "delete", "replace"]))
    if how == "insert":
        return data[:at] + byte + data[at:]
    if how == "delete":
        return data[:at] + data[at + 1:]
    return data[:at] + byte + data[at + 1:]


@SETTINGS
@given(lines)
def test_well_formed_streams(data: bytes) -> None:
    check_same(data)


@SETTINGS
@given(mutated(lines), st.integers(0, 3))
def test_mutated_streams(data: bytes, depth: int) -> None:
    check_same(data, max_depth=depth if depth < 3 else 64)


# --- (c) realistic server answers --------------------------------------------------------------

flags = st.lists(st.sampled_from([b"\\Seen", b"\\Answered", b"\\Flagged", b"\\Deleted",
                                  b"\\Draft", b"$Forwarded", b"$MDNSent", b"NonJunk"]),
                 max_size=5).map(b" ".join)
fetch_lines = st.builds(
    lambda n, uid, size, f, modseq, body: b"* %d FETCH (UID %d RFC822.SIZE %d FLAGS (%s) "
    b'INTERNALDATE "17-Jul-1996 02:44:25 -0700" MODSEQ (%d)%s)\r\n'
    % (n, uid, size, f, modseq, body),
    st.integers(1, 2**32), st.integers(1, 2**32), st.integers(0, 10**9), flags,
    st.integers(1, 2**63), st.one_of(st.just(b""), literal.map(lambda lit: b" BODY[] " + lit)))
uid_sets = st.lists(st.one_of(st.integers(1, 2**32).map(b"%d".__mod__),
                              st.tuples(st.integers(1, 2**32), st.integers(1, 2**32)).map(
                                  lambda t: b"%d:%d" % t)), min_size=1, max_size=50)
esearch_lines = st.one_of(
    uid_sets.map(lambda s: b'* ESEARCH (TAG "A1") UID ALL ' + b",".join(s) + b"\r\n"),
    st.lists(st.integers(1, 2**32), max_size=60).map(
        lambda s: b"* SEARCH" + b"".join(b" %d" % u for u in s) + b"\r\n"))
select_lines = st.sampled_from([
    b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\r\n",
    b"* OK [PERMANENTFLAGS (\\Answered \\Seen \\*)] Flags permitted.\r\n",
    b"* 17 EXISTS\r\n", b"* 0 RECENT\r\n", b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n",
    b'* LIST (\\HasNoChildren \\Sent) "/" "Sent Items"\r\n', b"* LIST () \".\" INBOX\r\n",
    b"* LIST (\\Noselect) NIL {7}\r\nM\xe4il/x\r\n",
    b"A142 OK [READ-WRITE] SELECT completed\r\n"])
answers = st.one_of(fetch_lines, esearch_lines, select_lines)


def response_outcome(data: bytes) -> object:
    try:
        return parse_response(data)
    except ProtocolError:
        return "error"


@SETTINGS
@given(st.one_of(answers, mutated(answers)))
def test_realistic_answers(data: bytes) -> None:
    check_same(data, 2)
    check_same(data, data.find(b"(") if b"(" in data else 0)
    if not data.startswith(b"* "):
        return
    import imapproxy.protocol.response as response_module
    new = response_outcome(data)
    saved = response_module.TokenReader
    response_module.TokenReader = reference_tokens.TokenReader  # type: ignore[misc]
    try:
        old = response_outcome(data)
    finally:
        response_module.TokenReader = saved  # type: ignore[misc]
    assert new == old


def test_depth_limit_matches() -> None:
    for depth in (0, 1, 63, 64, 65):
        data = b"(" * depth + b")" * depth + b"\r\n"
        for limit in (0, 1, 64):
            check_same(data, max_depth=limit)


def test_tokens_are_the_same_objects_shape() -> None:
    data = (b'* 1 FETCH (UID 7 BODY[HEADER.FIELDS ("A\\"]" B)]<0.10> {3}\r\nabc '
            b'X ~{2+}\r\n\x00\x01 NIL "q\\\\" ((a) b))\r\n')
    new: tuple[Token, ...] = TokenReader(data, 2).read_tokens()
    assert new == reference_tokens.TokenReader(data, 2).read_tokens()
