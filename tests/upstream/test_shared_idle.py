"""The shared IDLE registry: one leader per user and mailbox, news wakes the followers, the
oldest follower takes over when the leader leaves."""

from __future__ import annotations

import asyncio

from imapproxy.upstream.shared_idle import SharedIdle


async def test_one_leader_per_mailbox_and_user() -> None:
    idle = SharedIdle()
    a, b, c = (idle.join(("u", b"INBOX")) for _ in range(3))
    other_box = idle.join(("u", b"Sent"))
    other_user = idle.join(("v", b"INBOX"))
    assert [m.lead.is_set() for m in (a, b, c, other_box, other_user)] == \
        [True, False, False, True, True]
    assert idle.leaders == 3 and idle.idling == 5


async def test_news_wakes_followers_of_the_same_group_only() -> None:
    idle = SharedIdle()
    a, b = idle.join(("u", b"INBOX")), idle.join(("u", b"INBOX"))
    elsewhere = idle.join(("u", b"Sent"))
    idle.announce(a)
    assert b.news.is_set() and not a.news.is_set() and not elsewhere.news.is_set()


async def test_oldest_follower_takes_over() -> None:
    idle = SharedIdle()
    a, b, c = (idle.join(("u", b"INBOX")) for _ in range(3))
    idle.leave(b)  # a follower leaving changes nothing
    assert not c.lead.is_set()
    idle.leave(a)
    assert c.lead.is_set()
    idle.leave(c)
    assert idle.leaders == 0 and idle.idling == 0
    idle.leave(c)  # twice is harmless
    d = idle.join(("u", b"INBOX"))
    assert d.lead.is_set()


async def test_one_reading_serves_every_follower_woken_by_the_same_news() -> None:
    idle = SharedIdle()
    leader, b, c = (idle.join(("u", b"INBOX")) for _ in range(3))
    calls: list[int] = []
    gate = asyncio.Event()

    async def read() -> int:
        calls.append(len(calls))
        await gate.wait()
        return len(calls)

    idle.announce(leader)
    waiting = [asyncio.ensure_future(idle.reading(m, read)) for m in (b, c)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [1, 1] and calls == [0]
    assert await idle.reading(b, read) == 1  # no news since: the same reading
    idle.announce(leader)
    assert await idle.reading(c, read) == 2
    idle.renew_readings(b)  # b read on its own meanwhile: older readings do not do for it
    assert await idle.reading(b, read) == 3


async def test_a_reading_started_before_the_news_does_not_cover_it() -> None:
    idle = SharedIdle()
    leader, b = idle.join(("u", b"INBOX")), idle.join(("u", b"INBOX"))
    gate = asyncio.Event()
    calls: list[int] = []

    async def read() -> int:
        calls.append(1)
        await gate.wait()
        return len(calls)

    early = asyncio.ensure_future(idle.reading(b, read))
    for _ in range(10):  # until the reading has begun
        if calls:
            break
        await asyncio.sleep(0)
    assert calls
    idle.announce(leader)  # news while that reading runs
    late = asyncio.ensure_future(idle.reading(b, read))
    await asyncio.sleep(0)
    gate.set()
    assert await early == 1 and await late == 2
