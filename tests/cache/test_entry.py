"""The stored form: payload + trailer, written in chunks, verified on read."""

from __future__ import annotations

import io
import os

import pytest

from imapproxy.cache.entry import (
    TRAILER_SIZE,
    MessageStream,
    SealedReader,
    check_file,
    open_blob,
    read_file,
    seal,
)

CONTEXT = b"user\0key"


@pytest.mark.parametrize(
    ("size", "chunk"),
    [(size, chunk) for size in (0, 1, 47, 48, 49, 1000) for chunk in (1, 7, 48, 4096, -1)]
    + [((4 << 20) + 3, chunk) for chunk in (4096, 1 << 20, 1 << 22, -1)],
)
def test_sealed_reader_equals_seal(size: int, chunk: int) -> None:
    data = os.urandom(size)
    reader = SealedReader(CONTEXT, data)
    parts = []
    while part := reader.read(chunk):
        parts.append(part)
        if chunk > 0:
            assert len(part) <= chunk
    assert b"".join(parts) == seal(CONTEXT, data)
    assert len(seal(CONTEXT, data)) == size + TRAILER_SIZE


def test_verification() -> None:
    data = os.urandom(5000)
    blob = seal(CONTEXT, data)
    assert open_blob(CONTEXT, blob) == data
    assert read_file(CONTEXT, io.BytesIO(blob)) == data
    assert check_file(CONTEXT, io.BytesIO(blob)) == len(data)
    assert open_blob(b"user\0other", blob) is None  # another key or user
    assert open_blob(CONTEXT, blob[:-1]) is None
    assert open_blob(CONTEXT, blob + b"x") is None
    assert open_blob(CONTEXT, b"") is None
    assert open_blob(CONTEXT, b"IPC1") is None
    for i in (0, 2500, 4999, 5000, 5004, 5010, len(blob) - 1):
        bad = bytearray(blob)
        bad[i] ^= 0x80
        assert open_blob(CONTEXT, bytes(bad)) is None
        assert read_file(CONTEXT, io.BytesIO(bytes(bad))) is None
        assert check_file(CONTEXT, io.BytesIO(bytes(bad))) is None


def test_message_stream_stays_in_bounds() -> None:
    blob = seal(CONTEXT, b"0123456789")
    stream = MessageStream(io.BytesIO(blob), 10)
    assert not stream.is_file
    assert stream.read(4) == b"0123"
    assert stream.tell() == 4
    assert stream.read() == b"456789"
    assert stream.read() == b""
    stream.seek(100)
    assert stream.tell() == 10
    stream.seek(8)
    assert list(stream.chunks(1)) == [b"8", b"9"]
    with stream:
        pass
    assert stream.closed
