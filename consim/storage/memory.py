"""In-memory :class:`~consim.storage.base.RaftStorage`.

A simulated crash discards the server's volatile state but keeps this object, so ``load()`` hands
back exactly what was persisted through it, like a disk would.
"""

from __future__ import annotations

from consim.raft.types import HardState, LogEntry, PersistentState, Snapshot
from consim.storage.base import RaftStorage


def check_contiguous(entries: list[LogEntry], last_index: int | None) -> None:
    """Refuse an append that would leave a gap or overwrite without a prior truncation.

    ``last_index`` is the index of the last stored entry, or None when the log is empty (then the
    first index is free: after compaction or a snapshot install the log restarts anywhere).
    """
    if not entries:
        return
    if last_index is not None and entries[0].index != last_index + 1:
        raise ValueError(
            f"append at index {entries[0].index} does not continue the log (last {last_index})"
        )
    # Entry k must be first + k; the first one that is not is where the run breaks. (The
    # comparison runs in C: every append of every server comes here.)
    first = entries[0].index
    indexes = [e.index for e in entries]
    if indexes != list(range(first, first + len(indexes))):
        for k, index in enumerate(indexes):
            if index != first + k:
                raise ValueError(f"appended entries not contiguous at index {index}")


def log_after_snapshot(entries: list[LogEntry], snapshot: Snapshot | None) -> tuple[LogEntry, ...]:
    """The contiguous log after the snapshot, as :class:`PersistentState` promises.

    Entries covered by the snapshot are left out: a crash between ``save_snapshot`` and
    ``compact_prefix`` may leave them behind, and they are redundant. A run that does not start
    right after the snapshot is stale (the snapshot was installed past it) and is dropped.
    """
    if snapshot is None:
        return tuple(entries)
    floor = snapshot.meta.index
    kept = [e for e in entries if e.index > floor]
    if kept and kept[0].index != floor + 1:
        return ()
    return tuple(kept)


class MemoryStorage(RaftStorage):
    def __init__(self) -> None:
        self._hard_state = HardState()
        self._entries: list[LogEntry] = []
        self._snapshot: Snapshot | None = None
        self._closed = False

    def load(self) -> PersistentState:
        self._closed = False  # a restarted server reopens the same "disk"
        return PersistentState(
            hard_state=self._hard_state,
            snapshot=self._snapshot,
            entries=log_after_snapshot(self._entries, self._snapshot),
        )

    def save_hard_state(self, state: HardState) -> None:
        self._hard_state = state

    def append(self, entries: list[LogEntry]) -> None:
        last = self._entries[-1].index if self._entries else None
        check_contiguous(entries, last)
        self._entries.extend(entries)

    def truncate_suffix(self, from_index: int) -> None:
        # The stored log is contiguous, so a slice by offset is exact (and O(k), not O(n)).
        if self._entries:
            del self._entries[max(0, from_index - self._entries[0].index) :]

    def compact_prefix(self, through_index: int) -> None:
        if self._entries:
            del self._entries[: max(0, through_index - self._entries[0].index + 1)]

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def close(self) -> None:
        self._closed = True
