"""Coverage-guided fuzzing of the codec and the MIME parser with atheris (libFuzzer), for long
local campaigns; not part of the test suite (atheris is not a dependency)::

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/atheris_protocol.py -max_total_time=300 -rss_limit_mb=1024

Any exception other than ProtocolError (BAD) or MimeDecodeError (NO), or a failed round trip,
is a crash; libFuzzer saves the input as crash-<hash> to replay (pass the file as argument).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from imapproxy.mime import MimeDecodeError, bodystructure, envelope, fetch_value, parse_message
    from imapproxy.protocol.command import parse_command, serialize_command
    from imapproxy.protocol.errors import ProtocolError
    from imapproxy.protocol.fetch import parse_fetch_items
    from imapproxy.protocol.framing import Frame, Framer
    from imapproxy.protocol.response import parse_response, serialize_response

SECTIONS = ("BODY[]", "BODY[1]", "BODY[1.MIME]", "BODY[2.1.HEADER]", "BINARY[1]",
            "BINARY.SIZE[2]", "BODY[HEADER.FIELDS (FROM TO)]<0.10>", "ENVELOPE")


def frames(data: bytes, chunk: int) -> list[bytes]:
    framer = Framer(max_line_length=512, max_literal_size=256, max_message_size=2048)
    out: list[bytes] = []
    for i in range(0, len(data), chunk):
        framer.receive_data(data[i:i + chunk])
        while (event := framer.next_event()) is not None:
            if isinstance(event, Frame):
                out.append(event.data)
    return out


def codec(data: bytes) -> None:
    whole = frames(data, max(1, len(data)))
    if frames(data, 1) != whole or frames(data, 7) != whole:
        raise AssertionError("chunking changed the frames")
    for frame in whole:
        try:
            command = parse_command(frame)
        except ProtocolError:
            pass
        else:
            if parse_command(serialize_command(command)) != command:
                raise AssertionError("command round trip")
            try:
                parse_fetch_items(command.args)
            except ProtocolError:
                pass
        try:
            response = parse_response(frame)
        except ProtocolError:
            pass
        else:
            if parse_response(serialize_response(response)) != response:
                raise AssertionError("response round trip")


def mime(data: bytes) -> None:
    root = parse_message(data)
    bodystructure(root)
    envelope(root)
    for item in SECTIONS:
        try:
            fetch_value(data, root, item)
        except (ProtocolError, MimeDecodeError):
            pass


def target(data: bytes) -> None:
    if data[:1] == b"M":
        mime(data[1:])
    else:
        codec(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
