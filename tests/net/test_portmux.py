"""The server port's first-byte demultiplexer, on both networks (consim.net.portmux)."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import trio

from consim.net.portmux import RPC_RAFT, ConnHandler, MuxConn
from tests.net.conftest import Env, wait_for
from tests.net.test_network import echo


class Recorder:
    """A sans-IO handler that keeps what it got; as a server it answers every chunk upper-cased."""

    def __init__(self, conn: MuxConn, answer: bool = False) -> None:
        self.conn = conn
        self.answer = answer
        self.data = bytearray()
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.answer:
            self.conn.write(data.upper())

    def connection_lost(self) -> None:
        self.lost = True


async def test_first_byte_picks_the_handler_and_bytes_flow_both_ways(env: Env, clock: Any) -> None:
    address = await env.serve(1, echo)
    servers: list[Recorder] = []

    def accept(conn: MuxConn) -> ConnHandler:
        servers.append(Recorder(conn, answer=True))
        return servers[-1]

    env.net.port_mux(address).register(RPC_RAFT, accept)
    clients: list[Recorder] = []
    conn = env.net.dial(
        env.src(2), address, RPC_RAFT, lambda c: clients.append(Recorder(c)) or clients[-1]
    )
    conn.write(b"hello ")
    conn.write(b"raft")
    await wait_for(lambda: bytes(clients[0].data) == b"HELLO RAFT")
    assert bytes(servers[0].data) == b"hello raft"  # the first byte went to the demultiplexer
    assert env.net.stats[address][f"port_accepted_{RPC_RAFT}"] == 1
    # Consul's RPC works on the same port (bytes 4 and 0)
    assert await env.call(env.src(2), address, "Status.Leader", {}, 1.0) == "127.0.0.1:8300"
    conn.close()
    await wait_for(lambda: servers[0].lost)


async def test_unknown_first_byte_is_dropped_and_counted(env: Env, clock: Any) -> None:
    address = await env.serve(1, echo)
    clients: list[Recorder] = []
    env.net.dial(env.src(2), address, 0x42, lambda c: clients.append(Recorder(c)) or clients[-1])
    await wait_for(lambda: clients[0].lost)
    assert env.net.stats[address]["port_unknown_first_byte"] == 1
    # 0xC1, the first byte of consim's old private frames, is served by nobody: the network
    # has no protocol of its own on the port. Its hello frame goes unanswered, the dial closed.
    hello = msgpack.packb({"consim": 1, "src": env.src(2)})
    old = env.net.dial(
        env.src(2), address, 0xC1, lambda c: clients.append(Recorder(c)) or clients[-1]
    )
    old.write(struct.pack(">I", len(hello)) + hello)
    await wait_for(lambda: clients[1].lost)
    assert bytes(clients[1].data) == b""
    assert env.net.stats[address]["port_unknown_first_byte"] == 2
    assert env.net.stats[address]["port_accepted_193"] == 0
    assert await env.call(env.src(2), address, "Status.Leader", {}, 1.0) == "127.0.0.1:8300"


async def test_stream_style_handler(env: Env, clock: Any) -> None:
    address = await env.serve(1, echo)
    seen: list[str] = []

    async def serve(stream: trio.abc.Stream, peer: str, local: str) -> None:
        seen.append(local)
        data = await stream.receive_some(100)
        await stream.send_all(data[::-1])

    env.net.port_mux(address).register_stream(0x07, serve)
    stream = await env.net.open_stream(env.src(2), address, 0x07)
    await stream.send_all(b"abc")
    got = b""
    with trio.fail_after(5):
        while len(got) < 3:
            got += await stream.receive_some(100)
    assert got == b"cba" and seen == [address]
    await stream.aclose()


async def test_a_dead_server_closes_its_connections(env: Env, clock: Any) -> None:
    address = await env.serve(1, echo)
    env.net.port_mux(address).register(RPC_RAFT, lambda conn: Recorder(conn, answer=True))
    clients: list[Recorder] = []
    conn = env.net.dial(
        env.src(2), address, RPC_RAFT, lambda c: clients.append(Recorder(c)) or clients[-1]
    )
    conn.write(b"x")
    await wait_for(lambda: bytes(clients[0].data) == b"X")
    env.net.close_address(address)
    await wait_for(lambda: clients[0].lost)
    # and a new dial is refused
    later: list[Recorder] = []
    env.net.dial(env.src(2), address, RPC_RAFT, lambda c: later.append(Recorder(c)) or later[-1])
    await wait_for(lambda: later[0].lost)
