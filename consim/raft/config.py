"""Raft timing and sizing knobs (hashicorp/raft ``Config``), in seconds.

Consul multiplies the base timings by ``raft_multiplier`` (default 5; production advice 1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

# Consul's default raft_multiplier.
DEFAULT_MULTIPLIER = 5
# hashicorp/raft's ValidateConfig refuses a shorter SnapshotInterval ("Snapshot interval is too low").
MIN_SNAPSHOT_INTERVAL = 0.005


def snapshot_interval_error(seconds: float) -> str | None:
    """Why ``seconds`` is not a usable snapshot interval, or None (0 is consim's "after every
    apply"; anything else must be at least hashicorp's 5 ms: shorter checks only burn CPU)."""
    if seconds == 0 or seconds >= MIN_SNAPSHOT_INTERVAL:
        return None
    return "must be 0s (check after every apply) or at least 5ms (Snapshot interval is too low)"


@dataclass(frozen=True)
class RaftConfig:
    heartbeat_timeout: float = 1.0 * DEFAULT_MULTIPLIER
    election_timeout: float = 1.0 * DEFAULT_MULTIPLIER
    leader_lease_timeout: float = 0.5 * DEFAULT_MULTIPLIER
    commit_timeout: float = 0.05
    max_append_entries: int = 64
    # Byte budget of one AppendEntries batch (entry data plus a per-entry allowance), well under
    # the network's 8 MiB frame limit (consim.net.framing.MAX_FRAME). An entry larger than the
    # budget still travels, alone in its batch. etcd/raft calls this MaxSizePerMsg.
    max_append_bytes: int = 1024 * 1024
    # InstallSnapshot sends the snapshot in chunks of at most this many bytes, one chunk in
    # flight per follower (hashicorp/raft streams it; etcd and others chunk).
    snapshot_chunk_size: int = 1024 * 1024
    snapshot_threshold: int = 8192
    # How often the threshold is checked (hashicorp/raft's SnapshotInterval, randomized in
    # [I, 2I) per check; Consul sets 30 s). 0 is consim's own "check after every apply"
    # (hashicorp refuses intervals under 5 ms): tests that want a snapshot at once use it.
    snapshot_interval: float = 30.0
    trailing_logs: int = 10240
    # How many AppendEntries batches the leader keeps in flight per follower (pipelining).
    max_inflight: int = 8
    # Pre-vote before an election (hashicorp/raft 1.7 and later; 1.1.2 lacks it, and answers a
    # pre-vote request by closing the connection: clusters with such nodes turn it off).
    pre_vote: bool = True

    def __post_init__(self) -> None:
        error = snapshot_interval_error(self.snapshot_interval)
        if error is not None:
            raise ValueError(f"snapshot_interval {self.snapshot_interval!r}: {error}")

    @classmethod
    def for_multiplier(cls, multiplier: float = DEFAULT_MULTIPLIER, **overrides: Any) -> RaftConfig:
        base = cls(
            heartbeat_timeout=1.0 * multiplier,
            election_timeout=1.0 * multiplier,
            leader_lease_timeout=0.5 * multiplier,
        )
        return replace(base, **overrides) if overrides else base

    @property
    def heartbeat_interval(self) -> float:
        # hashicorp/raft: the leader sends heartbeats every HeartbeatTimeout/10.
        return self.heartbeat_timeout / 10
