"""The optimised RPC path (commits 08c4619, 822da4a, e5b6876), checked end to end.

Each behaviour runs on the live SocketNetwork and, where it applies, on SimNetwork (virtual time):

- the server's parked per-connection worker pool: a slow handler never holds up a fast one on the
  same pooled connection, and more concurrent requests than parked workers (16) all complete;
- replies that cannot be sent (too large for a frame, unserialisable) become internal errors,
  counted as ``handler_errors``, and the connection keeps serving;
- call timeouts kept by the connection's deadline heap fire on time, in deadline order (a short
  call after a long one), and a late reply is counted and never answers the next call;
- a call cancelled from outside leaves no waiter behind;
- a dead pooled connection is redialed; a dead address fails fast with ``Unreachable``;
- frames written partly (a multi-MB frame the socket cannot take at once) go out whole, never
  interleaved with the small frames queued behind them, and a call that gives up while queued
  behind such a frame does not take the connection down with it.

Live addresses are ephemeral ports on 127.0.0.7x (or 127.0.0.1 where 127/8 is unavailable).
"""

from __future__ import annotations

import functools
import hashlib
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from consim.net.framing import MAX_FRAME
from consim.net.network import INTERNAL_ERROR, Network, RpcError, RpcTimeout, Unreachable
from consim.net.rpc import RpcConnection
from consim.net.sim import SimNetwork
from consim.net.sockets import SocketNetwork
from tests.net.conftest import open_env, wait_for

TEST_LIMIT = 8.0  # seconds any one test may take (trio.fail_after)
TOLERANCE = 0.15  # how late a live timeout may fire
EPS = 1e-9  # float rounding of virtual-clock differences


async def handler(method: str, args: Any, src: str) -> Any:
    if method == "echo":
        return args
    if method == "sleep":  # args: [seconds, tag] -> tag
        await trio.sleep(args[0])
        return args[1]
    if method == "big":  # a reply of `args` bytes
        return b"x" * args
    if method == "unserialisable":
        return {1, 2}
    if method == "stall":  # as a notify: keeps the connection's reader busy (nothing read)
        await trio.sleep(args)
        return None
    raise RpcError(f"unknown method {method}")


@dataclass
class Env:
    kind: str
    net: Network
    nursery: trio.Nursery

    def addr(self, k: int) -> str:
        return f"127.0.0.{k}:8300" if self.kind == "sim" else f"127.0.0.{70 + k}:0"

    def src(self, k: int) -> str:
        return f"127.0.0.{k if self.kind == 'sim' else 70 + k}:8300"

    async def serve(self, k: int) -> str:
        return await self.nursery.start(self.net.serve_rpc, self.addr(k), handler)

    def pending(self, src: str, dst: str) -> int:
        """Calls the client still tracks as awaiting a reply from dst."""
        if isinstance(self.net, SimNetwork):
            return sum(1 for (s, d, _) in self.net._pending if (s, d) == (src, dst))
        conn = self.net.pool.live(src, dst)
        return 0 if conn is None else len(conn._pending)


@pytest.fixture
async def env(kind: str, clock: trio.abc.Clock | None) -> AsyncIterator[Env]:
    async with open_env(kind, Env, seed=7, read_timeout=2.0) as opened:
        yield opened


@pytest.fixture
async def live() -> AsyncIterator[Env]:
    """SocketNetwork only (behaviours of real connections)."""
    async with open_env("sockets", Env, seed=7, read_timeout=2.0) as opened:
        yield opened


def bounded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Fail the test (instead of hanging) if it runs longer than TEST_LIMIT seconds."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> None:
        with trio.fail_after(TEST_LIMIT):
            await test(*args, **kwargs)

    return run


def live_conn(env: Env, src: str, dst: str) -> RpcConnection:
    assert isinstance(env.net, SocketNetwork)
    conn = env.net.pool.live(src, dst)
    assert conn is not None
    return conn


def one_connection(env: Env, src: str, dst: str) -> None:
    """Everything so far went over a single connection, never redialed or dropped."""
    if env.kind == "sockets":
        assert env.net.stats[src]["connections_dialed"] == 1
        assert env.net.stats[dst]["connections_accepted"] == 1
        assert env.net.stats[src]["unreachable"] == 0


# -- 1. the server's worker pool --------------------------------------------------------------


@bounded
async def test_slow_handler_does_not_hold_up_a_fast_one(env: Env, clock: Any) -> None:
    a = await env.serve(1)
    src = env.src(2)
    assert await env.net.call(src, a, "echo", 0, 5.0) == 0  # one pooled connection from here on
    finished: list[tuple[str, float]] = []
    start = trio.current_time()

    async def call(method: str, args: Any, tag: str) -> None:
        await env.net.call(src, a, method, args, 5.0)
        finished.append((tag, trio.current_time() - start))

    async with trio.open_nursery() as callers:
        callers.start_soon(call, "sleep", [0.5, "slow"], "slow")
        await trio.sleep(0.05)  # the slow request is in its handler first
        callers.start_soon(call, "echo", "fast", "fast")
    assert [tag for tag, _ in finished] == ["fast", "slow"]
    assert finished[0][1] < 0.3  # not queued behind the slow handler
    one_connection(env, src, a)


