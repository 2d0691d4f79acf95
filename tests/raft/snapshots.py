"""A shared harness setup: a follower that misses enough entries for the leader to snapshot past it."""

from __future__ import annotations

from consim.raft.config import RaftConfig
from consim.raft.harness import Harness, SimNode


def leader_snapshotted_past_a_crashed_follower() -> tuple[Harness, SimNode, str]:
    """3 servers (seed 3, snapshot threshold 20 checked after
    every apply, trailing logs 5); one follower crashed while the
    leader commits 60 entries, so the leader's log starts after the follower's: (harness, leader,
    crashed follower's id), the follower still down."""
    cfg = RaftConfig.for_multiplier(1, snapshot_threshold=20, trailing_logs=5, snapshot_interval=0)
    h = Harness(3, seed=3, config=cfg)
    h.run_for(5)
    ldr = h.leader()
    lagger = [i for i in h.ids if i != ldr.id][0]
    h.crash(lagger)
    for i in range(60):
        h.propose(b"c%d" % i)
        h.run_for(0.01)
    h.run_for(1)
    return h, ldr, lagger
