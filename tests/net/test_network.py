"""Behaviour both networks share (each test runs against SimNetwork and SocketNetwork). Calls are
Consul RPCs over the server port (``Env.call``: the pool consim's servers use, yamux on byte 4)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from consim.net.faults import host_of
from consim.net.network import INTERNAL_ERROR, ConnectionLost, RpcError, RpcTimeout, Unreachable
from tests.net.conftest import Env, serve_port, wait_for


async def echo(method: str, args: Any, src: str) -> Any:
    if method == "Status.Leader":
        return "127.0.0.1:8300"
    if method == "fail":
        raise RpcError("No cluster leader")
    if method == "crash":
        raise KeyError("bug")
    if method == "slow":
        await trio.sleep(args)
        return "late"
    if method == "unserialisable":
        return {1, 2}
    return {"method": method, "args": args, "src": src}


async def test_call_reply(env: Env, clock: Any) -> None:
    a = await env.serve(1, echo)
    src = env.src(2)
    assert await env.call(src, a, "Status.Leader", {}, 1.0) == "127.0.0.1:8300"
    reply = await env.call(src, a, "KVS.Get", {"Key": "k", "MinQueryIndex": 7}, 1.0)
    assert reply["method"] == "KVS.Get" and reply["args"] == {"Key": "k", "MinQueryIndex": 7}
    assert host_of(reply["src"]) == host_of(src)  # the peer: live, the dialer's socket
    assert env.net.stats[src]["calls_ok"] == 2
    assert env.net.stats[a]["requests_in"] == 2
    assert env.net.stats[a]["port_accepted_4"] == 1  # one pooled yamux session


async def test_errors_pass_through_and_server_keeps_serving(env: Env, clock: Any) -> None:
    a = await env.serve(1, echo)
    src = env.src(2)
    with pytest.raises(RpcError) as exc:
        await env.call(src, a, "fail", None, 1.0)
    assert exc.value.message == "No cluster leader" and str(exc.value) == "No cluster leader"
    with pytest.raises(RpcError) as exc:
        await env.call(src, a, "crash", None, 1.0)
    assert exc.value.message == INTERNAL_ERROR == "rpc error: internal error"
    with pytest.raises(RpcError, match="internal error"):
        await env.call(src, a, "unserialisable", None, 1.0)
    assert env.net.stats[a]["handler_errors"] == 2
    assert (await env.call(src, a, "ok", 1, 1.0))["args"] == 1
    with pytest.raises(TypeError):
        await env.call(src, a, "ok", object(), 1.0)  # caught at the sender, like the wire


async def test_timeout(env: Env, clock: Any) -> None:
    a = await env.serve(1, echo)
    start = trio.current_time()
    with pytest.raises(RpcTimeout):
        await env.call(env.src(2), a, "slow", 5.0, 0.3)
    assert 0.3 <= trio.current_time() - start < 1.0
    assert env.net.stats[env.src(2)]["rpc_timeouts"] == 1


async def test_datagrams(env: Env, clock: Any) -> None:
    got: list[tuple[str, bytes]] = []
    d = await env.serve_datagrams(1, lambda src, payload: got.append((src, payload)))
    # The sender serves datagrams too (as every gossip pool does), so live its packets leave
    # from its own bound socket and arrive with its address as their UDP source.
    src = await env.serve_datagrams(2, lambda src, payload: None)
    env.net.send_datagram(src, d, b"ping")
    env.net.send_datagram(src, d, b"\x00" * 1000)
    await wait_for(lambda: len(got) == 2)
    assert got[0] == (src, b"ping") and got[1][1] == b"\x00" * 1000
    with pytest.raises(ValueError):
        env.net.send_datagram(src, d, b"x" * 70_000)


async def test_stream_exchange_carries_the_bytes_both_ways(env: Env, clock: Any) -> None:
    """One request, one answer, the exact bytes (live: TCP on the datagram port number)."""
    seen: list[tuple[str, bytes]] = []

    def handler(src: str, data: bytes) -> bytes:
        seen.append((src, data))
        return b"R" + data[1:] * 2

    def frame_length(buf: bytes) -> int | None:
        return buf[0] + 1 if len(buf) > buf[0] else None  # [n][n bytes]

    d = await env.nursery.start(env.net.serve_streams, env.addr(1, 8301), handler, frame_length)
    replies: list[bytes] = []
    request = bytes([5]) + b"hello"
    env.net.send_stream(
        env.src(2), d, request, lambda b: b[0] + 1 if len(b) > 10 else None, replies.append
    )
    await wait_for(lambda: replies)
    assert seen[0][1] == request and host_of(seen[0][0]) == host_of(env.src(2))
    assert replies == [b"R" + b"hellohello"]
    # Nobody listening: no answer, nothing raised; the refusal is reported in Go's words (what
    # memberlist's Join returns for it).
    errors: list[str] = []
    dead = env.addr(3, 8301)
    env.net.send_stream(env.src(2), dead, request, frame_length, replies.append, errors.append)
    await wait_for(lambda: errors)
    assert errors == [f"dial tcp {dead}: connect: connection refused"]
    assert len(replies) == 1


async def test_dead_address_is_unreachable(env: Env, clock: Any) -> None:
    src = env.src(2)
    dead = "127.0.0.9:8300" if env.kind == "sim" else "127.0.0.59:1"
    with pytest.raises(Unreachable) as refused:
        await env.call(src, dead, "Status.Leader", {}, 2.0)
    # Never sent, so safe to retry (even a write): not ConnectionLost.
    assert refused.type is Unreachable


async def test_killed_server_mid_call_then_restart(env: Env, clock: Any) -> None:
    src = env.src(2)
    # The server runs in its own scope: cancelling it must not cancel the caller too.
    server_scope = trio.CancelScope()

    async def server(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        with server_scope:
            async with trio.open_nursery() as own:
                task_status.started(await serve_port(env.net, own, env.addr(1), echo))

    a = await env.nursery.start(server)
    assert await env.call(src, a, "ok", 1, 1.0)

    async def kill() -> None:
        await trio.sleep(0.1)
        server_scope.cancel()  # the server process dies

    env.nursery.start_soon(kill)
    start = trio.current_time()
    # The request was sent and the server died handling it: it may have been handled.
    with pytest.raises(ConnectionLost):
        await env.call(src, a, "slow", 30.0, 10.0)
    assert trio.current_time() - start < 1.0  # reset, not a timeout
    await wait_for(lambda: not env.net.serving(a))
    # Refused before anything is sent (live: the pooled connection is known dead, the redial
    # is refused): plain Unreachable, safe to retry.
    with pytest.raises(Unreachable) as refused:
        await env.call(src, a, "ok", 1, 1.0)
    assert refused.type is Unreachable
    # Restarted on the same address, calls work again (the pool redials).
    await env.nursery.start(env.net.serve_port, a)
    assert (await env.call(src, a, "ok", 2, 1.0))["args"] == 2


async def test_close_address(env: Env, clock: Any) -> None:
    a = await env.serve(1, echo)
    assert env.net.serving(a)
    env.net.close_address(a)
    await wait_for(lambda: not env.net.serving(a))
    with pytest.raises(Unreachable):
        await env.call(env.src(2), a, "ok", 1, 1.0)


async def test_partition_and_heal(env: Env, clock: Any) -> None:
    a = await env.serve(1, echo)
    src = env.src(2)
    env.net.faults.partition([[a], [src]])
    with pytest.raises(RpcTimeout):
        await env.call(src, a, "ok", 1, 0.3)
    env.net.faults.heal()
    assert (await env.call(src, a, "ok", 1, 1.0))["args"] == 1
    env.net.faults.isolate(a)
    with pytest.raises(RpcTimeout):
        await env.call(src, a, "ok", 1, 0.3)
    env.net.faults.heal()
    assert (await env.call(src, a, "ok", 1, 1.0))["args"] == 1


async def test_block_is_one_way(env: Env, clock: Any) -> None:
    got: list[tuple[str, bytes]] = []
    a = await env.serve_datagrams(1, lambda src, payload: got.append((src, payload)))
    b = await env.serve_datagrams(2, lambda src, payload: got.append((src, payload)))
    env.net.faults.block(a, b)
    env.net.send_datagram(a, b, b"a->b")
    env.net.send_datagram(b, a, b"b->a")
    await wait_for(lambda: len(got) >= 1)
    await trio.sleep(0.2)
    assert got == [(b, b"b->a")]
    # A call needs both directions: with server->caller blocked it is never answered (the
    # connection's bytes cannot come back: it breaks, or the call times out).
    server = await env.serve(1, echo)
    caller = env.src(2)
    env.net.faults.block(server, caller)
    with pytest.raises((RpcTimeout, Unreachable)):
        await env.call(caller, server, "m", None, 0.3)
    env.net.faults.heal()
    env.net.send_datagram(a, b, b"healed")
    await wait_for(lambda: (a, b"healed") in got)
    assert (await env.call(caller, server, "m", 5, 2.0))["args"] == 5


async def test_loss(env: Env, clock: Any) -> None:
    got: list[bytes] = []
    d = await env.serve_datagrams(1, lambda src, payload: got.append(payload))
    src = env.src(2).replace(":8300", ":8301")
    env.net.faults.set_loss(src, d, 1.0)
    for _ in range(20):
        env.net.send_datagram(src, d, b"lost")
    env.net.faults.set_loss(src, d, 0.5)
    for i in range(200):
        env.net.send_datagram(src, d, str(i).encode())
    env.net.faults.set_loss(src, d, 0.0)
    env.net.send_datagram(src, d, b"last")
    await wait_for(lambda: got[-1:] == [b"last"])
    assert b"lost" not in got
    assert 50 < len(got) - 1 < 150
    assert env.net.stats[src]["dropped_by_fault"] == 20 + 200 - (len(got) - 1)


async def test_delay(env: Env, clock: Any) -> None:
    a = await env.serve(1, echo)
    src = env.src(2)
    await env.call(src, a, "ok", 1, 1.0)  # warm the pool
    env.net.faults.set_delay(src, a, 0.25)
    start = trio.current_time()
    await env.call(src, a, "ok", 1, 2.0)
    assert 0.25 <= trio.current_time() - start < 1.0
    env.net.faults.heal(all=True)
    await trio.sleep(0.3)  # the last call's stream close, still on the delayed link (FIFO)
    start = trio.current_time()
    await env.call(src, a, "ok", 1, 2.0)
    assert trio.current_time() - start < 0.2


async def test_address_in_use(env: Env, clock: Any) -> None:
    a = await env.serve(1, echo)
    with pytest.raises(OSError, match=a.split(":")[0]):
        await env.nursery.start(env.net.serve_port, a)
