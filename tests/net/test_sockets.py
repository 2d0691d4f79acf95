"""SocketNetwork specifics: address mapping, pool reuse, and a live port fed what nobody serves."""

from __future__ import annotations

import os
import random
import struct
from typing import Any

import msgpack
import pytest
import trio

from consim.net.consul_pool import ConsulPool
from consim.net.sockets import (
    SocketNetwork,
    loopback_range_available,
    resolve_listen_address,
)
from tests.net.conftest import serve_port, wait_for


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
        a = await serve_port(net, nursery, "127.0.0.53:0", echo)
        src = "127.0.0.54:8300"
        pool = ConsulPool(net, src)
        for i in range(20):
            assert await pool.call(a, "m", i, 2.0) == i
        results: list[Any] = []

        async def one(i: int) -> None:
            results.append(await pool.call(a, "slow", 0.01 * (i % 3), 2.0))

        async with trio.open_nursery() as callers:
            for i in range(30):
                callers.start_soon(one, i)
        assert len(results) == 30
        # One yamux session (byte 4) carries every call, each on a stream of its own.
        assert net.stats[src]["connections_dialed"] == 1
        assert net.stats[a]["port_accepted_4"] == 1
        assert net.stats[a]["requests_in"] == 50
        # Another source gets its own connection (one per (src, dst), like Consul's pool).
        await ConsulPool(net, "127.0.0.55:8300").call(a, "m", 0, 2.0)
        assert net.stats[a]["port_accepted_4"] == 2
        nursery.cancel_scope.cancel()


def count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


async def raw_connect(address: str, first: bytes) -> trio.SocketStream:
    host, port = resolve_listen_address(address)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(first)
    return stream


async def closed_by_server(stream: trio.SocketStream, timeout: float = 3.0) -> bytes | None:
    """What the server sent before it closed the connection (EOF or reset); None if it did
    not close it within ``timeout``."""
    got = b""
    with trio.move_on_after(timeout):
        try:
            while chunk := await stream.receive_some(65536):
                got += chunk
        except trio.BrokenResourceError:
            pass
        return got
    return None


def old_private_frame(src: str) -> bytes:
    """What a consim server used to send after first byte 0xC1: a length-prefixed hello."""
    body = msgpack.packb({"consim": 1, "src": src})
    return struct.pack(">I", len(body)) + body


async def test_live_port_refuses_what_nobody_serves() -> None:
    """Live, the port has no protocol of its own: first bytes without a handler (0xC1, consim's
    old private frames, among them) are closed unanswered and counted, a connection that sends
    no first byte is closed after the read timeout, and nothing leaks."""
    rng = random.Random(1234)
    net = SocketNetwork(random.Random(1), read_timeout=0.3)
    async with net, trio.open_nursery() as nursery:
        a = await serve_port(net, nursery, "127.0.0.56:0", echo)
        stats = net.stats[a]
        pool = ConsulPool(net, "127.0.0.57:8300")
        assert await pool.call(a, "m", "warm", 2.0) == "warm"
        await trio.sleep(0.3)  # the server's task for that call's stream ends after the reply
        baseline_tasks = count_tasks()
        unknown = [b for b in range(256) if b not in net.port_mux(a)]
        assert 0xC1 in unknown

        for _round in range(3):
            # 1. consim's old hello frame on its old first byte
            s = await raw_connect(a, b"\xc1" + old_private_frame("127.0.0.58:8300"))
            assert await closed_by_server(s) == b""
            # 2. random bytes on a random unknown first byte
            s = await raw_connect(a, bytes([rng.choice(unknown)]) + rng.randbytes(63))
            assert await closed_by_server(s) == b""
            # 3. no first byte at all: closed after the read timeout
            s = await raw_connect(a, b"")
            start = trio.current_time()
            assert await closed_by_server(s) == b""
            assert 0.25 <= trio.current_time() - start < 2.0

        await wait_for(lambda: stats["port_unknown_first_byte"] == 6)
        assert stats["port_first_byte_timeouts"] == 3
        assert stats["port_accepted_193"] == 0
        # The server answers real calls on its pooled session, and nothing leaked.
        for i in range(5):
            assert await pool.call(a, "m", i, 2.0) == i
        await wait_for(lambda: count_tasks() == baseline_tasks)
        nursery.cancel_scope.cancel()


async def test_datagrams_are_raw_udp_with_their_real_source() -> None:
    """What memberlist peers send and expect: the payload alone, the UDP source as sender."""
    if not loopback_range_available():
        if os.environ.get("CI"):  # Linux (CI) always has 127/8: missing there is a fault
            pytest.fail("the 127/8 loopback range is required in CI")
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
        a = await nursery.start(net.serve_port, "127.0.0.56:0")
        other = SocketNetwork()
        async with other:
            with pytest.raises(OSError, match=f"cannot listen for RPC on {a}"):
                await nursery.start(other.serve_port, a)
        nursery.cancel_scope.cancel()


async def test_bytes_held_by_a_delay_leave_before_bytes_written_after_the_heal() -> None:
    """A port connection on a delayed (or lossy: retransmission) link holds its bytes; a heal
    while they wait must not let the next write overtake them (the stream's framing)."""
    import collections
    import socket
    from types import SimpleNamespace

    from consim.net.faults import FaultModel
    from consim.net.sockets import _LiveConn

    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        faults = FaultModel()
        net = SimpleNamespace(faults=faults, stats=collections.defaultdict(collections.Counter))
        conn = _LiveConn(net, "127.0.0.1:8300", "127.0.0.2:8300")
        conn._fd = a.fileno()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(a))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn._writer, stream)
            faults.set_delay("127.0.0.1:8300", "127.0.0.2:8300", 0.2)
            conn.write(b"FIRST;")
            await trio.sleep(0.05)
            faults.heal(all=True)  # the rule goes while FIRST waits
            conn.write(b"SECOND;")
            await trio.sleep(0.4)
            assert b.recv(100) == b"FIRST;SECOND;"
            conn.close()
            nursery.cancel_scope.cancel()
    finally:
        b.close()


async def test_a_delayed_datagram_that_cannot_leave_is_counted_at_its_sender() -> None:
    """A datagram held by a delay is sent later from the network's nursery: a failure then is
    contained and counted under the sender's address, and the network goes on."""
    net = SocketNetwork(random.Random(1))
    got: list[bytes] = []
    async with net, trio.open_nursery() as nursery:
        d = await nursery.start(net.serve_datagrams, "127.0.0.61:0", lambda s, p: got.append(p))
        e = await nursery.start(net.serve_datagrams, "127.0.0.62:0", lambda s, p: None)
        net.faults.set_delay(e, d, 0.05)
        real_sendto = net._sendto

        def broken(src: str, data: bytes, target: tuple[str, int]) -> None:
            raise OSError("sendto failed")

        net._sendto = broken  # type: ignore[method-assign]
        net.send_datagram(e, d, b"lost")
        await wait_for(lambda: net.stats[e]["datagram_errors"] == 1)
        net._sendto = real_sendto  # type: ignore[method-assign]
        net.send_datagram(e, d, b"next")
        await wait_for(lambda: got == [b"next"])
        nursery.cancel_scope.cancel()
