"""Network.timer, on both networks: fires at its time, only ever moves earlier, disarms, and a
re-arm leaves no stale firing behind. Servers keep their Raft and gossip timers here."""

from __future__ import annotations

import trio

from tests.net.conftest import Env


async def test_timer_fires_once_at_its_time(env: Env) -> None:
    fired: list[float] = []
    timer = env.net.timer(lambda: fired.append(trio.current_time()))
    t0 = trio.current_time()
    timer.arm(t0 + 0.2)
    await trio.sleep(0.5)
    assert len(fired) == 1
    assert 0.2 <= fired[0] - t0 < 0.45
    assert timer.when == float("inf")  # one-shot: fired timers are unarmed


async def test_arm_only_moves_earlier(env: Env) -> None:
    fired: list[float] = []
    timer = env.net.timer(lambda: fired.append(trio.current_time()))
    t0 = trio.current_time()
    timer.arm(t0 + 0.3)
    timer.arm(t0 + 0.1)  # earlier: taken
    timer.arm(t0 + 0.5)  # later: ignored (owners re-arm when it fires)
    await trio.sleep(0.8)
    assert len(fired) == 1, "the superseded 0.3 s entry must not fire"
    assert 0.1 <= fired[0] - t0 < 0.3


async def test_disarm_cancels_and_rearm_works(env: Env) -> None:
    fired: list[str] = []
    first = env.net.timer(lambda: fired.append("first"))
    second = env.net.timer(lambda: fired.append("second"))
    t0 = trio.current_time()
    first.arm(t0 + 0.1)
    second.arm(t0 + 0.2)
    first.disarm()
    await trio.sleep(0.4)
    assert fired == ["second"]
    first.arm(trio.current_time())  # "now": fires at the next quiescent point / timer pass
    await trio.sleep(0.1)
    assert fired == ["second", "first"]


async def test_now_fires_after_runnable_tasks(env: Env) -> None:
    """Group commit relies on this: a timer armed for "now" fires after the tasks that are
    already runnable have had their turn, so proposals made together are flushed together."""
    order: list[str] = []
    timer = env.net.timer(lambda: order.append("timer"))

    async def proposer(name: str) -> None:
        order.append(name)
        timer.arm(trio.current_time())

    async with trio.open_nursery() as nursery:
        for name in ("a", "b", "c"):
            nursery.start_soon(proposer, name)
    await trio.sleep(0.05)
    assert order[-1] == "timer" and order.count("timer") == 1
    assert sorted(order[:3]) == ["a", "b", "c"]