@bounded
async def test_more_concurrent_requests_than_parked_workers(env: Env, clock: Any) -> None:
    a = await env.serve(1)
    src = env.src(2)
    assert await env.net.call(src, a, "echo", 0, 5.0) == 0
    for round_ in range(3):  # grow past 16 workers, park 16, reuse them, overflow again
        n = 40
        got: dict[int, Any] = {}
        start = trio.current_time()

        async def call(got: dict[int, Any], round_: int, i: int) -> None:
            got[i] = await env.net.call(src, a, "sleep", [0.2, [round_, i]], 5.0)

        async with trio.open_nursery() as callers:
            for i in range(n):
                callers.start_soon(call, got, round_, i)
        assert got == {i: [round_, i] for i in range(n)}
        # All ran at once: not 40 x 0.2 s, nor batches of 16 (3 x 0.2 s); the margin is for a
        # loaded machine, live.
        assert trio.current_time() - start < 0.55
        # Interleave plain sequential calls (served by a parked worker each time).
        for i in range(20):
            assert await env.net.call(src, a, "echo", i, 5.0) == i
    assert env.net.stats[a]["requests_in"] == 1 + 3 * (40 + 20)
    assert env.net.stats[a]["handler_errors"] == 0
    one_connection(env, src, a)


# -- 2. replies that cannot be sent -------------------------------------------------------------


@bounded
async def test_unsendable_replies_are_internal_errors(env: Env, clock: Any) -> None:
    a = await env.serve(1)
    src = env.src(2)
    assert await env.net.call(src, a, "echo", "warm", 5.0) == "warm"
    bad: list[tuple[str, Any]] = [("unserialisable", None)]
    if env.kind == "sockets":
        bad.append(("big", MAX_FRAME + 1))  # the reply frame would exceed the frame limit
    for round_ in range(2):
        for method, args in bad:
            with pytest.raises(RpcError) as exc:
                await env.net.call(src, a, method, args, 5.0)
            assert exc.value.message == INTERNAL_ERROR
            assert await env.net.call(src, a, "echo", [round_, method], 5.0) == [round_, method]
    assert env.net.stats[a]["handler_errors"] == 2 * len(bad)
    assert env.net.stats[src]["rpc_errors"] == 2 * len(bad)
    # The connection kept serving: replies still flow, concurrently too.
    results = []

    async def call(i: int) -> None:
        results.append(await env.net.call(src, a, "sleep", [0.05, i], 5.0))

    async def bad_call() -> None:
        with pytest.raises(RpcError, match="internal error"):
            await env.net.call(src, a, "unserialisable", None, 5.0)

    async with trio.open_nursery() as callers:
        for i in range(20):
            callers.start_soon(call, i)
        callers.start_soon(bad_call)
    assert sorted(results) == list(range(20))
    assert env.net.stats[a]["handler_errors"] == 2 * len(bad) + 1
    one_connection(env, src, a)


@bounded
async def test_unsendable_replies_keep_the_listener_for_other_callers(live: Env) -> None:
    a = await live.serve(1)
    for k in (2, 3):
        with pytest.raises(RpcError, match="internal error"):
            await live.net.call(live.src(k), a, "big", MAX_FRAME, 5.0)
    assert await live.net.call(live.src(2), a, "echo", 2, 5.0) == 2
    assert await live.net.call(live.src(3), a, "echo", 3, 5.0) == 3
    assert live.net.stats[a]["handler_errors"] == 2
    assert live.net.stats[a]["connections_open"] == 2


# -- 3. timeouts ---------------------------------------------------------------------------------


@bounded
async def test_short_timeout_after_long_timeout_fires_first(env: Env, clock: Any) -> None:
    a = await env.serve(1)
    src = env.src(2)
    # A finished call leaves its far deadline behind in the connection's heap.
    assert await env.net.call(src, a, "echo", 0, 60.0) == 0
    outcome: dict[str, float] = {}
    start = trio.current_time()

    async def timed_out(name: str, timeout: float) -> None:
        with pytest.raises(RpcTimeout):
            await env.net.call(src, a, "sleep", [30.0, name], timeout)
        outcome[name] = trio.current_time() - start

    async with trio.open_nursery() as callers:
        callers.start_soon(timed_out, "long", 0.8)
        await trio.sleep(0.02)
        callers.start_soon(timed_out, "short", 0.1)
        await trio.sleep(0.02)
        callers.start_soon(timed_out, "middle", 0.4)
    assert list(outcome) == ["short", "middle", "long"]
    for name, due in (("short", 0.12), ("middle", 0.44), ("long", 0.8)):
        assert due - EPS <= outcome[name] < due + TOLERANCE, (name, outcome)
    assert env.net.stats[src]["rpc_timeouts"] == 3
    assert env.pending(src, a) == 0
    # Timeouts do not hurt the connection.
    assert await env.net.call(src, a, "echo", "after", 1.0) == "after"
    one_connection(env, src, a)


