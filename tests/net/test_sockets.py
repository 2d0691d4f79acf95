"""SocketNetwork specifics: address mapping, pool reuse, and a live server fed garbage."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
import trio

from consim.net.framing import FrameReader, encode_frame
from consim.net.portmux import RPC_CONSIM
from consim.net.rpc import KIND_REPLY, KIND_REQUEST, hello
from consim.net.sockets import (
    SocketNetwork,
    loopback_range_available,
    resolve_listen_address,
)
from tests.net.conftest import wait_for


async def echo(method: str, args: Any, src: str) -> Any:
    if method == "slow":
        await trio.sleep(args)
    return args


def test_resolve_listen_address() -> None:
    assert resolve_listen_address("127.0.0.2:8300", loopback_range=True) == ("127.0.0.2", 8300)
    # Without 127/8: one host, ports offset by 10 per loopback index.
    assert resolve_listen_address("127.0.0.1:8300", loopback_range=False) == ("127.0.0.1", 8300)
    assert resolve_listen_address("127.0.0.2:8300", loopback_range=False) == ("127.0.0.1", 8310)
    assert resolve_listen_address("127.0.0.3:8302", loopback_range=False) == ("127.0.0.1", 8322)
    assert resolve_listen_address("127.0.0.3:0", loopback_range=False) == ("127.0.0.1", 0)
    assert resolve_listen_address("10.0.0.3:8300", loopback_range=False) == ("10.0.0.3", 8300)
    with pytest.raises(ValueError):
        resolve_listen_address("no-port")
    assert isinstance(loopback_range_available(), bool)


async def test_pool_reuses_one_connection() -> None:
    async with SocketNetwork(random.Random(1)) as net, trio.open_nursery() as nursery:
        a = await nursery.start(net.serve_rpc, "127.0.0.53:0", echo)
        src = "127.0.0.54:8300"
        for i in range(20):
            assert await net.call(src, a, "m", i, 2.0) == i
        results: list[Any] = []

        async def one(i: int) -> None:
            results.append(await net.call(src, a, "slow", 0.01 * (i % 3), 2.0))

        async with trio.open_nursery() as callers:
            for i in range(30):
                callers.start_soon(one, i)
            for i in range(10):
                net.notify(src, a, "m", i)
        assert len(results) == 30
        assert net.stats[src]["connections_dialed"] == 1
        assert net.stats[a]["connections_accepted"] == 1
        assert len(net.pool.connections()) == 1
        # Another source gets its own connection (one per (src, dst), like Consul's pool).
        await net.call("127.0.0.55:8300", a, "m", 0, 2.0)
        assert net.stats[a]["connections_accepted"] == 2
        nursery.cancel_scope.cancel()


def count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


async def raw_connect(address: str) -> trio.SocketStream:
    """A connection speaking consim's own frames (first byte RPC_CONSIM on the server port)."""
    host, port = resolve_listen_address(address)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(bytes([RPC_CONSIM]))
    return stream


async def closed_by_server(stream: trio.SocketStream, timeout: float = 3.0) -> bool:
    """True once the server closes the connection (EOF or reset)."""
    with trio.move_on_after(timeout):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


