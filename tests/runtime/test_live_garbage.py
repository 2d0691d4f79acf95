"""Garbage on a running server's port 8300, on each protocol it serves (byte 0 Consul's RPC, 1
hashicorp/raft, 4 yamux) and on first bytes it does not (0xC1, consim's old private frames, among
them): dropped and counted; the cluster keeps serving and the server's memory stays flat."""

from __future__ import annotations

import gc
import random
import tracemalloc

import msgpack
import trio

from consim.net.msgpackrpc import ClientCodec, go_pack
from consim.net.portmux import RPC_CONSUL, RPC_MULTIPLEX_V2, RPC_RAFT
from consim.net.sockets import resolve_listen_address
from consim.net.yamux import FLAG_SYN, HEADER, TYPE_WINDOW_UPDATE
from consim.raft.hashicorp_wire import pack
from consim.server.node import ServerNode

from .helpers import describe, kv_put, live_cluster, live_spec, local_value, wait_until

READ_TIMEOUT = 0.5
OLD_PRIVATE_BYTE = 0xC1


async def _connect(node: ServerNode, first_byte: int) -> trio.SocketStream:
    """A connection to the server port; its first byte picks the protocol."""
    host, port = resolve_listen_address(node.address)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(bytes([first_byte]))
    return stream


async def _closed_by_server(stream: trio.SocketStream, within: float) -> bytes | None:
    """What the server sent before closing the connection (EOF or reset); None: still open."""
    got = b""
    with trio.move_on_after(within):
        try:
            while chunk := await stream.receive_some(65536):
                got += chunk
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        return got
    return None


async def _send_and_expect_close(
    node: ServerNode, data: bytes, first_byte: int, within: float = 5.0
) -> bytes:
    stream = await _connect(node, first_byte)
    try:
        try:
            await stream.send_all(data)
        except trio.BrokenResourceError:
            return b""  # already closed on us
        got = await _closed_by_server(stream, within)
        assert got is not None, f"server kept a garbage connection: {first_byte} {data[:16]!r}"
        return got
    finally:
        await stream.aclose()


def _consul_garbage(rng: random.Random) -> bytes:
    """Bytes after RPC_CONSUL that Consul's codec refuses at once (closed)."""
    kind = rng.randrange(3)
    if kind == 0:  # not msgpack at all (0xc1 never decodes)
        return b"\xc1" + rng.randbytes(rng.randint(0, 200))
    if kind == 1:  # valid msgpack of the wrong shape for a request header
        return go_pack(rng.choice([[1, 2, 3], "text", 7, {"Seq": "x", "ServiceMethod": 5}]))
    return go_pack({"Seq": 1}) + go_pack({})  # a header without ServiceMethod (answered, closed)


def _consul_oversized(rng: random.Random) -> bytes:
    """A request header whose string claims ~4 GiB: never completes, closed at the timeout."""
    return b"\x82\xa3Seq\x01\xadServiceMethod\xdb\xff\xff\xff\xf0" + rng.randbytes(64)


def _yamux_garbage(rng: random.Random) -> bytes:
    """Bytes after RPC_MULTIPLEX_V2 that end the yamux session."""
    kind = rng.randrange(3)
    if kind == 0:  # a protocol version yamux does not speak
        return bytes([rng.randint(1, 255)]) + rng.randbytes(11 + rng.randint(0, 50))
    if kind == 1:  # an unknown frame type
        return HEADER.pack(0, rng.randint(4, 255), 0, 1, 0) + rng.randbytes(rng.randint(0, 50))
    # a window update that overflows the stream's send window
    return HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 2**32 - 1)


