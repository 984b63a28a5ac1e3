"""The upstream reader stops reading the socket while too many response bytes wait in its
queue (a client that asked for a huge relayed answer and stopped reading), and reads again
once they are taken."""

from __future__ import annotations

from imapproxy.upstream.connection import QUEUE_HIGH, QUEUE_LOW, _ResponseReader


class FakeTransport:
    """Records pause/resume: the one thing this test needs of a transport."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


async def test_reading_pauses_above_the_high_mark_and_resumes_below_the_low() -> None:
    reader = _ResponseReader(max_literal_size=64 * 1024 * 1024)
    transport = FakeTransport()
    reader.connection_made(transport)  # type: ignore[arg-type]
    line = b"* 1 FETCH (FLAGS (\\Seen) BODY[] {%d}\r\n%s)\r\n"
    body = b"x" * (1024 * 1024)
    count = QUEUE_HIGH // len(body) + 2
    for _ in range(count):
        reader.data_received(line % (len(body), body))
    assert transport.calls == ["pause"]
    assert reader.queued_bytes > QUEUE_HIGH
    taken = 0
    while reader.queued_bytes >= QUEUE_LOW:
        assert transport.calls == ["pause"]  # not before the queue is under the low mark
        reader.take()
        taken += 1
    assert transport.calls == ["pause", "resume"]
    rest = [await reader.next_item(1.0) for _ in range(count - taken)]
    assert all(item.raw.endswith(b")\r\n") for item in rest)  # type: ignore[union-attr]
    assert reader.queued_bytes == 0 and not reader.paused
    assert reader.queue.empty()
