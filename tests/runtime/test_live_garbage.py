"""Garbage on a running server's RPC port: dropped and counted; the cluster keeps serving and the
server's memory stays flat."""

from __future__ import annotations

import gc
import random
import struct
import tracemalloc

import trio

from consim.net.framing import encode_frame
from consim.net.portmux import RPC_CONSIM, RPC_RAFT
from consim.net.rpc import hello
from consim.net.sockets import resolve_listen_address
from consim.raft.hashicorp_wire import pack
from consim.server.node import ServerNode

from .helpers import describe, kv_put, live_cluster, live_spec, local_value, wait_until

READ_TIMEOUT = 0.5


async def _connect(node: ServerNode, first_byte: int = RPC_CONSIM) -> trio.SocketStream:
    """A connection to the server port; its first byte picks the protocol (consim's own frames
    by default, RPC_RAFT for hashicorp/raft's transport)."""
    host, port = resolve_listen_address(node.address)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(bytes([first_byte]))
    return stream


async def _closed_by_server(stream: trio.SocketStream, within: float) -> bool:
    """True once the server closed the connection (EOF or reset)."""
    with trio.move_on_after(within):
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        return True
    return False


async def _send_and_expect_close(
    node: ServerNode, data: bytes, within: float = 5.0, first_byte: int = RPC_CONSIM
) -> None:
    stream = await _connect(node, first_byte)
    try:
        try:
            await stream.send_all(data)
        except trio.BrokenResourceError:
            return  # already closed on us
        assert await _closed_by_server(stream, within), (
            f"server kept a garbage connection: {data[:16]!r}"
        )
    finally:
        await stream.aclose()


async def _garbage_round(node: ServerNode, rng: random.Random, count: int) -> None:
    """``count`` connections of random bytes and oversized prefixes."""
    async with trio.open_nursery() as nursery:
        for i in range(count):
            if i % 2 == 0:
                # Random bytes with a length prefix small enough to be read, then undecodable.
                body = rng.randbytes(rng.randint(1, 200))
                data = struct.pack(">I", len(body)) + body
                if rng.random() < 0.5:
                    data = rng.randbytes(rng.randint(5, 300))  # no frame structure at all
                    data = b"\xc1" + data[1:]  # 0xc1 is never valid msgpack
                    data = struct.pack(">I", len(data)) + data
            elif i % 4 == 1:
                data = b"\xff\xff\xff\xf0" + rng.randbytes(64)  # ~4 GiB length prefix
            else:
                nursery.start_soon(_send_and_expect_close, node, _raft_garbage(rng), 5.0, RPC_RAFT)
                continue
            nursery.start_soon(_send_and_expect_close, node, data)


def _raft_garbage(rng: random.Random) -> bytes:
    """Bytes after RPC_RAFT that hashicorp/raft's transport refuses at once."""
    kind = rng.randrange(4)
    if kind == 0:  # a known rpc type, then undecodable msgpack (0xc1 never decodes)
        return bytes([rng.randrange(4)]) + b"\xc1" + rng.randbytes(rng.randint(0, 200))
    if kind == 1:  # an unknown rpc type
        return bytes([rng.randint(5, 255)]) + rng.randbytes(rng.randint(0, 50))
    if kind == 2:  # a request whose string claims ~4 GiB
        return b"\x00\x81\xa7Entries\xdb\xff\xff\xff\xf0" + rng.randbytes(64)
    # valid msgpack of the wrong shape (not TimeoutNow: it has no field to get wrong)
    return bytes([rng.randrange(3)]) + pack(rng.choice([[1, 2, 3], "text", 7, {"Term": "x"}]))


