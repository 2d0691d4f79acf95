"""The pool servers call each other through (``consim.net.consul_pool``), on both networks: one
yamux session per destination, a stream per call; timeouts, late answers, cancelled calls and
replies larger than a yamux window."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import trio

from consim.net.network import RpcTimeout
from tests.net.conftest import Env


async def handler(method: str, args: Any, src: str) -> Any:
    if method == "slow":
        await trio.sleep(args)
        return "late"
    if method == "big":
        return b"x" * args
    if method == "digest":
        return hashlib.sha256(args.encode("utf-8", "surrogateescape")).hexdigest()
    return args


async def test_a_short_timeout_fires_before_an_earlier_long_one(env: Env, clock: Any) -> None:
    a = await env.serve(1, handler)
    src = env.src(2)
    done: list[str] = []

    async def call(name: str, timeout: float) -> None:
        with pytest.raises(RpcTimeout):
            await env.call(src, a, "slow", 30.0, timeout)
        done.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "long", 1.0)
        await trio.sleep(0.01)
        nursery.start_soon(call, "short", 0.2)
    assert done == ["short", "long"]
    assert env.net.stats[src]["rpc_timeouts"] == 2
    for _ in range(3):  # and again, each on time
        start = trio.current_time()
        with pytest.raises(RpcTimeout):
            await env.call(src, a, "slow", 30.0, 0.2)
        assert 0.2 - 1e-9 <= trio.current_time() - start < 1.0  # (virtual time: float sums)


async def test_a_late_answer_does_not_answer_the_next_call(env: Env, clock: Any) -> None:
    a = await env.serve(1, handler)
    src = env.src(2)
    with pytest.raises(RpcTimeout):
        await env.call(src, a, "slow", 0.3, 0.1)  # its stream is reset at the timeout
    assert await env.call(src, a, "echo", "mine", 2.0) == "mine"
    await trio.sleep(0.5)  # the slow handler answered into the reset stream meanwhile
    assert await env.call(src, a, "echo", "mine too", 2.0) == "mine too"
    assert env.net.stats[a]["port_accepted_4"] == 1  # all on the one pooled session


async def test_a_cancelled_call_leaves_nothing_behind(env: Env, clock: Any) -> None:
    a = await env.serve(1, handler)
    src = env.src(2)
    assert await env.call(src, a, "echo", 1, 2.0) == 1
    with trio.move_on_after(0.1):
        await env.call(src, a, "slow", 30.0, 10.0)
    pool = env.pools[src]
    session = pool._sessions[a]
    assert not session.calls or all(c.done.is_set() for c in session.calls.values())
    assert await env.call(src, a, "echo", 2, 2.0) == 2


async def test_replies_larger_than_a_window_with_small_calls_interleaved(
    env: Env, clock: Any
) -> None:
    a = await env.serve(1, handler)
    src = env.src(2)
    sizes = [1_000_000, 10, 600_000, 300_000]
    got: dict[int, int] = {}
    small: list[str] = []

    async def big(n: int) -> None:
        got[n] = len(await env.call(src, a, "big", n, 20.0))

    async def digests() -> None:
        for i in range(20):
            text = f"small {i}"
            assert await env.call(src, a, "digest", text, 20.0) == (
                hashlib.sha256(text.encode()).hexdigest()
            )
            small.append(text)

    async with trio.open_nursery() as nursery:
        for n in sizes:
            nursery.start_soon(big, n)
        nursery.start_soon(digests)
    assert got == {n: n for n in sizes} and len(small) == 20
    assert env.net.stats[a]["port_accepted_4"] == 1
