"""Each test-only switch in consim.testing.faults breaks one safety rule; a campaign (or, for the
barrier, a targeted workload) catches it, and the same seeds are valid with the rule intact."""

from __future__ import annotations

import sys

import trio

from consim.check.campaign import CheckConfig, run_check
from consim.check.history import History
from consim.check.linearizability import check_linearizable
from consim.check.workload import Answer, _read_answer
from consim.cluster import Cluster
from consim.runtime import run_virtual
from consim.spec import ClusterSpec
from consim.testing import faults


def caught(config: CheckConfig, seeds: range) -> dict:
    for seed in seeds:
        result = run_check(config, seed).result
        print(f"seed {seed}: {result['verdict']} {result['invariants_failed']}")
        if result["verdict"] == "invalid":
            return result
    raise AssertionError(f"{config.broken} not caught in seeds {seeds.start}..{seeds.stop - 1}")


def intact(config: CheckConfig, seed: int) -> dict:
    clean = CheckConfig(**{**config.__dict__, "broken": ()})
    return run_check(clean, seed).result


def test_granting_every_vote_is_caught_by_the_raft_invariants() -> None:
    config = CheckConfig(
        consistency="consistent",
        nemesis=("partition", "kill", "pause"),
        duration=20,
        converge_within=10,
        broken=("grant_every_vote",),
    )
    result = caught(config, range(4, 10))
    # A leader elected without the committed entries: Raft's election restriction, broken.
    assert "leader_completeness" in result["invariants_failed"]
    assert "--break grant_every_vote" in result["command"]
    assert intact(config, result["seed"])["verdict"] == "valid"


def test_skipping_the_leader_lease_is_caught_by_linearizability() -> None:
    config = CheckConfig(
        consistency="default",
        nemesis=("partition:isolate-leader",),
        duration=20,
        broken=("skip_leader_lease",),
    )
    result = caught(config, range(1, 8))
    assert result["linearizability"]["verdict"] == "invalid"
    assert intact(config, result["seed"])["verdict"] == "valid"


async def _leader_change_then_consistent_read(cluster: Cluster) -> History:
    """A write acknowledged by a leader and one follower, the leader dies before the follower
    learns the commit, the other follower lagging: the follower wins, and a ?consistent read on
    it right after its election must not miss the acknowledged write."""
    h = History()

    def now() -> float:
        return round(trio.current_time(), 6)

    old = await cluster.wait_for_leader(within=10)
    new, lagging = [n for n in cluster.servers.values() if n is not old]
    await cluster.http(old.name, "PUT", "/v1/kv/k1", body=b"1")
    await trio.sleep(1)
    cluster.isolate(lagging.name)
    h.invoke(0, "write", "k1", 2, now(), server=old.name)
    _, _, body = await cluster.http(old.name, "PUT", "/v1/kv/k1", body=b"2")
    h.complete(0, "ok" if body.strip() == b"true" else "info", 2, now())
    cluster.kill(old.name)
    cluster.heal()
    while not new.is_leader():
        await trio.sleep(0.001)
    h.invoke(1, "read", "k1", None, now(), server=new.name)
    status, _, body = await cluster.http(new.name, "GET", "/v1/kv/k1?consistent")
    found = _read_answer(Answer(status, body))
    if found is None:
        h.complete(1, "fail", None, now(), error=body.decode())
    else:
        h.complete(1, "ok", found[0], now())
    return h


def test_skipping_the_barrier_before_consistent_reads_is_caught() -> None:
    for seed in (1, 2):
        spec = ClusterSpec(seed=seed, raft_multiplier=1)
        history, _ = run_virtual(spec, _leader_change_then_consistent_read)
        ok = check_linearizable(history)
        read = history.operations()[1]
        print(f"seed {seed} intact: {ok.verdict}, read {read.type} {read.extra.get('error')}")
        assert ok.verdict == "valid"
        assert read.type == "fail" and "Not ready to serve consistent reads" in read.extra["error"]
        with faults.broken("skip_consistent_barrier"):
            history, _ = run_virtual(spec, _leader_change_then_consistent_read)
        bad = check_linearizable(history)
        print(f"seed {seed} broken: {bad.verdict}", file=sys.stderr)
        assert bad.verdict == "invalid", bad.describe()
        assert history.operations()[1].output == 1  # the overwritten value
    assert not faults.skip_consistent_barrier


