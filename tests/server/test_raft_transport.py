"""Raft on byte 1 of the server port (consim.server.raft_transport), in virtual time: the
simulator carries hashicorp/raft's bytes, so a raw hashicorp peer can be played from a test."""

from __future__ import annotations

from typing import Any

import trio

from consim.cluster import Cluster
from consim.net.portmux import RPC_RAFT, MuxConn
from consim.raft import hashicorp_wire as hw
from consim.spec import ClusterSpec
from tests.runtime.helpers import kv_put, virtual

STRANGER = "127.0.0.99:8300"


class Peer:
    """A hand-played hashicorp peer: what it sends is raw bytes, what it gets is decoded."""

    def __init__(self, conn: MuxConn) -> None:
        self.conn = conn
        self.reader = hw.ResponseReader(1 << 20)
        self.responses: list[tuple[str, dict[bytes, Any]]] = []
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        self.responses.extend(self.reader.responses())

    def connection_lost(self) -> None:
        self.lost = True


def dial(cluster: Cluster, address: str) -> Peer:
    peers: list[Peer] = []
    cluster.net.dial(STRANGER, address, RPC_RAFT, lambda c: peers.append(Peer(c)) or peers[-1])
    return peers[0]


def test_every_request_gets_hashicorps_answer_even_one_the_core_ignores() -> None:
    async def body(cluster: Cluster) -> None:
        leader = await cluster.wait_for_leader(within=10)
        core = leader.core
        assert core is not None
        peer = dial(cluster, leader.address)
        # A vote request from a server in no configuration: the core ignores it, hashicorp's
        # peer still gets a refusal (it waits for every answer).
        peer.conn.write(hw.request_vote_request(core.term + 5, STRANGER, 99, core.term, False))
        # A heartbeat as hashicorp sends it (no PrevLogEntry, no commit index), stale term.
        peer.conn.write(hw.append_entries_request(1, STRANGER, 0, 0, [], 0))
        await trio.sleep(0.1)
        assert [e for e, _ in peer.responses] == ["", ""]
        vote, heartbeat = (b for _, b in peer.responses)
        assert hw.boolean(vote, b"Granted") is False and hw.uint(vote, b"Term") == core.term
        assert hw.boolean(heartbeat, b"Success") is False
        assert hw.uint(heartbeat, b"Term") == core.term
        assert core.role.value == "Leader"  # neither moved the leader

    virtual(ClusterSpec(seed=3, raft_multiplier=1), body)


def test_a_stalled_request_is_closed_after_the_read_timeout() -> None:
    async def body(cluster: Cluster) -> None:
        leader = await cluster.wait_for_leader(within=10)
        peer = dial(cluster, leader.address)
        peer.conn.write(b"\x00\x87\xa7Entries")  # an AppendEntries that never finishes
        await trio.sleep(leader.raft_transport.read_timeout + 1)
        assert peer.lost
        assert leader.counters["raft_wire_stalled"] == 1
        await kv_put(leader, "still", b"serving")

    virtual(ClusterSpec(seed=4, raft_multiplier=1), body)


def test_followers_are_replicated_over_one_pipelined_connection_each() -> None:
    async def body(cluster: Cluster) -> dict[str, int]:
        leader = await cluster.wait_for_leader(within=10)

        def raft_accepted() -> int:  # Raft connections only (Consul RPC ones dial too)
            return sum(
                cluster.net.stats[n.address][f"port_accepted_{RPC_RAFT}"]
                for n in cluster.servers.values()
            )

        dialed = raft_accepted()
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(kv_put, leader, f"k{i}", b"v")
        assert len(leader.raft_transport.peers) == 2
        assert raft_accepted() == dialed
        return {
            "accepted": sum(
                cluster.net.stats[n.address][f"port_accepted_{RPC_RAFT}"]
                for n in cluster.servers.values()
            )
        }

    out, _ = virtual(ClusterSpec(seed=5, raft_multiplier=1), body)
    # Connections only from elections and the leader's two followers: not one per message.
    assert out["accepted"] < 12


def test_same_seed_same_bytes() -> None:
    """Virtual runs over the byte transport stay deterministic."""

    async def body(cluster: Cluster) -> tuple[int, int, str]:
        leader = await cluster.wait_for_leader(within=10)
        for i in range(20):
            await kv_put(leader, f"k{i}", b"v")
        cluster.kill(leader.name)
        new = await cluster.wait_for_leader(within=10)
        assert new.core is not None
        return new.core.term, new.core.commit_index, new.name

    spec = ClusterSpec(seed=9, raft_multiplier=1)
    (a, log_a), (b, log_b) = virtual(spec, body), virtual(spec, body)
    assert a == b and log_a.trace_hash() == log_b.trace_hash()