async def test_garbage_on_a_running_servers_rpc_port() -> None:
    seed = 41
    rng = random.Random(seed)
    spec = live_spec(43, http_port=28531, seed=seed)
    async with live_cluster(spec, read_timeout=READ_TIMEOUT) as cluster:
        leader = await cluster.wait_for_leader(within=15)
        await wait_until(lambda: len(cluster.followers()) == 2, 5, "two followers")
        target = cluster.followers()[0]
        stats = cluster.net.stats[target.address]
        # The leader's first reconcile (catalog registrations, autopilot's stats calls) opens
        # the last pooled connections: take the baseline once it is done.
        await wait_until(lambda: len(leader.fsm.catalog.nodes) == 3, 10, "catalog registered")
        await trio.sleep(0.5)
        baseline_open = stats["connections_open"]
        garbage_before = stats["connections_dropped_garbage"]

        # 1. random bytes and oversized length prefixes
        await _garbage_round(target, rng, 40)
        assert stats["connections_dropped_garbage"] - garbage_before >= 30, (
            f"seed={seed}: {dict(stats)}"
        )

        # 2. valid msgpack of the wrong shape after a good hello: dropped, counted, conn stays up
        malformed_before = stats["frames_dropped_malformed"]
        rpc_malformed_before = target.counters["rpc_malformed"]
        stream = await _connect(target)
        await stream.send_all(encode_frame(hello("127.0.43.200:8300")))
        await stream.send_all(encode_frame({"not": "a frame"}))
        await stream.send_all(encode_frame([9, 1, "KVS.Apply", {}]))  # unknown kind
        # A request whose args are not a map gets Consul-style error text back.
        await stream.send_all(encode_frame([0, 7, "KVS.Apply", "nonsense"]))
        reader_bytes = b""
        with trio.fail_after(5):
            while (
                len(reader_bytes) < 4
                or len(reader_bytes) < 4 + struct.unpack(">I", reader_bytes[:4])[0]
            ):
                chunk = await stream.receive_some(65536)
                assert chunk, "server closed a connection that only sent well-framed msgpack"
                reader_bytes += chunk
        import msgpack

        reply = msgpack.unpackb(reader_bytes[4:], raw=False)
        assert reply[0] == 2 and reply[1] == 7, f"seed={seed}: {reply!r}"
        assert "malformed arguments" in reply[3], f"seed={seed}: {reply!r}"
        await stream.aclose()
        assert stats["frames_dropped_malformed"] - malformed_before >= 2, f"seed={seed}"
        assert target.counters["rpc_malformed"] - rpc_malformed_before == 1, f"seed={seed}"

        # 2b. Raft's transport (byte 1): every kind of refused request closes its connection and
        # is counted; an unknown first byte is refused by the port itself.
        raft_dropped_before = target.counters.get("raft_wire_dropped", 0)
        for _ in range(12):
            await _send_and_expect_close(target, _raft_garbage(rng), first_byte=RPC_RAFT)
        await wait_until(
            lambda: target.counters.get("raft_wire_dropped", 0) - raft_dropped_before == 12,
            3,
            f"seed={seed}: raft garbage counted {target.counters}",
        )
        unknown_before = stats["port_unknown_first_byte"]
        await _send_and_expect_close(target, b"", first_byte=0x42)
        assert stats["port_unknown_first_byte"] - unknown_before == 1

        # A bad hello (wrong shape) is dropped too.
        await _send_and_expect_close(target, encode_frame(["hello?"]))

        # 3. connections that stall mid-frame are timed out after the read timeout
        timed_out_before = stats["connections_timed_out"]
        stalls = []
        for _ in range(10):
            s = await _connect(target)
            await s.send_all(
                encode_frame(hello("127.0.43.201:8300")) + struct.pack(">I", 100) + b"abc"
            )
            stalls.append(s)
        start = trio.current_time()
        for s in stalls:
            assert await _closed_by_server(s, READ_TIMEOUT + 3), f"seed={seed}: stall kept open"
            await s.aclose()
        assert trio.current_time() - start >= READ_TIMEOUT - 0.1, f"seed={seed}"
        await wait_until(
            lambda: stats["connections_timed_out"] - timed_out_before == 10, 3, "stall counters"
        )

        # The server keeps serving: a leader, writes through the target (forwarded) commit.
        await wait_until(
            lambda: stats["connections_open"] <= baseline_open,
            5,
            "connection count back to baseline",
        )
        await kv_put(target, "after-garbage", b"ok")
        assert local_value(cluster.node(leader.name), "after-garbage") == b"ok", describe(cluster)

        # 4. memory stays flat: a second and third identical round allocate (nearly) nothing more.
        # Counted: what the code that reads connections allocates (the network layer, the port's
        # handlers), not the servers' own background work (catalog, autopilot, event log).
        readers = [
            tracemalloc.Filter(True, "*/consim/net/*"),
            tracemalloc.Filter(True, "*/consim/server/raft_transport.py"),
            tracemalloc.Filter(True, "*/consim/server/rpc_listener.py"),
        ]

        def held_by_readers() -> int:
            snapshot = tracemalloc.take_snapshot().filter_traces(readers)
            return sum(stat.size for stat in snapshot.statistics("filename"))

        tracemalloc.start()
        try:
            await _garbage_round(target, rng, 100)
            gc.collect()
            await trio.sleep(0.2)
            first = held_by_readers()
            await _garbage_round(target, rng, 100)
            await _garbage_round(target, rng, 100)
            gc.collect()
            await trio.sleep(0.2)
            second = held_by_readers()
        finally:
            tracemalloc.stop()
        growth = second - first
        assert growth < 256 * 1024, (
            f"seed={seed}: memory grew {growth} bytes over 200 garbage conns"
        )
        await wait_until(
            lambda: stats["connections_open"] <= baseline_open,
            5,
            "connection count back to baseline",
        )
        assert await cluster.wait_for_leader(within=5) is not None
        await kv_put(leader, "still-serving", b"ok")
