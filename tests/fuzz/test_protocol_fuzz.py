"""Fuzzing the sans-I/O codec (imapproxy/protocol/): any bytes, fed whole, byte by byte or in
random chunks, either parse or raise ProtocolError, never anything else, never a hang, with the
framer's buffer bounded by its caps; chunking never changes the result; round trips hold."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imapproxy.protocol.command import Command, parse_command, serialize_command
from imapproxy.protocol.errors import ProtocolError
from imapproxy.protocol.fetch import FetchRequest, parse_fetch_items
from imapproxy.protocol.framing import Frame, Framer, FramerEvent, NeedContinuation, Rejected
from imapproxy.protocol.nonsync import check_append, may_send_nonsync
from imapproxy.protocol.response import Response, parse_response, serialize_response
from imapproxy.protocol.tokens import Literal, ParenList, Token, TokenReader, serialize_tokens

from .budget import fuzz_settings, no_hang
from .strategies import chunkings, commands, hostile_bytes, responses, tokens

MAX_LINE = 80
MAX_LITERAL = 40
MAX_MESSAGE = 300


def new_framer(server_side: bool = True) -> Framer:
    return Framer(max_line_length=MAX_LINE, max_literal_size=MAX_LITERAL,
                  max_message_size=MAX_MESSAGE, server_side=server_side)


def frame_all(chunks: list[bytes], server_side: bool = True) -> list[FramerEvent]:
    """Every event the framer gives for ``chunks``, checking its memory bound as it goes."""
    framer = new_framer(server_side)
    events: list[FramerEvent] = []
    with no_hang():
        for chunk in chunks:
            framer.receive_data(chunk)
            while (event := framer.next_event()) is not None:
                assert isinstance(event, (Frame, NeedContinuation, Rejected))
                events.append(event)
            assert framer.buffered <= MAX_MESSAGE + 2 * MAX_LINE, framer.buffered
    return events


def parse_or_protocol_error(frame: bytes) -> tuple[Command | None, Response | None]:
    """The frame read as a command and as a response; None where it is not one. Anything
    but ProtocolError escapes and fails the test."""
    command: Command | None = None
    response: Response | None = None
    with no_hang():
        try:
            command = parse_command(frame)
        except ProtocolError:
            pass
        try:
            response = parse_response(frame)
        except ProtocolError:
            pass
        try:
            TokenReader(frame).read_tokens()
        except ProtocolError:
            pass
    return command, response


def check_round_trips(command: Command | None, response: Response | None) -> None:
    """What parsed writes back to bytes that parse to the same tree."""
    if command is not None:
        assert parse_command(serialize_command(command)) == command
        try:
            request = parse_fetch_items(command.args)
        except ProtocolError:
            pass
        else:
            assert isinstance(request, FetchRequest)
        assert isinstance(may_send_nonsync(command), bool)
        try:
            check_append(command)
        except ProtocolError:
            pass
    if response is not None:
        assert parse_response(serialize_response(response)) == response


@fuzz_settings(weight=2)
@given(hostile_bytes, st.data())
def test_any_bytes_frame_the_same_however_chunked(data: bytes, draw: st.DataObject) -> None:
    whole = frame_all([data])
    assert frame_all([data[i:i + 1] for i in range(len(data))]) == whole
    assert frame_all(draw.draw(chunkings(data))) == whole
    client_side = frame_all([data], server_side=False)
    assert not any(isinstance(e, NeedContinuation) for e in client_side)


@fuzz_settings(weight=2)
@given(hostile_bytes)
def test_any_frame_parses_or_raises_protocol_error_and_round_trips(data: bytes) -> None:
    for event in frame_all([data]):
        if isinstance(event, Frame):
            check_round_trips(*parse_or_protocol_error(event.data))


@fuzz_settings()
@given(hostile_bytes)
def test_unframed_bytes_parse_or_raise_protocol_error(data: bytes) -> None:
    """The parsers on their own, given what a framer would never hand them."""
    check_round_trips(*parse_or_protocol_error(data))
    check_round_trips(*parse_or_protocol_error(data + b"\r\n"))


@fuzz_settings()
@given(st.lists(tokens, max_size=4).map(tuple))
def test_fetch_items_parse_or_raise_protocol_error(args: tuple[Token, ...]) -> None:
    try:
        request = parse_fetch_items(args)
    except ProtocolError:
        return
    assert request.items


@fuzz_settings()
@given(commands)
def test_generated_commands_round_trip(command: Command) -> None:
    data = serialize_command(command)
    assert parse_command(data) == command
    events = frame_all([data])
    assert [e.data for e in events if isinstance(e, Frame)] == [data] \
        or len(data) > MAX_LINE or _has_big_literal(command.args)


@fuzz_settings()
@given(responses)
def test_generated_responses_round_trip(response: Response) -> None:
    assert parse_response(serialize_response(response)) == response


@fuzz_settings()
@given(st.lists(commands, min_size=1, max_size=5), st.data())
def test_pipelined_commands_frame_the_same_however_chunked(cmds: list[Command],
                                                           draw: st.DataObject) -> None:
    """A client that pipelines several commands (its literals included) gets each one back
    as one frame, whatever TCP did to the stream."""
    wire = [serialize_command(c) for c in cmds]
    stream = b"".join(wire)
    framer = Framer()  # the default caps: nothing generated here is refused
    frames: list[bytes] = []
    with no_hang():
        for chunk in draw.draw(chunkings(stream)):
            framer.receive_data(chunk)
            while (event := framer.next_event()) is not None:
                if isinstance(event, Frame):
                    frames.append(event.data)
    assert frames == wire
    assert [parse_command(f) for f in frames] == cmds


@fuzz_settings()
@given(tokens)
def test_generated_tokens_round_trip(token: Token) -> None:
    data = serialize_tokens((token,))
    assert TokenReader(data + b"\r\n").read_tokens() == (token,)


def _has_big_literal(args: tuple[Token, ...]) -> bool:
    for token in args:
        if isinstance(token, Literal) and len(token.value) > MAX_LITERAL:
            return True
        if isinstance(token, ParenList) and _has_big_literal(token.items):
            return True
    return False
