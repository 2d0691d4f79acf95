"""The same cluster runtime live: real clock, TCP RPC on 127.0.<d>.k:8300, hypercorn HTTP.

Kept to two clusters (each test drives several faults in sequence) so the suite stays fast.
Timings here are real seconds with raft_multiplier=1 (ElectionTimeout 1 s), so bounds are loose.
"""

from __future__ import annotations

import json
from pathlib import Path

import trio

from consim.raft.types import Role
from consim.server.forwarding import ERR_NO_LEADER

from .helpers import (
    describe,
    events_of,
    expect_rpc_error,
    kv_get,
    kv_put,
    leaders_in,
    live_cluster,
    live_spec,
    local_value,
    wait_converged,
    wait_until,
)


async def test_live_leader_loss_forwarding_partition_restart_and_durability(
    tmp_path: Path,
) -> None:
    seed = 31
    spec = live_spec(41, http_port=28511, seed=seed, data_dir=tmp_path)
    async with live_cluster(spec) as cluster:
        et = cluster.raft_config.election_timeout
        leader = await cluster.wait_for_leader(within=15)
        assert leaders_in(cluster, list(cluster.servers)) == [leader.name], describe(cluster)
        assert leader.address.startswith("127.0.41."), leader.address
        await wait_until(lambda: len(cluster.followers()) == 2, 5, "two followers")

        # A follower forwards a write over TCP; the value is on the leader.
        follower = cluster.followers()[0]
        reply = await kv_put(follower, "live/fwd", b"hello")
        assert reply["Result"] is True, f"seed={seed}: {reply}"
        assert local_value(leader, "live/fwd") == b"hello", f"seed={seed}"
        assert cluster.net.stats[follower.address]["calls_ok"] >= 1, f"seed={seed}"
        # Over real HTTP (hypercorn on the follower's address).
        status, _, body = await cluster.http(follower.name, "GET", "/v1/status/leader")
        assert status == 200 and json.loads(body) == leader.address, f"seed={seed}: {body!r}"

        # Leader loss: a new leader.
        killed_at = trio.current_time()
        cluster.kill(leader.name)
        new = await cluster.wait_for_leader(within=10, exclude={leader.name})
        took = trio.current_time() - killed_at
        assert took < 4 * et, f"seed={seed}: new leader after {took:.2f}s"
        await kv_put(new, "live/after-kill", b"1")

        # Restart: the old leader catches up.
        await trio.sleep(0.2)
        await cluster.restart(leader.name)
        await wait_converged(cluster, 10)
        assert local_value(leader, "live/after-kill") == b"1", f"seed={seed}"

        # Minority partition (short, before gossip declares the member failed).
        lonely = next(n for n in cluster.followers() if n.name != new.name)
        assert lonely.core is not None
        term, commit = lonely.core.term, lonely.core.commit_index
        cluster.isolate(lonely.name)
        for i in range(3):
            await kv_put(new, f"live/maj/{i}", b"v")
        await trio.sleep(2.5 * et)
        assert lonely.core.role is not Role.LEADER, f"seed={seed}"
        assert lonely.core.commit_index == commit, f"seed={seed}: minority committed"
        assert lonely.core.term == term, f"seed={seed}: pre-vote should keep the term"
        assert cluster.leader() is new, f"seed={seed}: {describe(cluster)}"
        cluster.heal()
        await wait_converged(cluster, 15)
        assert local_value(lonely, "live/maj/2") == b"v", f"seed={seed}"

        # Durable: kill everything, restart, the data and the terms are back.
        terms = {n.name: n.core.term for n in cluster.servers.values()}  # type: ignore[union-attr]
        for name in cluster.servers:
            cluster.kill(name)
        await trio.sleep(0.3)
        for name in cluster.servers:
            await cluster.restart(name)
            core = cluster.node(name).core
            assert core is not None and core.term == terms[name], f"seed={seed}: {name}"
        leader2 = await cluster.wait_for_leader(within=15)
        await wait_until(lambda: leader2.consistent_ready, 10, "barrier")
        got = await kv_get(leader2, "live/maj/2", RequireConsistent=True)
        assert got == b"v", f"seed={seed}: {got!r}"
        log = cluster.events

    for name in ("dc1-s1", "dc1-s2", "dc1-s3"):
        assert (tmp_path / name / "raft" / "raft.db").is_file()
        assert (tmp_path / name / "raft" / "peers.info").is_file()
        assert (tmp_path / name / "node-id").is_file()
    assert events_of(log, "kill", server=leader.name), "kill not logged"
    assert events_of(log, "restart", server=leader.name), "restart not logged"
    assert events_of(log, "isolate", host=lonely.name), log.of_kind("isolate")
    assert log.of_kind("heal"), "heal not logged"


