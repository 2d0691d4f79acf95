"""Cluster runtime in virtual time: elections, faults, forwarding, catch-up, graceful stop.

Every test runs a whole cluster under ``VirtualClock`` with ``run_virtual``; durations measured
here are virtual seconds, so they are exact and cheap. Each fault is also checked in the event log.
"""

from __future__ import annotations

import gc
import warnings

import pytest
import trio

from consim.cluster import Cluster
from consim.net.network import RpcError
from consim.raft.types import Role
from consim.server.forwarding import ERR_NO_LEADER
from consim.spec import ClusterSpec

from .helpers import (
    describe,
    events_of,
    expect_rpc_error,
    kv_get,
    kv_put,
    leaders_in,
    local_value,
    log_signature,
    virtual,
    wait_converged,
    wait_until,
)

SEEDS = [1, 2, 3, 4, 5, 6, 7, 8]


# ---- election and leader loss ----------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_leader_elected_and_replaced_within_two_election_timeouts(seed: int) -> None:
    spec = ClusterSpec(seed=seed, raft_multiplier=1)

    async def body(cluster: Cluster) -> dict[str, object]:
        et = cluster.raft_config.election_timeout
        first = await cluster.wait_for_leader(within=10)
        # Exactly one leader, acknowledged by the others.
        assert leaders_in(cluster, list(cluster.servers)) == [first.name]
        killed_at = trio.current_time()
        cluster.kill(first.name)
        second = await cluster.wait_for_leader(within=10, exclude={first.name}, poll=0.001)
        took = trio.current_time() - killed_at
        assert second.core is not None and first.core is not None
        return {"first": first.name, "second": second.name, "took": took, "et": et}

    out, log = virtual(spec, body)
    took, et = out["took"], out["et"]
    assert isinstance(took, float) and isinstance(et, float)
    assert took <= 2 * et, f"seed={seed}: new leader after {took:.3f}s > 2 x {et}s"
    assert out["first"] != out["second"], f"seed={seed}"
    kills = events_of(log, "kill", server=out["first"])
    assert len(kills) == 1, f"seed={seed}: kill not in the event log"
    # The new leader's election is in the log after the kill.
    won = [e for e in log.of_kind("election_won") if e.node == out["second"]]
    assert won and won[-1].time > kills[0].time, f"seed={seed}"


# ---- partitions ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_minority_partition_neither_elects_nor_commits_then_heal_converges(seed: int) -> None:
    """5 servers; the old leader plus one follower end up in the minority."""
    spec = ClusterSpec(datacenters=(("dc1", 5),), seed=seed, raft_multiplier=1)

    async def body(cluster: Cluster) -> None:
        et = cluster.raft_config.election_timeout
        leader = await cluster.wait_for_leader(within=10)
        await kv_put(leader, "before", b"1")
        await wait_converged(cluster, 5)
        others = [n for n in cluster.servers if n != leader.name]
        minority = [leader.name, others[0]]
        majority = others[1:]
        terms = {n: cluster.node(n).core.term for n in minority}  # type: ignore[union-attr]
        commits = {n: cluster.node(n).core.commit_index for n in minority}  # type: ignore[union-attr]
        cluster.partition([minority, majority])

        # A write sent to the old leader inside the minority can never commit.
        async def doomed_write() -> None:
            msg = await expect_rpc_error(kv_put(leader, "doomed", b"x"))
            assert msg, f"seed={seed}"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(doomed_write)
            new = await cluster.wait_for_leader(within=4 * et, exclude={leader.name})
            assert new.name in majority, f"seed={seed}: leader {new.name} outside the majority"
            for i in range(5):
                await kv_put(new, f"maj/{i}", b"v")
            await trio.sleep(6 * et)  # long enough for the minority to have tried elections

        # The minority: no leader (the old one stepped down), no new commits, and pre-vote kept
        # its terms where they were.
        assert leaders_in(cluster, minority) == [], f"seed={seed}: {describe(cluster)}"
        for n in minority:
            core = cluster.node(n).core
            assert core is not None
            assert core.commit_index == commits[n], f"seed={seed}: {n} committed in the minority"
            assert core.term == terms[n], f"seed={seed}: {n} term rose {terms[n]}->{core.term}"
        assert local_value(cluster.node(minority[1]), "maj/0") is None, f"seed={seed}"
        # The majority elected and committed.
        assert all(local_value(cluster.node(n), "maj/4") == b"v" for n in majority), (
            f"seed={seed}: {describe(cluster)}"
        )

        cluster.heal()
        # Autopilot may have removed the failed minority servers meanwhile; they come back once
        # serf reconnects them (ReconnectInterval 30 s) and the leader's reconcile re-adds them.
        await wait_converged(cluster, 60)
        sigs = {log_signature(n) for n in cluster.servers.values()}
        assert len(sigs) == 1, f"seed={seed}: {sigs}"
        for node in cluster.servers.values():
            assert local_value(node, "maj/4") == b"v", f"seed={seed}: {node.name}"
            # The minority's uncommitted write was truncated away everywhere.
            assert local_value(node, "doomed") is None, f"seed={seed}: {node.name}"
        assert cluster.leader() is not None

    _, log = virtual(spec, body)
    partitions = log.of_kind("partition")
    assert len(partitions) == 1 and len(partitions[0].fields["groups"]) == 2, f"seed={seed}"
    assert all(
        isinstance(h, str) and h.startswith("dc1-")
        for g in partitions[0].fields["groups"]
        for h in g
    ), partitions
    assert log.of_kind("heal"), f"seed={seed}: heal not logged"
    assert log.of_kind("leader_lost"), f"seed={seed}: old leader never stepped down"