@bounded
async def test_timeouts_fire_on_time_repeatedly(env: Env, clock: Any) -> None:
    a = await env.serve(1)
    src = env.src(2)
    assert await env.net.call(src, a, "echo", 0, 5.0) == 0
    for timeout in (0.05, 0.15, 0.05):
        start = trio.current_time()
        with pytest.raises(RpcTimeout):
            await env.net.call(src, a, "sleep", [10.0, None], timeout)
        assert timeout - EPS <= trio.current_time() - start < timeout + TOLERANCE
    one_connection(env, src, a)


@bounded
async def test_late_reply_is_counted_and_does_not_answer_the_next_call(
    env: Env, clock: Any
) -> None:
    a = await env.serve(1)
    src = env.src(2)
    assert await env.net.call(src, a, "echo", 0, 5.0) == 0
    with pytest.raises(RpcTimeout):
        await env.net.call(src, a, "sleep", [0.2, "late"], 0.1)
    # The next call is in flight when the late reply arrives; it gets its own reply.
    start = trio.current_time()
    assert await env.net.call(src, a, "sleep", [0.3, "mine"], 2.0) == "mine"
    assert trio.current_time() - start >= 0.3
    assert env.net.stats[src]["late_replies"] == 1
    assert env.net.stats[src]["rpc_timeouts"] == 1
    assert env.pending(src, a) == 0
    assert await env.net.call(src, a, "echo", "next", 1.0) == "next"
    one_connection(env, src, a)


# -- 4. cancellation from outside -----------------------------------------------------------------


@bounded
async def test_cancelled_call_leaves_no_waiter(env: Env, clock: Any) -> None:
    a = await env.serve(1)
    src = env.src(2)
    assert await env.net.call(src, a, "echo", 0, 5.0) == 0
    # By a deadline of the caller's own...
    with trio.move_on_after(0.1) as scope:
        await env.net.call(src, a, "sleep", [0.3, "abandoned"], 30.0)
    assert scope.cancelled_caught
    assert env.pending(src, a) == 0
    # ...and by another task cancelling the caller's scope, several calls at once.
    async with trio.open_nursery() as callers:
        for i in range(5):
            callers.start_soon(env.net.call, src, a, "sleep", [0.3, i], 30.0)
        await trio.sleep(0.05)
        assert env.pending(src, a) == 5
        callers.cancel_scope.cancel()
    assert env.pending(src, a) == 0
    # The connection is fine and the abandoned calls' replies are dropped as late.
    assert await env.net.call(src, a, "echo", "next", 1.0) == "next"
    await wait_for(lambda: env.net.stats[src]["late_replies"] == 6, 2.0)
    assert await env.net.call(src, a, "sleep", [0.01, "again"], 1.0) == "again"
    assert env.pending(src, a) == 0
    assert env.net.stats[src]["rpc_timeouts"] == 0
    one_connection(env, src, a)


# -- 5. dead connections and dead addresses -----------------------------------------------------


@bounded
async def test_restarted_server_is_redialed(env: Env, clock: Any) -> None:
    src = env.src(2)
    async with trio.open_nursery() as first:
        a = await first.start(env.net.serve_rpc, env.addr(1), handler)
        assert await env.net.call(src, a, "echo", 1, 5.0) == 1
        first.cancel_scope.cancel()  # the server dies between two calls
    async with trio.open_nursery() as second:
        assert await second.start(env.net.serve_rpc, a, handler) == a  # same address
        start = trio.current_time()
        assert await env.net.call(src, a, "echo", 2, 5.0) == 2
        assert trio.current_time() - start < 0.5
        assert env.net.stats[src]["unreachable"] == 0
        if env.kind == "sockets":
            assert env.net.stats[src]["connections_dialed"] == 2
        second.cancel_scope.cancel()
    # Nobody serves it now: a call fails fast instead of waiting out its timeout.
    start = trio.current_time()
    with pytest.raises(Unreachable):
        await env.net.call(src, a, "echo", 3, 5.0)
    assert trio.current_time() - start < 0.5