async def test_live_faults_pause_block_delay_loss_hold_and_stop() -> None:
    seed = 32
    hold = 1.0
    spec = live_spec(42, http_port=28521, seed=seed, rpc_hold_timeout=hold)
    async with live_cluster(spec) as cluster:
        et = cluster.raft_config.election_timeout
        leader = await cluster.wait_for_leader(within=15)
        await wait_converged(cluster, 5)

        # Delay: a write needs a round trip out of the leader.
        cluster.set_delay(leader.name, "*", 0.2)
        start = trio.current_time()
        await kv_put(leader, "d", b"1")
        assert trio.current_time() - start >= 0.2, f"seed={seed}"
        cluster.set_delay(leader.name, "*", 0.0)

        # Loss: 10% of messages dropped; writes still commit.
        cluster.set_loss("*", "*", 0.1)
        for i in range(5):
            current = await cluster.wait_for_leader(within=10)
            await kv_put(current, f"loss/{i}", b"v")
        cluster.set_loss("*", "*", 0.0)
        await wait_converged(cluster, 10)

        # One-way block leader -> follower: leader and term stay (pre-vote, stickiness).
        leader = await cluster.wait_for_leader(within=10)
        deaf = cluster.followers()[0]
        assert leader.core is not None and deaf.core is not None
        term = leader.core.term
        cluster.block(leader.name, deaf.name)
        await kv_put(leader, "blocked", b"1")
        await trio.sleep(2.5 * et)
        assert cluster.leader() is leader and leader.core.term == term, describe(cluster)
        assert local_value(deaf, "blocked") is None, f"seed={seed}"
        cluster.heal()
        await wait_converged(cluster, 10)

        # Pause the leader: the others elect; resume: it steps down and catches up.
        old = leader
        cluster.pause(old.name)
        new = await cluster.wait_for_leader(within=10, exclude={old.name})
        await kv_put(new, "paused", b"1")
        cluster.resume(old.name)
        await wait_converged(cluster, 10)
        assert local_value(old, "paused") == b"1", f"seed={seed}"

        # Graceful stop removes a follower from the configuration.
        leaving = next(n for n in cluster.followers())
        await cluster.stop(leaving.name)
        leader = await cluster.wait_for_leader(within=10)
        assert leader.core is not None
        await wait_until(
            lambda: leader.core.latest_configuration.get(leaving.server_id) is None,  # type: ignore[union-attr]
            5,
            "the stopped server to leave the configuration",
        )

        # No quorum: with one of the two remaining servers killed, a forwarded write on the
        # survivor fails with Consul's text after the hold timeout. Wait until the survivor has
        # seen its connection to the killed leader close: a write sent on it before then went
        # out and is answered `rpc error making call: EOF` (it may have been handled, Consul does
        # not retry it); after, every attempt is refused before anything is sent, so it is
        # retried until the hold timeout.
        survivor = next(n for n in cluster.servers.values() if n.running and n is not leader)
        cluster.kill(leader.name)
        pool = survivor.forwarder.pool  # Consul's RPC pool: one yamux session per peer
        await wait_until(
            lambda: not pool.live(leader.address),
            5,
            "the survivor to see its connection to the killed leader close",
        )
        start = trio.current_time()
        msg = await expect_rpc_error(kv_put(survivor, "nq", b"x"))
        took = trio.current_time() - start
        assert msg == ERR_NO_LEADER, f"seed={seed}: {msg!r}"
        assert hold - 0.01 <= took <= hold + 0.5, f"seed={seed}: held {took:.3f}s"
        log = cluster.events

    for kind in ("delay", "loss", "block", "heal", "pause", "resume", "stop", "kill"):
        assert log.of_kind(kind), f"seed={seed}: {kind} not in the event log"