# ---- forwarding ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_follower_forwards_write_to_leader(seed: int) -> None:
    spec = ClusterSpec(seed=seed, raft_multiplier=1)

    async def body(cluster: Cluster) -> None:
        leader = await cluster.wait_for_leader(within=10)
        await wait_until(lambda: len(cluster.followers()) == 2, 5, "two followers")
        follower = cluster.followers()[0]
        calls_before = cluster.net.stats[follower.address]["calls_out"]
        reply = await follower.rpc(
            "KVS.Apply", {"Op": "set", "DirEnt": {"Key": "fwd", "Value": b"hello"}}
        )
        assert reply["Result"] is True, f"seed={seed}: {reply}"
        assert cluster.net.stats[follower.address]["calls_out"] > calls_before, (
            f"seed={seed}: the follower did not forward"
        )
        # Readable on the leader, from its own state machine and through a read RPC.
        assert local_value(leader, "fwd") == b"hello", f"seed={seed}"
        assert await kv_get(leader, "fwd") == b"hello", f"seed={seed}"
        # A default read on the follower is forwarded too.
        assert await kv_get(follower, "fwd") == b"hello", f"seed={seed}"

    virtual(spec, body)


@pytest.mark.parametrize(("hold", "seed"), [(0.5, 11), (7.0, 12)])
def test_no_quorum_forwarded_call_fails_after_hold_timeout(hold: float, seed: int) -> None:
    """hold 7.0 is Consul's default rpc_hold_timeout (ClusterSpec's default)."""
    spec = ClusterSpec(seed=seed, raft_multiplier=1, rpc_hold_timeout=hold)
    if hold == 7.0:
        spec = ClusterSpec(seed=seed, raft_multiplier=1)
        assert spec.rpc_hold_timeout == 7.0

    async def body(cluster: Cluster) -> float:
        leader = await cluster.wait_for_leader(within=10)
        await wait_converged(cluster, 5)
        survivor = next(n for n in cluster.servers.values() if n is not leader)
        for node in list(cluster.servers.values()):
            if node is not survivor:
                cluster.kill(node.name)
        start = trio.current_time()
        msg = await expect_rpc_error(kv_put(survivor, "k", b"v"))
        took = trio.current_time() - start
        assert msg == ERR_NO_LEADER, f"seed={seed}: {msg!r}"
        # Reads without AllowStale are held and fail the same way.
        start_read = trio.current_time()
        msg = await expect_rpc_error(kv_get(survivor, "k"))
        assert msg == ERR_NO_LEADER, f"seed={seed}: read {msg!r}"
        read_took = trio.current_time() - start_read
        assert hold - 1e-9 <= read_took <= hold + 0.05, f"seed={seed}: read held {read_took:.4f}s"
        return took

    took, log = virtual(spec, body)
    # (1e-9: the hold is a deadline; subtracting two virtual times may land one ulp short)
    assert hold - 1e-9 <= took <= hold + 0.05, f"seed={seed}: held {took:.4f}s, hold {hold}s"
    assert len(log.of_kind("kill")) == 2, f"seed={seed}"


