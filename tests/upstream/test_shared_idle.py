"""The shared IDLE registry: one leader per user and mailbox, news wakes the followers, the
oldest follower takes over when the leader leaves."""

from __future__ import annotations

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
