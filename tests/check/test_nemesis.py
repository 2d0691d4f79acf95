"""The nemesis: topologies, and every fault kind recorded in the history and the event log."""

from __future__ import annotations

import itertools
import random

import pytest
import trio

from consim.check.history import History
from consim.check.nemesis import KINDS, PARTITIONS, Nemesis, majority_ring_cuts, parse_nemesis
from consim.cluster import Cluster
from consim.runtime import run_virtual
from consim.spec import ClusterSpec


@pytest.mark.parametrize("n", [3, 5, 7])
def test_majority_ring_every_server_sees_a_different_majority(n: int) -> None:
    ring = [f"s{i}" for i in range(n)]
    cut = {frozenset(p) for p in majority_ring_cuts(ring)}
    seen = {}
    for s in ring:
        seen[s] = frozenset(o for o in ring if o == s or frozenset((s, o)) not in cut)
        assert len(seen[s]) >= n // 2 + 1, (s, seen[s])
    assert len(set(seen.values())) == n or (n == 3 and len(set(seen.values())) == 3)
    # No two servers that see exactly the same majority.
    for a, b in itertools.combinations(ring, 2):
        assert seen[a] != seen[b]


def test_parse_nemesis() -> None:
    assert parse_nemesis("partition,kill") == ("partition", "kill")
    assert parse_nemesis("none") == ()
    assert parse_nemesis("partition:bridge") == ("partition:bridge",)
    with pytest.raises(ValueError, match="unknown nemesis explode"):
        parse_nemesis("kill,explode")
    with pytest.raises(ValueError, match="unknown nemesis partition:sideways"):
        parse_nemesis("partition:sideways")


async def _every_fault(cluster: Cluster) -> tuple[History, int]:
    await cluster.wait_for_leader(within=10)
    history = History()
    nemesis = Nemesis(
        cluster,
        history,
        kinds=KINDS,
        interval=3.0,
        rng=random.Random(5),
        clock=trio.current_time,
    )
    for kind in [*(f"partition:{s}" for s in PARTITIONS), *KINDS[1:]]:
        await nemesis.start(kind)
        await trio.sleep(3)
        await nemesis.stop()
        await trio.sleep(2)
    await nemesis.heal()
    with trio.move_on_after(60):
        while True:
            leader = await cluster.wait_for_leader(within=30)
            assert leader.core is not None
            voters = len(leader.core.configuration.voters())
            if voters == 3:
                break
            await trio.sleep(0.5)
    return history, voters


def test_every_fault_is_in_the_history_and_the_event_log() -> None:
    spec = ClusterSpec(seed=3, raft_multiplier=1)
    (history, voters), events = run_virtual(spec, _every_fault)
    starts = [e.value for e in history.nemesis_events() if e.f == "start"]
    stops = [e.value for e in history.nemesis_events() if e.f == "stop"]
    assert [s["fault"] for s in starts] == [
        *PARTITIONS,
        "kill",
        "pause",
        "loss",
        "delay",
        "remove-peer",
    ]
    assert len(stops) == len(starts) + 1 and stops[-1]["fault"] == "heal"
    log = [e for e in events.events if e.kind in ("nemesis_start", "nemesis_stop")]
    assert len(log) == len(starts) + len(stops)
    kinds = {e.kind for e in events.events}
    # The fault model's and the cluster's own events are there too.
    assert {
        "partition",
        "block",
        "heal",
        "kill",
        "restart",
        "pause",
        "resume",
        "loss",
        "delay",
    } <= kinds
    removal = starts[-1]
    assert removal["status"] == 200, removal
    # The removed server came back as a voter (restart + the leader's reconcile).
    assert voters == 3
