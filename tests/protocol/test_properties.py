"""Property tests: round trips, and arbitrary bytes never raise anything but ProtocolError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imapproxy.protocol.command import Command, parse_command, serialize_command
from imapproxy.protocol.errors import ProtocolError
from imapproxy.protocol.framing import Frame, Framer, NeedContinuation, Rejected
from imapproxy.protocol.response import (
    Continuation,
    DataResponse,
    Response,
    StatusResponse,
    parse_response,
    serialize_response,
)
from imapproxy.protocol.tokens import Atom, Literal, ParenList, Quoted, Token

ATOM_CHARS = st.sampled_from(list("abcXYZ019.-:*,\\$%&'!#/_=~<>"))
atoms = st.builds(lambda s: Atom(s), st.text(ATOM_CHARS, min_size=1, max_size=12)).filter(
    lambda a: not a.value.startswith("~{"))
sections = st.builds(lambda n, f: Atom(f"BODY[{n}.HEADER.FIELDS ({f})]<0.9>"),
                     st.integers(1, 9), st.sampled_from(["FROM", "TO CC", '"X-A" B']))
quoted = st.builds(Quoted, st.binary(max_size=20).map(
    lambda b: bytes(c for c in b if c not in (0, 10, 13))))
literals = st.builds(Literal, st.binary(max_size=40), st.booleans(), st.booleans())
tokens: st.SearchStrategy[Token] = st.recursive(
    st.one_of(atoms, sections, quoted, literals),
    lambda children: st.builds(lambda xs: ParenList(tuple(xs)), st.lists(children, max_size=4)),
    max_leaves=12,
)
tags = st.text(st.sampled_from(list("abcA019.")), min_size=1, max_size=6)
names = st.sampled_from(["NOOP", "FETCH", "APPEND", "LOGIN", "X-ODD", "SEARCH"])
commands = st.builds(Command, tags, names, st.lists(tokens, max_size=5).map(tuple), st.booleans())

codes = st.sampled_from([None, "ALERT", "UIDNEXT", "CAPABILITY", "PERMANENTFLAGS"])
text = st.binary(max_size=30).map(lambda b: bytes(c for c in b if c not in (10, 13)).lstrip(b" "))
status_responses = st.builds(
    StatusResponse, st.one_of(st.none(), tags), st.sampled_from(["OK", "NO", "BAD", "BYE"]),
    codes, st.one_of(st.none(), st.just(b"12"), st.just(b"(\\Seen \\*)")), text,
).filter(lambda r: r.code is not None or r.code_data is None).filter(
    lambda r: not (r.code is None and r.text.startswith(b"[")))
data_responses = st.builds(
    DataResponse, st.one_of(st.none(), st.integers(0, 2**32)),
    st.sampled_from(["FETCH", "LIST", "SEARCH", "X-ODD", "FLAGS"]),
    st.lists(tokens, max_size=4).map(tuple))
continuations = st.builds(Continuation, text)
responses: st.SearchStrategy[Response] = st.one_of(status_responses, data_responses,
                                                   continuations)


@given(commands)
def test_command_round_trip(command: Command) -> None:
    assert parse_command(serialize_command(command)) == command


@given(responses)
def test_response_round_trip(response: Response) -> None:
    assert parse_response(serialize_response(response)) == response


@given(commands)
def test_framer_yields_one_frame_per_command_fed_byte_by_byte(command: Command) -> None:
    data = serialize_command(command)
    framer = Framer()
    frames = []
    for i in range(len(data)):
        framer.receive_data(data[i:i + 1])
        while (event := framer.next_event()) is not None:
            assert isinstance(event, (Frame, NeedContinuation))
            if isinstance(event, Frame):
                frames.append(event.data)
    assert frames == [data]


def _check_arbitrary(data: bytes, chunk: int) -> None:
    framer = Framer(max_line_length=200, max_literal_size=100)
    for i in range(0, len(data), chunk):
        framer.receive_data(data[i:i + chunk])
        while (event := framer.next_event()) is not None:
            assert isinstance(event, (Frame, NeedContinuation, Rejected))
            if isinstance(event, Frame):
                try:
                    parse_command(event.data)
                except ProtocolError:
                    pass
                try:
                    parse_response(event.data)
                except ProtocolError:
                    pass
        assert framer.buffered <= 200 + 100 + 1024 * 1024


imap_ish = st.lists(st.sampled_from([
    b"a1 ", b"NOOP", b"FETCH", b" ", b"(", b")", b'"', b"\\", b"{3}\r\n", b"{2+}\r\n", b"~{1}",
    b"\r\n", b"\n", b"[", b"]", b"<0.5>", b"*", b"+", b"\x00", b"\xff", b"BODY[", b"1:*",
]), max_size=40).map(b"".join)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=400), imap_ish), st.sampled_from([1, 3, 64, 1000]))
def test_arbitrary_bytes_parse_or_raise_protocol_error(data: bytes, chunk: int) -> None:
    _check_arbitrary(data, chunk)
