"""Each Raft/gossip invariant checker passes a good log and fails a crafted bad one."""

from __future__ import annotations

from typing import Any

from consim.check import invariants as inv
from consim.check.campaign import CheckConfig, run_check
from consim.check.history import Operation


def ev(t: float, node: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"time": t, "node": node, "kind": kind, "fields": fields}


def applied(
    t: float,
    node: str,
    index: int,
    term: int = 1,
    *,
    inc: int = 1,
    commit: int | None = None,
    **kv: Any,
) -> dict[str, Any]:
    return ev(
        t,
        node,
        "applied",
        index=index,
        term=term,
        hash=f"h{index}-{term}-{kv.get('value', '')}",
        commit=index if commit is None else commit,
        incarnation=inc,
        **kv,
    )


def write_op(key: str, value: Any, typ: str = "ok", f: str = "write") -> Operation:
    return Operation(0, 1, f, key, value, typ, value, 1.0, 2.0)


def test_election_safety() -> None:
    good = [ev(1, "s1", "election_won", term=2), ev(5, "s2", "election_won", term=3)]
    assert inv.election_safety(good).ok
    bad = good + [ev(6, "s3", "election_won", term=3)]
    result = inv.election_safety(bad)
    assert not result.ok
    assert "term 3 has 2 leaders" in result.violations[0]


def test_state_machine_safety() -> None:
    good = [applied(1, "s1", 1), applied(1.1, "s2", 1), applied(2, "s2", 1, inc=2)]
    assert inv.state_machine_safety(good).ok
    bad = good + [applied(3, "s3", 1, term=2)]
    result = inv.state_machine_safety(bad)
    assert not result.ok and "index 1" in result.violations[0]


def test_leader_completeness() -> None:
    log = [applied(1, "s1", 1, term=1), applied(1, "s1", 2, term=1)]
    good = log + [ev(3, "s2", "leader_log", term=2, snapshot_index=0, runs=[[1, 2, 1], [3, 3, 2]])]
    assert inv.leader_completeness(good).ok
    compacted = log + [ev(3, "s2", "leader_log", term=2, snapshot_index=2, runs=[[3, 3, 2]])]
    assert inv.leader_completeness(compacted).ok
    missing = log + [ev(3, "s3", "leader_log", term=2, snapshot_index=0, runs=[[1, 1, 1]])]
    result = inv.leader_completeness(missing)
    assert not result.ok and "index 2 (term 1)" in result.violations[0]
    other_term = log + [
        ev(3, "s3", "leader_log", term=3, snapshot_index=0, runs=[[1, 1, 1], [2, 2, 2]])
    ]
    assert "has term 2 there" in inv.leader_completeness(other_term).violations[0]


def test_monotonic_indexes_allow_a_restart_to_reapply() -> None:
    good = [
        ev(0, "s1", "fsm_restored", index=0, incarnation=1),
        applied(1, "s1", 1),
        applied(2, "s1", 2),
        ev(3, "s1", "fsm_restored", index=0, incarnation=2),  # restarted: re-applies
        applied(4, "s1", 1, inc=2),
        ev(5, "s1", "fsm_restored", index=10, incarnation=2),  # installed a snapshot
        applied(6, "s1", 11, inc=2),
    ]
    assert inv.monotonic_indexes(good).ok
    back = good + [applied(7, "s1", 11, inc=2)]
    assert "applied index 11 after 11" in inv.monotonic_indexes(back).violations[0]
    commit_back = [applied(1, "s1", 1, commit=5), applied(2, "s1", 2, commit=3)]
    assert "commit index went back from 5 to 3" in inv.monotonic_indexes(commit_back).violations[0]
    beyond = [applied(1, "s1", 1, commit=0)]
    assert "beyond its commit index" in inv.monotonic_indexes(beyond).violations[0]


def test_acknowledged_writes_are_applied_and_in_the_final_state() -> None:
    log = [
        applied(1, "s1", 1, op="set", key="k1", value="7", result=True),
        applied(1, "s2", 1, op="set", key="k1", value="7", result=True),
        applied(2, "s1", 2, op="cas", key="k1", value="8", result=False),
        applied(2, "s2", 2, op="cas", key="k1", value="8", result=False),
    ]
    final = {"s1": {"k1": 7}, "s2": {"k1": 7}}
    assert inv.acknowledged_writes(log, [write_op("k1", 7)], final).ok
    lost = inv.acknowledged_writes(log, [write_op("k1", 9)], final)
    assert not lost.ok and "acknowledged write of 9" in lost.violations[0]
    # A cas the log says failed cannot have been acknowledged.
    cas = inv.acknowledged_writes(log, [write_op("k1", [7, 8], f="cas")], final)
    assert not cas.ok
    # A caught-up server holding something else than the log's last write.
    wrong = inv.acknowledged_writes(log, [], {"s1": {"k1": 7}, "s2": {"k1": 6}})
    assert "s2 holds 6 for k1" in wrong.violations[0]


def test_replicas_converge() -> None:
    assert inv.replicas_converge({"a": {"k": 1}, "b": {"k": 1}}, {"a": 5, "b": 5}).ok
    result = inv.replicas_converge({"a": {"k": 1}, "b": {"k": 2}}, {"a": 5, "b": 4})
    assert len(result.violations) == 2


def test_gossip_convergence() -> None:
    views = {"a": {"a": "alive", "b": "alive"}, "b": {"a": "alive", "b": "alive"}}
    ring = {"lan": {"keys": ["x"], "primary": "x"}, "wan": {"keys": ["x"], "primary": "x"}}
    assert inv.gossip_convergence(views, {"a": ring, "b": ring}).ok
    failed = {**views, "b": {"a": "failed", "b": "alive"}}
    assert "b sees a as failed" in inv.gossip_convergence(failed, {"a": ring}).violations[0]
    other = {"lan": {"keys": ["x", "y"], "primary": "y"}, "wan": ring["wan"]}
    assert (
        "lan keyrings differ"
        in inv.gossip_convergence(views, {"a": ring, "b": other}).violations[0]
    )


def test_keyring_acceptance() -> None:
    log = [ev(0, "a", "keyring_state", keys=["x"]), ev(1, "a", "gossip_accepted", key="x")]
    assert inv.keyring_acceptance(log).ok
    bad = log + [ev(2, "a", "gossip_accepted", key="y")]
    assert "under key y" in inv.keyring_acceptance(bad).violations[0]
    assert "nothing to check" in inv.keyring_acceptance([]).note


def test_a_real_run_records_what_the_invariants_need() -> None:
    run = run_check(CheckConfig(nemesis=("kill",), duration=12, interval=3), 3)
    kinds = {e.kind for e in run.events.events}
    assert {"applied", "fsm_restored", "leader_log", "election_won", "nemesis_start"} <= kinds
    results = run.result["invariants"]
    assert all(r["ok"] for r in results.values()), results
    assert results["leader_completeness"]["checked"] > 0  # a kill forced a later election
