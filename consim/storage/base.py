"""The one storage interface the Raft driver writes through (hashicorp/raft's LogStore + StableStore +
SnapshotStore, folded into one small seam).

The Raft core never touches storage: it returns a ``Ready`` batch saying what to persist, and the
server driver calls these methods, in this order, before sending any message of the batch:
``save_hard_state`` -> ``truncate_suffix`` -> ``append`` -> ``save_snapshot`` -> ``compact_prefix``.

Two implementations pass the same contract tests: :class:`consim.storage.memory.MemoryStorage`
(survives a simulated crash because the object outlives the server's volatile state) and
:class:`consim.storage.sqlite.SQLiteStorage` (``<data-dir>/<node>/raft/raft.db`` plus
``raft/snapshots/``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from consim.raft.types import HardState, LogEntry, PersistentState, Snapshot


@runtime_checkable
class RaftStorage(Protocol):
    def load(self) -> PersistentState:
        """Everything durable: term/vote, latest snapshot, and the log after it."""
        ...

    def save_hard_state(self, state: HardState) -> None:
        """Durably record current term and vote (before any vote or answer leaves)."""
        ...

    def append(self, entries: list[LogEntry]) -> None:
        """Append entries; their indexes continue the stored log (after any truncation)."""
        ...

    def truncate_suffix(self, from_index: int) -> None:
        """Delete every entry with index >= from_index (a conflicting suffix)."""
        ...

    def compact_prefix(self, through_index: int) -> None:
        """Delete every entry with index <= through_index (covered by a snapshot)."""
        ...

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep this snapshot as the latest one (older ones may be dropped)."""
        ...

    def close(self) -> None: ...
