"""Connection caps: never exceeded, FIFO for the total cap, a per-user cap blocks only its user,
and a waiter that times out gets UpstreamUnavailable (NO [UNAVAILABLE])."""

from __future__ import annotations

import asyncio

import pytest

from imapproxy.errors import UpstreamUnavailable
from imapproxy.upstream.slots import ConnectionSlots


async def test_total_cap_is_fifo() -> None:
    slots = ConnectionSlots(total=1)
    await slots.take("a", 1)
    order: list[str] = []

    async def wait(user: str) -> None:
        await slots.take(user, 2)
        order.append(user)

    tasks = [asyncio.ensure_future(wait(u)) for u in ("b", "c", "d")]
    await asyncio.sleep(0.01)
    assert slots.waiting == 3 and slots.open_total == 1
    for expected in ("b", "c", "d"):
        holder = order[-1] if order else "a"
        slots.give_back(holder)
        await asyncio.sleep(0.01)
        assert order[-1] == expected
        assert slots.open_total == 1
    await asyncio.gather(*tasks)
    assert slots.peak_total == 1


async def test_per_user_cap_does_not_block_other_users() -> None:
    slots = ConnectionSlots(total=3, per_user=1)
    await slots.take("a", 1)
    blocked = asyncio.ensure_future(slots.take("a", 2))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(slots.take("b", 1), 0.5)  # not behind a's waiter
    assert not blocked.done()
    slots.give_back("a")
    await asyncio.wait_for(blocked, 1)
    assert slots.held_by("a") == 1 and slots.held_by("b") == 1


async def test_timeout_gives_unavailable_and_leaves_no_trace() -> None:
    slots = ConnectionSlots(total=1)
    await slots.take("a", 1)
    with pytest.raises(UpstreamUnavailable) as info:
        await slots.take("b", 0.05)
    assert info.value.code == "UNAVAILABLE"
    assert slots.waiting == 0
    slots.give_back("a")
    assert slots.open_total == 0
    assert slots.try_take("c")


async def test_cancelled_waiter_returns_a_slot_granted_meanwhile() -> None:
    slots = ConnectionSlots(total=1)
    await slots.take("a", 1)
    waiter = asyncio.ensure_future(slots.take("b", 5))
    await asyncio.sleep(0.01)
    slots.give_back("a")  # granted to b...
    waiter.cancel()  # ...which is abandoned before it runs
    try:
        await waiter
    except asyncio.CancelledError:
        assert slots.open_total == 0  # given back
    else:  # Python < 3.12's wait_for may swallow the cancellation: then the caller holds it
        assert slots.open_total == 1
    assert slots.waiting == 0


async def test_no_caps_means_no_waiting() -> None:
    slots = ConnectionSlots()
    for i in range(50):
        assert slots.try_take(f"u{i % 3}")
    assert slots.open_total == 50
