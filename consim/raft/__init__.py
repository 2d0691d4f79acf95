"""Sans-IO Raft: the core state machine, its messages, peers.json recovery and a test harness."""

from consim.raft.config import RaftConfig
from consim.raft.core import NotLeader, Outbound, RaftCore, RaftError, RaftEvent, Ready, new_node_id

__all__ = [
    "NotLeader",
    "Outbound",
    "RaftConfig",
    "RaftCore",
    "RaftError",
    "RaftEvent",
    "Ready",
    "new_node_id",
]