# ---- restart and catch-up --------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_restarted_follower_catches_up_from_the_log(seed: int) -> None:
    spec = ClusterSpec(seed=seed, raft_multiplier=1)

    async def body(cluster: Cluster) -> str:
        leader = await cluster.wait_for_leader(within=10)
        await wait_until(lambda: len(cluster.followers()) == 2, 5, "two followers")
        follower = cluster.followers()[0]
        cluster.kill(follower.name)
        for i in range(20):
            await kv_put(leader, f"k/{i}", str(i).encode())
        assert follower.core is None or not follower.running
        await cluster.restart(follower.name)
        await wait_converged(cluster, 10)
        assert local_value(follower, "k/19") == b"19", f"seed={seed}"
        return follower.name

    name, log = virtual(spec, body)
    assert events_of(log, "kill", server=name) and events_of(log, "restart", server=name), (
        f"seed={seed}"
    )
    assert not [e for e in log.of_kind("install_snapshot") if e.node == name], (
        f"seed={seed}: no snapshot was needed"
    )
    starts = [e for e in log.of_kind("server_started") if e.node == name]
    assert [e.fields["incarnation"] for e in starts] == [1, 2], f"seed={seed}"


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_kill_then_immediate_restart(seed: int) -> None:
    """``kill`` then ``restart`` with no checkpoint in between (a scenario step "kill all servers"
    followed by "restart them"): the new incarnation must be running and rejoin."""
    spec = ClusterSpec(seed=seed, raft_multiplier=1)

    async def body(cluster: Cluster) -> None:
        await cluster.wait_for_leader(within=10)
        await wait_converged(cluster, 5)
        victim = cluster.followers()[0]
        cluster.kill(victim.name)
        await cluster.restart(victim.name)
        await trio.sleep(1)
        assert victim.running, f"seed={seed}: restarted server reports down: {describe(cluster)}"
        leader = await cluster.wait_for_leader(within=10)
        await kv_put(leader, "after", b"1")
        await wait_converged(cluster, 10)
        assert local_value(victim, "after") == b"1", f"seed={seed}"

    virtual(spec, body)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_restarted_follower_behind_compacted_log_gets_install_snapshot(seed: int) -> None:
    spec = ClusterSpec(
        seed=seed, raft_multiplier=1, snapshot_threshold=8, trailing_logs=4, snapshot_interval=0.2
    )

    async def body(cluster: Cluster) -> dict[str, int | str]:
        leader = await cluster.wait_for_leader(within=10)
        await wait_converged(cluster, 5)
        follower = cluster.followers()[0]
        assert follower.core is not None
        behind_at = follower.core.last_index
        cluster.kill(follower.name)
        for i in range(40):
            await kv_put(leader, f"k/{i}", str(i).encode())
        assert leader.core is not None

        # The leader compacts its log past what the follower has, at its next snapshot check
        # (every random 0.2-0.4 s).
        core = leader.core
        await wait_until(lambda: core.first_index > behind_at + 1, 2, f"seed={seed}: a compaction")
        await cluster.restart(follower.name)
        await wait_converged(cluster, 10)
        for i in range(40):
            assert local_value(follower, f"k/{i}") == str(i).encode(), f"seed={seed}: k/{i}"
        return {"name": follower.name, "behind_at": behind_at, "commit": leader.core.commit_index}

    out, log = virtual(spec, body)
    installs = [e for e in log.of_kind("install_snapshot") if e.node == out["name"]]
    assert len(installs) >= 1, f"seed={seed}: no install_snapshot event for {out['name']}"
    index = installs[0].fields["index"]
    assert out["behind_at"] < index <= out["commit"], f"seed={seed}: snapshot index {index} {out}"
    assert log.of_kind("snapshot"), f"seed={seed}: the leader never snapshotted"