async def _write_on_a_leader_that_steps_down(cluster: Cluster) -> tuple[int, bytes] | None:
    """A write to a leader cut off from the others: it steps down after its lease. What does the
    client hear before the partition heals?"""
    leader = await cluster.wait_for_leader(within=10)
    await cluster.http(leader.name, "PUT", "/v1/kv/k1", body=b"1")
    await trio.sleep(1)
    cluster.isolate(leader.name)
    answer = None
    with trio.move_on_after(3 * cluster.raft_config.leader_lease_timeout + 1):
        status, _, body = await cluster.http(leader.name, "PUT", "/v1/kv/k1", body=b"2")
        answer = (status, body.strip())
    assert not leader.is_leader()
    cluster.heal()
    return answer


def test_a_leader_that_steps_down_fails_its_pending_writes_at_once() -> None:
    """hashicorp/raft fails every pending future when the leader steps down; with the waiters
    kept, the client hangs until the partition heals (or its own timeout)."""
    spec = ClusterSpec(seed=1, raft_multiplier=1)
    answer, _ = run_virtual(spec, _write_on_a_leader_that_steps_down)
    assert answer == (500, b"leadership lost while committing log"), answer
    with faults.broken("keep_waiters_on_step_down"):
        answer, _ = run_virtual(spec, _write_on_a_leader_that_steps_down)
    assert answer is None, answer
    assert not faults.keep_waiters_on_step_down


async def _write_overwritten_by_the_next_leader(cluster: Cluster) -> tuple[History, tuple]:
    """A leader appends a write it cannot replicate and is paused (so no lease check deposes
    it); the others elect a leader whose first entry takes the write's index; the old leader
    resumes, learns the new log and applies that entry at its write's index. The client must not
    be told the write succeeded: every server ends up without it."""
    h = History()

    def now() -> float:
        return round(trio.current_time(), 6)

    old = await cluster.wait_for_leader(within=10)
    await cluster.http(old.name, "PUT", "/v1/kv/k1", body=b"1")
    h.invoke(0, "write", "k1", 1, 0.0)
    h.complete(0, "ok", 1, now())
    await trio.sleep(1)
    assert old.core is not None
    index = old.core.last_index + 1
    cluster.isolate(old.name)
    answer: dict[str, tuple[int, bytes]] = {}

    async def write() -> None:
        h.invoke(1, "write", "k1", 2, now(), server=old.name)
        status, _, body = await cluster.http(old.name, "PUT", "/v1/kv/k1", body=b"2")
        answer["write"] = (status, body.strip())
        ok = (status, body.strip()) == (200, b"true")
        h.complete(1, "ok" if ok else "info", 2, now())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        while old.core.last_index < index:
            await trio.sleep(0.001)
        cluster.pause(old.name)
        new = await cluster.wait_for_leader(within=10, exclude={old.name})
        await trio.sleep(1)
        cluster.heal()
        await trio.sleep(1)
        cluster.resume(old.name)
    await trio.sleep(2)
    for process, node in enumerate(cluster.servers.values(), start=2):
        h.invoke(process, "read", "k1", None, now(), server=node.name)
        status, _, body = await cluster.http(node.name, "GET", "/v1/kv/k1?stale")
        found = _read_answer(Answer(status, body))
        assert found is not None, (status, body)
        h.complete(process, "ok", found[0], now())
    assert new.is_leader()
    return h, answer["write"]


def test_a_write_overwritten_by_the_next_leader_is_never_acknowledged() -> None:
    """Two rules keep it from being acknowledged: a leader fails its waiters when it steps down,
    and a waiter checks the term of the entry applied at its index. Each alone is enough here
    (docs/check.md says why the term check cannot matter while the first holds); break both and
    the client is told `true` for a write no server applied."""
    lost = (500, b"leadership lost while committing log")
    for seed in (1, 2):
        spec = ClusterSpec(seed=seed, raft_multiplier=1)
        for rules in ((), ("apply_waiter_ignores_term",), ("keep_waiters_on_step_down",)):
            with faults.broken(*rules):
                (history, answer), _ = run_virtual(spec, _write_overwritten_by_the_next_leader)
            verdict = check_linearizable(history).verdict
            print(f"seed {seed} {rules}: {answer} {verdict}")
            assert answer == lost and verdict == "valid", (rules, answer)
        with faults.broken("apply_waiter_ignores_term", "keep_waiters_on_step_down"):
            (history, answer), _ = run_virtual(spec, _write_overwritten_by_the_next_leader)
        bad = check_linearizable(history)
        print(f"seed {seed} both broken: {answer} {bad.verdict}", file=sys.stderr)
        assert answer == (200, b"true") and bad.verdict == "invalid", bad.describe()
    assert not faults.apply_waiter_ignores_term and not faults.keep_waiters_on_step_down
