"""The server port carries Consul's formats only (virtual time): consim's servers register
Consul's RPC (bytes 0 and 4) and hashicorp/raft (byte 1); the first byte consim's own frames
used to have (0xC1) is an unknown first byte like any other: closed unanswered and counted."""

from __future__ import annotations

import struct

import msgpack
import trio

from consim.net.portmux import RPC_CONSUL, RPC_MULTIPLEX_V2, RPC_RAFT

from .endpoints.helpers import ready, run
from .test_consul_rpc import CLIENT, Client

OLD_PRIVATE_BYTE = 0xC1


def old_hello() -> bytes:
    """What a consim server used to send first on 0xC1: a length-prefixed hello frame."""
    body = msgpack.packb({"consim": 1, "src": CLIENT})
    return struct.pack(">I", len(body)) + body


def test_the_old_private_first_byte_is_closed_and_counted():
    async def body(c):
        leader, followers = await ready(c)
        for node in c.servers.values():
            mux = c.net.port_mux(node.address)
            assert all(b in mux for b in (RPC_CONSUL, RPC_RAFT, RPC_MULTIPLEX_V2))
            assert OLD_PRIVATE_BYTE not in mux
        for target in (leader, followers[0]):
            stats = c.net.stats[target.address]
            before = stats["port_unknown_first_byte"]
            s = await c.net.open_stream(CLIENT, target.address, OLD_PRIVATE_BYTE)
            await s.send_all(old_hello())
            with trio.fail_after(5):
                assert await s.receive_some(100) == b""  # closed, nothing answered
            assert stats["port_unknown_first_byte"] == before + 1
            assert stats[f"port_accepted_{OLD_PRIVATE_BYTE}"] == 0
        # The port goes on serving Consul's RPC, and the servers their Raft.
        rpc = Client(await c.net.open_stream(CLIENT, leader.address, RPC_CONSUL))
        r = await rpc.call("Status.Leader", {})
        assert (r.error, r.body) == ("", leader.address)
        r = await rpc.call("KVS.Apply", {"Op": "set", "DirEnt": {"Key": "k", "Value": b"v"}})
        assert (r.error, r.body) == ("", True)
        assert all(c.net.stats[n.address]["port_accepted_1"] > 0 for n in followers)

    run(body)
