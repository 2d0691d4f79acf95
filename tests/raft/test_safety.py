"""Randomized safety + liveness over many seeds, a deliberately broken core, and determinism."""

import pytest

from consim.raft.core import RaftCore
from consim.raft.harness import random_run

SEEDS = range(400)


@pytest.mark.pre_vote(True)
@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed={s}")
def test_random_faults_keep_raft_safe_and_live(seed):
    # Any checker failure raises AssertionError whose text starts with "seed=N".
    random_run(seed, trace=False)


@pytest.mark.pre_vote(False)
@pytest.mark.parametrize("seed", range(400, 500), ids=lambda s: f"seed={s}")
def test_random_faults_without_pre_vote_keep_raft_safe_and_live(seed):
    """As a cluster with hashicorp/raft 1.1.2 nodes runs: elections without pre-vote."""
    random_run(seed, trace=False)


class VotesWithoutLogCheck(RaftCore):
    """Broken on purpose: grants (pre-)votes without the 'at least as up to date' check."""

    def _is_up_to_date(self, last_index: int, last_term: int) -> bool:
        return True


def test_harness_catches_broken_vote_rule():
    caught = []
    for seed in range(60):
        try:
            random_run(seed, core_factory=VotesWithoutLogCheck, trace=False)
        except AssertionError as exc:
            assert f"seed={seed}" in str(exc)
            caught.append((seed, str(exc)))
    assert caught, "the checker missed a core that votes without checking logs"
    assert any(
        "completeness" in msg or "state machine" in msg or "truncat" in msg for _, msg in caught
    )


@pytest.mark.parametrize("seed", [3, 17])
def test_same_seed_same_trace(seed):
    a = random_run(seed)
    b = random_run(seed)
    assert a.trace and a.trace_hash() == b.trace_hash()
    assert random_run(seed + 1).trace_hash() != a.trace_hash()
