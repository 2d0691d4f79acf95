"""Live forwarding over TCP when the leader dies with a forwarded write in hand (the live twin of
``tests/check/test_regressions.py``'s first test).

Consul retries a forwarded RPC only when nothing can have changed (no leader known, the request
never sent) and a lost connection only for reads (``canRetry`` in agent/consul/rpc.go): a write
whose leader died after receiving it may be committed by the next leader, so the follower answers
``rpc error making call: EOF`` and the client does not know the outcome.
"""

from __future__ import annotations

import json

import trio
from live_hosts import free_host_base

from consim.server.forwarding import ERR_RPC_EOF

from .helpers import live_cluster, live_spec, wait_converged, wait_until

HTTP_PORT = 28551


async def test_live_a_forwarded_cas_whose_leader_dies_after_receiving_it_is_applied_once() -> None:
    seed = 33
    base = free_host_base([3], HTTP_PORT)
    spec = live_spec(base, http_port=HTTP_PORT, seed=seed)
    async with live_cluster(spec) as cluster:
        leader = await cluster.wait_for_leader(within=15)
        # The leader registers every server in the catalog (Raft writes of its own): let those
        # land first, so the cas below is the only new entry.
        await wait_until(lambda: len(leader.fsm.catalog.nodes) == 3, 10, "catalog registered")
        await wait_converged(cluster, 5)
        status, _, _ = await cluster.http(leader.name, "PUT", "/v1/kv/k", body=b"1")
        assert status == 200
        await wait_converged(cluster, 5)
        status, _, body = await cluster.http(leader.name, "GET", "/v1/kv/k")
        modify_index = json.loads(body)[0]["ModifyIndex"]
        forwarder, holder = (n for n in cluster.servers.values() if n is not leader)
        assert leader.core is not None and holder.core is not None
        before = leader.core.last_index

        # The forwarder's request reaches the leader (forwarder -> leader is open) and the
        # leader's entry reaches the holder, but the holder's acknowledgement and the leader's
        # appends to the forwarder are dropped: the leader cannot commit, so it never answers.
        cluster.block(leader.name, forwarder.name)
        cluster.block(holder.name, leader.name)
        answer: dict[str, tuple[int, bytes]] = {}

        async def cas() -> None:
            status, _, body = await cluster.http(
                forwarder.name, "PUT", f"/v1/kv/k?cas={modify_index}", body=b"2"
            )
            answer["reply"] = (status, body.strip())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cas)
            await wait_until(
                lambda: holder.core is not None and holder.core.last_index > before,
                5,
                "the holder to append the cas entry",
            )
            # Not answered yet, or already EOF: the blocked direction also drops the leader's
            # yamux acknowledgement, which ends the forwarder's connection with the request
            # sent (a port connection dies on a cut link). Either way it must not be retried.
            assert answer.get("reply", (500, ERR_RPC_EOF.encode())) == (
                500,
                ERR_RPC_EOF.encode(),
            ), answer
            appended = holder.core.last_index
            # The leader dies holding the request; the holder's longer log makes it the next
            # leader, which commits the cas.
            cluster.kill(leader.name)
            cluster.heal()
        new = await cluster.wait_for_leader(within=15, exclude={leader.name})
        await wait_converged(cluster, 10, [forwarder.name, holder.name])
        values = {}
        for node in (forwarder, holder):
            status, _, body = await cluster.http(node.name, "GET", "/v1/kv/k?stale")
            values[node.name] = (status, json.loads(body)[0]["ModifyIndex"])
        status, _, raw = await cluster.http(new.name, "GET", "/v1/kv/k?consistent&raw")
        print(f"seed={seed} new leader {new.name} reply {answer} value {raw!r} {values}")
        assert (status, raw) == (200, b"2"), "the cas was committed by the next leader"
        # Applied once, at the index the dead leader gave it (a retry would be a later entry).
        assert {status for status, _ in values.values()} == {200}, values
        assert all(before < index <= appended for _, index in values.values()), values
        # Before the fix the follower retried the cas on the next leader, which had it applied
        # already, and answered `200 false` for a cas that took effect.
        assert answer["reply"] == (500, ERR_RPC_EOF.encode()), answer
