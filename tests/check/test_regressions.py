"""What consim check campaigns found, each pinned by a targeted test."""

from __future__ import annotations

import trio

from consim.cluster import Cluster
from consim.runtime import run_virtual
from consim.spec import ClusterSpec


async def _leader_dies_while_handling_a_forwarded_cas(cluster: Cluster) -> dict:
    leader = await cluster.wait_for_leader(within=10)
    follower, other = [n for n in cluster.servers.values() if n is not leader]
    status, _, _ = await cluster.http(leader.name, "PUT", "/v1/kv/k", body=b"1")
    assert status == 200
    await trio.sleep(0.5)
    _, entry = leader.fsm.get("k")
    assert entry is not None
    index = leader.core.last_index + 1  # where the cas will be appended
    answer: dict = {}

    async def cas() -> None:
        answer["reply"] = await cluster.http(
            follower.name, "PUT", f"/v1/kv/k?cas={entry.modify_index}", body=b"2"
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cas)
        # Kill the leader once a follower holds the entry (so the next leader commits it) but
        # before the leader has answered.
        while not any(n.core.last_index >= index for n in (follower, other)):
            await trio.sleep(0.0001)
        assert "reply" not in answer
        cluster.kill(leader.name)
    await cluster.wait_for_leader(within=10, exclude={leader.name})
    await trio.sleep(1)
    answer["final"] = {n.name: n.fsm.get("k")[1].value for n in (follower, other)}
    return answer


def test_a_forwarded_write_whose_leader_dies_mid_request_is_not_retried() -> None:
    """Found by ``consim check --seed 12 --servers 5 --consistency consistent --nemesis
    partition,kill,pause,loss,delay,membership --duration 60``: a cas forwarded to a leader that
    was killed while handling it was retried on the next leader, which already had the first
    attempt committed, so the retry answered ``false`` for a cas that had been applied (a write
    would be applied twice). Consul does not retry a write whose connection was lost: the client
    gets a 500 (outcome unknown)."""
    for seed in (1, 2, 3):
        answer, _ = run_virtual(
            ClusterSpec(seed=seed, raft_multiplier=1), _leader_dies_while_handling_a_forwarded_cas
        )
        status, _, body = answer["reply"]
        print(seed, status, body, answer["final"])
        assert set(answer["final"].values()) == {b"2"}  # the first attempt was committed
        assert (status, body.strip()) == (500, b"rpc error making call: EOF")


async def _remote_server_dies_while_handling_a_dc_cas(cluster: Cluster) -> dict:
    client_side = cluster.node("dc1-s1")
    leader = await cluster.wait_for_leader("dc2", within=10)
    await cluster.wait_for_leader("dc1", within=10)
    await trio.sleep(5)  # WAN gossip: dc1 learns dc2's servers
    status, _, body = await cluster.http("dc1-s1", "PUT", "/v1/kv/k?dc=dc2", body=b"1")
    assert (status, body.strip()) == (200, b"true"), body
    await trio.sleep(0.5)
    _, entry = leader.fsm.get("k")
    assert entry is not None
    dc2 = [n for n in cluster.servers.values() if n.datacenter == "dc2"]
    index = leader.core.last_index + 1

    # Requests each dc2 server took over Consul's RPC (servers forward to each other on it).
    def taken(n) -> int:
        return cluster.net.stats[n.address]["consul_rpc_requests"]

    requests = {n.name: taken(n) for n in dc2}
    answer: dict = {}

    async def cas() -> None:
        answer["reply"] = await cluster.http(
            client_side.name, "PUT", f"/v1/kv/k?dc=dc2&cas={entry.modify_index}", body=b"2"
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cas)
        # The dc2 server the dc1 server picked dies once another dc2 server holds the entry
        # (so dc2 commits it) but before it has answered.
        with trio.fail_after(10):
            while True:
                hop = [n for n in dc2 if taken(n) > requests[n.name]]
                if hop and any(n.core.last_index >= index for n in dc2 if n is not hop[0]):
                    break
                await trio.sleep(0.0001)
        assert "reply" not in answer
        cluster.kill(hop[0].name)
    await trio.sleep(3)
    answer["final"] = {n.name: n.fsm.get("k")[1].value for n in dc2 if n is not hop[0]}
    answer["hop_was_leader"] = hop[0] is leader
    return answer


def test_a_dc_forwarded_write_whose_remote_server_dies_mid_request_is_not_retried() -> None:
    """The ``?dc`` twin of the test above: the dc1 server tried the next dc2 server when the first
    one's connection was lost with the write in hand, so the write could be applied twice (a cas
    answered ``false`` after it took effect). Consul's forwardDC does not retry at all; consim
    still tries the next server when the request never left (refused) or timed out (a WAN
    partition), but not after a lost connection."""
    kinds = set()
    for seed in (1, 2, 3, 4):
        spec = ClusterSpec(seed=seed, raft_multiplier=1, datacenters=(("dc1", 1), ("dc2", 3)))
        answer, _ = run_virtual(spec, _remote_server_dies_while_handling_a_dc_cas)
        status, _, body = answer["reply"]
        print(seed, status, body, answer["final"], answer["hop_was_leader"])
        kinds.add(answer["hop_was_leader"])
        assert set(answer["final"].values()) == {b"2"}  # the first attempt was committed
        assert (status, body.strip()) == (500, b"rpc error making call: EOF")
    assert kinds == {
        True,
        False,
    }  # the first hop was dc2's leader in some seeds, a follower in others