@bounded
async def test_call_to_unserved_address_is_unreachable_quickly(env: Env, clock: Any) -> None:
    src = env.src(2)
    dead = "127.0.0.9:8300" if env.kind == "sim" else "127.0.0.79:1"
    for _ in range(3):
        start = trio.current_time()
        with pytest.raises(Unreachable):
            await env.net.call(src, dead, "echo", 0, 5.0)
        assert trio.current_time() - start < 0.5
    assert env.net.stats[src]["unreachable"] == 3
    assert env.net.stats[src]["rpc_timeouts"] == 0


@bounded
async def test_pooled_connection_dead_before_its_reader_noticed_is_redialed(live: Env) -> None:
    """The request cannot be written (the pooled connection broke while idle, and its reader
    has not seen it yet): the call redials within its timeout instead of failing."""
    a = await live.serve(1)
    src = live.src(2)
    assert await live.net.call(src, a, "echo", 1, 5.0) == 1
    old = live_conn(live, src, a)
    old._stream.socket.shutdown(socket.SHUT_WR)  # our next write fails with EPIPE
    # No checkpoint in between: the call takes the pooled fast path on the broken connection.
    assert await live.net.call(src, a, "echo", 2, 5.0) == 2
    assert old.closed
    assert live_conn(live, src, a) is not old
    assert live.net.stats[src]["connections_dialed"] == 2
    assert live.net.stats[src]["unreachable"] == 0
    assert live.net.stats[src]["calls_ok"] == 2


# -- 6. partial writes ----------------------------------------------------------------------------


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@bounded
async def test_large_frames_round_trip_with_small_calls_interleaved(live: Env) -> None:
    a = await live.serve(1)
    src = live.src(2)
    assert await live.net.call(src, a, "echo", 0, 5.0) == 0
    rng = random.Random(3)
    blobs = [rng.randbytes(5 * 1024 * 1024 + i) for i in range(3)]
    big: dict[int, str] = {}
    small: dict[int, Any] = {}

    async def big_call(i: int) -> None:
        big[i] = digest(await live.net.call(src, a, "echo", blobs[i], 5.0))

    async def small_call(i: int) -> None:
        small[i] = await live.net.call(src, a, "echo", {"i": i, "pad": "y" * (i * 37)}, 5.0)

    async with trio.open_nursery() as callers:
        for i in range(60):
            if i % 20 == 0:
                callers.start_soon(big_call, i // 20)
            callers.start_soon(small_call, i)
            if i % 7 == 0:
                await trio.sleep(0)
    assert big == {i: digest(blob) for i, blob in enumerate(blobs)}
    assert small == {i: {"i": i, "pad": "y" * (i * 37)} for i in range(60)}
    assert live.net.stats[a]["frames_dropped_malformed"] == 0
    assert live.net.stats[a]["connections_dropped_garbage"] == 0
    one_connection(live, src, a)


@bounded
async def test_calls_queued_behind_a_partial_write(live: Env) -> None:
    """A frame too large for the socket buffers is written in part, the rest under the writer's
    lock; calls behind it wait for the lock. Those that complete get their own replies; one that
    times out or is cancelled while queued (nothing of it written) leaves the connection, and the
    large call in progress, alone."""
    a = await live.serve(1)
    src = live.src(2)
    assert await live.net.call(src, a, "echo", 0, 5.0) == 0
    conn = live_conn(live, src, a)
    # Keep the server's reader busy so the large frame cannot drain.
    live.net.notify(src, a, "stall", 0.5)
    await wait_for(lambda: live.net.stats[a]["notifies_in"] == 1)
    blob = random.Random(5).randbytes(7 * 1024 * 1024)
    results: dict[str, Any] = {}

    async def call(name: str, args: Any, timeout: float) -> None:
        try:
            results[name] = await live.net.call(src, a, "echo", args, timeout)
        except (RpcTimeout, Unreachable) as exc:
            results[name] = type(exc).__name__

    async with trio.open_nursery() as callers:
        callers.start_soon(call, "big", blob, 5.0)
        await trio.sleep(0.05)
        assert conn._writer._lock.locked(), "the large frame should still be going out"
        for i in range(5):
            callers.start_soon(call, f"small{i}", i, 5.0)
        callers.start_soon(call, "impatient", "never sent", 0.1)
        async with trio.open_nursery() as doomed:
            doomed.start_soon(call, "cancelled", "never sent", 5.0)
            await trio.sleep(0.15)
            doomed.cancel_scope.cancel()
    outcomes = {k: v if isinstance(v, str | int) else digest(v) for k, v in results.items()}
    assert outcomes == {"big": digest(blob), "impatient": "RpcTimeout"} | {
        f"small{i}": i for i in range(5)
    }
    assert conn is live_conn(live, src, a) and not conn.closed
    assert len(conn._pending) == 0
    assert live.net.stats[a]["frames_dropped_malformed"] == 0
    assert live.net.stats[src]["late_replies"] == 0  # the queued-out calls never left
    one_connection(live, src, a)