async def test_live_server_survives_garbage() -> None:
    rng = random.Random(1234)
    net = SocketNetwork(random.Random(1), read_timeout=0.3)
    async with net, trio.open_nursery() as nursery:
        a = await nursery.start(net.serve_rpc, "127.0.0.56:0", echo)
        stats = net.stats[a]
        src = "127.0.0.57:8300"
        assert await net.call(src, a, "m", "warm", 2.0) == "warm"
        baseline_open = stats["connections_open"]
        baseline_tasks = count_tasks()

        for _round in range(3):
            # 1. random bytes in place of a hello frame (0xc1 never decodes)
            garbage = b"\x00\x00\x00\x40" + b"\xc1" + rng.randbytes(63)
            s = await raw_connect(a)
            await s.send_all(garbage)
            assert await closed_by_server(s)
            # 2. random bytes after a valid hello
            s = await raw_connect(a)
            await s.send_all(encode_frame(hello("127.0.0.58:8300")) + garbage)
            assert await closed_by_server(s)
            # 3. an oversized length prefix
            s = await raw_connect(a)
            await s.send_all(encode_frame(hello("127.0.0.58:8300")) + struct.pack(">I", 2**31))
            assert await closed_by_server(s)
            # 4. a frame that stalls halfway: closed after the read timeout
            s = await raw_connect(a)
            await s.send_all(
                encode_frame(hello("127.0.0.58:8300")) + struct.pack(">I", 100) + b"\x93"
            )
            start = trio.current_time()
            assert await closed_by_server(s)
            assert 0.25 <= trio.current_time() - start < 2.0

        await wait_for(lambda: stats["connections_open"] == baseline_open)
        assert stats["connections_dropped_garbage"] == 9
        assert stats["connections_timed_out"] == 3

        # 5. valid msgpack of the wrong shape: dropped and counted, the connection stays usable.
        s = await raw_connect(a)
        wrong = [
            [1, 2],
            {"a": 1},
            "text",
            [9, 1, "m", None],  # unknown kind
            [0, 1, 5, None],  # non-string method
            [True, 1, "m", None],  # bool is not a kind
            [KIND_REPLY, 1, "", "a reply the server never asked for"],
        ]
        await s.send_all(encode_frame(hello("127.0.0.58:8300")))
        for w in wrong:
            await s.send_all(encode_frame(w))
        await s.send_all(encode_frame([KIND_REQUEST, 7, "m", "still here"]))
        reader = FrameReader(s)
        with trio.fail_after(3):
            assert await reader.receive() == [KIND_REPLY, 7, "", "still here"]
        assert stats["frames_dropped_malformed"] == len(wrong)
        await s.aclose()

        # The server answers real calls on its pooled connection, and nothing leaked.
        for i in range(5):
            assert await net.call(src, a, "m", i, 2.0) == i
        await wait_for(lambda: stats["connections_open"] == baseline_open)
        await wait_for(lambda: count_tasks() == baseline_tasks)
        nursery.cancel_scope.cancel()


async def test_datagrams_are_raw_udp_with_their_real_source() -> None:
    """What memberlist peers send and expect: the payload alone, the UDP source as sender."""
    if not loopback_range_available():
        pytest.skip("port-mapped loopback: datagrams carry a source envelope instead")
    got: list[tuple[str, bytes]] = []
    net = SocketNetwork(random.Random(1))
    async with net, trio.open_nursery() as nursery:
        d = await nursery.start(
            net.serve_datagrams, "127.0.0.56:0", lambda s, p: got.append((s, p))
        )
        host, port = resolve_listen_address(d)
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind(("127.0.0.58", 0))
            await sock.sendto(b"\xc1garbage", (host, port))
            await wait_for(lambda: len(got) == 1)
            assert got[0] == (f"127.0.0.58:{sock.getsockname()[1]}", b"\xc1garbage")
        e = await nursery.start(net.serve_datagrams, "127.0.0.57:0", lambda s, p: None)
        net.send_datagram(e, d, b"real")
        await wait_for(lambda: len(got) == 2)
        assert got[1] == (e, b"real")  # sent from the sender's own bound socket
        nursery.cancel_scope.cancel()


async def test_bind_failure_names_the_address() -> None:
    async with SocketNetwork() as net, trio.open_nursery() as nursery:
        a = await nursery.start(net.serve_rpc, "127.0.0.56:0", echo)
        other = SocketNetwork()
        async with other:
            with pytest.raises(OSError, match=f"cannot listen for RPC on {a}"):
                await nursery.start(other.serve_rpc, a, echo)
        nursery.cancel_scope.cancel()