# ---- pause / one-way block / loss / delay ----------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_pause_leader_then_resume(seed: int) -> None:
    spec = ClusterSpec(seed=seed, raft_multiplier=1)

    async def body(cluster: Cluster) -> str:
        et = cluster.raft_config.election_timeout
        old = await cluster.wait_for_leader(within=10)
        assert old.core is not None
        old_term = old.core.term
        cluster.pause(old.name)
        new = await cluster.wait_for_leader(within=3 * et, exclude={old.name})
        assert new.core is not None and new.core.term > old_term, f"seed={seed}"
        # A paused server processes nothing: its term is frozen while paused.
        assert old.core.term == old_term, f"seed={seed}"
        await kv_put(new, "during-pause", b"1")
        cluster.resume(old.name)
        await wait_converged(cluster, 5 * et)
        assert old.core.role is Role.FOLLOWER, f"seed={seed}: {describe(cluster)}"
        assert local_value(old, "during-pause") == b"1", f"seed={seed}"
        return old.name

    name, log = virtual(spec, body)
    assert events_of(log, "pause", server=name) and events_of(log, "resume", server=name), (
        f"seed={seed}"
    )


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_server_killed_while_paused_stays_dead_after_resume(seed: int) -> None:
    """Resuming a server that was killed while paused must not bring any of it back: no gossip,
    no Raft traffic from its addresses; and the work it had queued while paused is discarded
    without "coroutine was never awaited" warnings."""
    spec = ClusterSpec(seed=seed, raft_multiplier=1)

    async def body(cluster: Cluster) -> tuple[int, int, int, int]:
        await cluster.wait_for_leader(within=10)
        await trio.sleep(2)
        follower = next(n for n in cluster.servers.values() if not n.is_leader())
        assert follower.lan_pool is not None
        lan, rpc = follower.lan_pool.address, follower.address
        cluster.pause(follower.name)
        await trio.sleep(1)  # heartbeats and gossip queue up for the paused server
        cluster.kill(follower.name)
        await trio.sleep(1)
        stats = cluster.net.stats
        before = (stats[lan]["datagrams_out"], stats[rpc]["connections_dialed"])
        cluster.resume(follower.name)
        await trio.sleep(20)
        return (*before, stats[lan]["datagrams_out"], stats[rpc]["connections_dialed"])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (gossip_before, raft_before, gossip_after, raft_after), _ = virtual(spec, body)
        gc.collect()
    assert gossip_after == gossip_before, f"seed={seed}: the dead server gossiped after resume"
    assert raft_after == raft_before, f"seed={seed}: the dead server sent Raft messages"
    never_awaited = [w for w in caught if "never awaited" in str(w.message)]
    assert not never_awaited, f"seed={seed}: {never_awaited[0].message}"


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_one_way_block_leader_to_follower(seed: int) -> None:
    """The follower stops hearing the leader; pre-vote and leader stickiness keep the leader."""
    spec = ClusterSpec(seed=seed, raft_multiplier=1)

    async def body(cluster: Cluster) -> tuple[str, str]:
        et = cluster.raft_config.election_timeout
        leader = await cluster.wait_for_leader(within=10)
        await wait_converged(cluster, 5)
        deaf, other = cluster.followers()
        assert leader.core is not None and deaf.core is not None
        term = leader.core.term
        commit_before = deaf.core.commit_index
        cluster.block(leader.name, deaf.name)
        for i in range(5):
            await kv_put(leader, f"b/{i}", b"v")
        await trio.sleep(6 * et)
        assert cluster.leader() is leader, f"seed={seed}: {describe(cluster)}"
        assert leader.core.term == term, f"seed={seed}: the blocked follower disrupted the term"
        assert deaf.core.term == term, f"seed={seed}: pre-vote should keep the term"
        assert deaf.core.commit_index == commit_before, f"seed={seed}"
        assert local_value(other, "b/4") == b"v", f"seed={seed}"
        assert cluster.net.stats[leader.address]["dropped_by_fault"] > 0 or (
            cluster.net.stats[deaf.address]["dropped_by_fault"] > 0
        ), f"seed={seed}: {dict(cluster.net.stats[leader.address])}"
        cluster.heal()
        await wait_converged(cluster, 5 * et)
        assert local_value(deaf, "b/4") == b"v", f"seed={seed}"
        return leader.name, deaf.name

    (src, dst), log = virtual(spec, body)
    assert events_of(log, "block", src=src, dst=dst), f"seed={seed}: {log.of_kind('block')}"


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_loss_and_delay(seed: int) -> None:
    spec = ClusterSpec(seed=seed, raft_multiplier=1)

    async def body(cluster: Cluster) -> None:
        et = cluster.raft_config.election_timeout
        leader = await cluster.wait_for_leader(within=10)
        await wait_converged(cluster, 5)
        # Delay: every message out of the leader takes 100 ms more; a write needs a round trip.
        cluster.set_delay(leader.name, "*", 0.1)
        start = trio.current_time()
        await kv_put(leader, "slow", b"1")
        took = trio.current_time() - start
        assert took >= 0.1, f"seed={seed}: write took {took:.4f}s under a 100 ms delay"
        cluster.set_delay(leader.name, "*", 0.0)
        # Loss: 20% of all messages dropped. The cluster keeps a leader and keeps committing.
        cluster.set_loss("*", "*", 0.2)
        failures: list[str] = []
        for i in range(10):
            with trio.fail_after(10 * et):
                # A write under loss may fail (leadership lost); retry on the current leader.
                while True:
                    current = await cluster.wait_for_leader(within=10 * et)
                    try:
                        await kv_put(current, f"lossy/{i}", b"v")
                        break
                    except RpcError as exc:
                        failures.append(exc.message)
                        await trio.sleep(0.1)
        assert len(failures) < 10, f"seed={seed}: too many failed writes under 20% loss: {failures}"
        cluster.set_loss("*", "*", 0.0)
        await wait_converged(cluster, 10 * et)
        for node in cluster.servers.values():
            assert local_value(node, "lossy/9") == b"v", f"seed={seed}: {node.name}"

    _, log = virtual(spec, body)
    assert [e.fields["seconds"] for e in log.of_kind("delay")] == [0.1, 0.0], f"seed={seed}"
    assert [e.fields["p"] for e in log.of_kind("loss")] == [0.2, 0.0], f"seed={seed}"
    assert log.of_kind("delay")[0].fields["dst"] == "*", f"seed={seed}"