async def _garbage_round(node: ServerNode, rng: random.Random, count: int) -> None:
    """``count`` connections of garbage, spread over every protocol the port serves and over
    first bytes it does not."""
    async with trio.open_nursery() as nursery:
        for i in range(count):
            kind = i % 5
            if kind == 0:
                first, data = RPC_CONSUL, _consul_garbage(rng)
            elif kind == 1:
                first, data = RPC_CONSUL, _consul_oversized(rng)
            elif kind == 2:
                first, data = RPC_RAFT, _raft_garbage(rng)
            elif kind == 3:
                first, data = RPC_MULTIPLEX_V2, _yamux_garbage(rng)
            else:
                first, data = OLD_PRIVATE_BYTE, rng.randbytes(rng.randint(0, 64))
            nursery.start_soon(_send_and_expect_close, node, data, first)


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
        counters = target.counters
        # The leader's first reconcile (catalog registrations, autopilot's stats calls) opens
        # the last pooled connections: take the baseline once it is done.
        await wait_until(lambda: len(leader.fsm.catalog.nodes) == 3, 10, "catalog registered")
        await trio.sleep(0.5)
        before = dict(stats)

        def grew(name: str) -> int:
            return stats[name] - before.get(name, 0)

        raft_dropped_before = counters.get("raft_wire_dropped", 0)

        # 1. garbage on bytes 0, 1, 4 and on unknown first bytes: every connection closed
        await _garbage_round(target, rng, 50)
        await wait_until(
            # a header without a method: Go's net/rpc answers "can't find method", then closes
            lambda: (
                grew("consul_rpc_garbage") + grew("consul_rpc_bad_method") == 10
                and grew("consul_rpc_timed_out") == 10
                and grew("yamux_protocol_errors") == 10
                and grew("port_unknown_first_byte") == 10
                and counters.get("raft_wire_dropped", 0) - raft_dropped_before == 10
            ),
            5,
            f"seed={seed}: garbage counted {dict(stats)} {counters}",
        )
        assert stats[f"port_accepted_{OLD_PRIVATE_BYTE}"] == 0

        # 2. consim's old private frames (0xC1 and a hello) are nobody's protocol any more
        body = msgpack.packb({"consim": 1, "src": "127.0.43.200:8300"})
        hello = len(body).to_bytes(4, "big") + body
        assert await _send_and_expect_close(target, hello, OLD_PRIVATE_BYTE) == b""
        assert grew("port_unknown_first_byte") == 11

        # 3. a well-formed request with arguments of the wrong shape: Consul's error, then closed
        answer = await _send_and_expect_close(
            target, ClientCodec.request(7, "KVS.Apply", "nonsense"), RPC_CONSUL
        )
        responses = ClientCodec().feed(answer)
        assert len(responses) == 1 and responses[0].seq == 7 and responses[0].error, (
            f"seed={seed}: {responses!r}"
        )
        assert grew("consul_rpc_bad_args") == 1

        # 4. requests that stall mid-message are closed after the read timeout, on each protocol
        stalls = [await _connect(target, RPC_CONSUL) for _ in range(4)]
        stalls += [await _connect(target, RPC_RAFT) for _ in range(4)]
        for s in stalls[:4]:
            await s.send_all(ClientCodec.request(1, "Status.Ping", {})[:5])
        for s in stalls[4:]:
            await s.send_all(b"\x00" + pack({"Term": 1})[:3])  # AppendEntries, cut short
        start = trio.current_time()
        for s in stalls:
            closed = await _closed_by_server(s, READ_TIMEOUT + 3)
            assert closed is not None, f"seed={seed}: stall {stalls.index(s)} kept open"
            await s.aclose()
        assert trio.current_time() - start >= READ_TIMEOUT - 0.1, f"seed={seed}"
        await wait_until(
            lambda: (
                grew("consul_rpc_timed_out") == 14
                and counters.get("raft_wire_dropped", 0) - raft_dropped_before == 14
            ),
            3,
            f"seed={seed}: stalls counted {dict(stats)} {counters}",
        )

        # The server keeps serving: a leader, writes through the target (forwarded) commit.
        await kv_put(target, "after-garbage", b"ok")
        assert local_value(cluster.node(leader.name), "after-garbage") == b"ok", describe(cluster)

        # 5. memory stays flat: a second and third identical round allocate (nearly) nothing more.
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
        assert await cluster.wait_for_leader(within=5) is not None
        await kv_put(leader, "still-serving", b"ok")