# ---- graceful stop ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_graceful_stop_removes_server_from_configuration(seed: int) -> None:
    spec = ClusterSpec(seed=seed, raft_multiplier=1)

    async def body(cluster: Cluster) -> str:
        leader = await cluster.wait_for_leader(within=10)
        await wait_converged(cluster, 5)
        leaving = cluster.followers()[0]
        await cluster.stop(leaving.name)
        assert not leaving.running, f"seed={seed}"
        for node in cluster.servers.values():
            if node is leaving:
                continue
            assert node.core is not None
            await wait_until(
                lambda node=node: node.core.latest_configuration.get(leaving.server_id) is None,
                5,
                f"{node.name} to drop {leaving.name} from its configuration",
            )
        reply = await leader.rpc("Operator.RaftGetConfiguration", {})
        ids = {s["ID"] for s in reply["Servers"]}
        assert leaving.server_id not in ids and len(ids) == 2, f"seed={seed}: {reply}"
        # The two remaining servers are a full quorum of the new configuration: writes commit.
        await kv_put(leader, "after-stop", b"1")
        peers = await leader.rpc("Status.Peers", {})
        assert leaving.address not in peers, f"seed={seed}: {peers}"
        return leaving.name

    name, log = virtual(spec, body)
    assert events_of(log, "stop", server=name), f"seed={seed}"
    assert not log.of_kind("stop_remove_failed"), f"seed={seed}"
    assert log.of_kind("config_change"), f"seed={seed}"
