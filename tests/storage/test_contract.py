"""One contract suite, run against every RaftStorage implementation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consim.raft.types import (
    Configuration,
    EntryType,
    HardState,
    LogEntry,
    Server,
    Snapshot,
    SnapshotMeta,
)
from consim.storage.base import RaftStorage
from consim.storage.memory import MemoryStorage
from consim.storage.sqlite import SQLiteStorage

Opener = Callable[[], RaftStorage]


@pytest.fixture(params=["memory", "sqlite"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """A function that "reopens" the same storage, as a restarted server would."""
    opened: list[RaftStorage] = []
    if request.param == "memory":
        shared = MemoryStorage()

        def open_memory() -> RaftStorage:
            opened.append(shared)
            return shared

        yield open_memory
    else:

        def open_sqlite() -> RaftStorage:
            s = SQLiteStorage(tmp_path, "node1")
            opened.append(s)
            return s

        yield open_sqlite
    for s in opened:
        s.close()


def entries(first: int, last: int, term: int = 1) -> list[LogEntry]:
    return [
        LogEntry(i, term, EntryType.COMMAND, f"cmd{i}".encode()) for i in range(first, last + 1)
    ]


def snap(index: int, term: int, data: bytes = b"state") -> Snapshot:
    conf = Configuration((Server("a", "127.0.0.1:8300"), Server("b", "127.0.0.2:8300")))
    return Snapshot(SnapshotMeta(index, term, conf, 1), data)


def test_protocol(opener: Opener) -> None:
    assert isinstance(opener(), RaftStorage)


def test_load_empty(opener: Opener) -> None:
    state = opener().load()
    assert state.hard_state == HardState(0, None)
    assert state.snapshot is None
    assert state.entries == ()


def test_hard_state_round_trip(opener: Opener) -> None:
    s = opener()
    s.save_hard_state(HardState(3, "node-b"))
    assert s.load().hard_state == HardState(3, "node-b")
    s.save_hard_state(HardState(4, None))
    assert s.load().hard_state == HardState(4, None)


def test_append_and_load(opener: Opener) -> None:
    s = opener()
    s.append(entries(1, 3))
    s.append(
        [LogEntry(4, 2, EntryType.NOOP, b""), LogEntry(5, 2, EntryType.CONFIGURATION, b"\x90")]
    )
    got = s.load().entries
    assert [e.index for e in got] == [1, 2, 3, 4, 5]
    assert got[0] == LogEntry(1, 1, EntryType.COMMAND, b"cmd1")
    assert got[3].type is EntryType.NOOP and got[4].data == b"\x90"


def test_append_refuses_gap_and_overlap(opener: Opener) -> None:
    s = opener()
    s.append(entries(1, 3))
    with pytest.raises(ValueError):
        s.append(entries(5, 6))
    with pytest.raises(ValueError):
        s.append(entries(3, 4))  # overwrite needs truncate_suffix first
    assert [e.index for e in s.load().entries] == [1, 2, 3]


def test_truncate_suffix_then_append(opener: Opener) -> None:
    s = opener()
    s.append(entries(1, 5, term=1))
    s.truncate_suffix(3)
    assert [e.index for e in s.load().entries] == [1, 2]
    s.append(entries(3, 4, term=2))
    got = s.load().entries
    assert [(e.index, e.term) for e in got] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    s.truncate_suffix(100)  # past the end: nothing to delete
    assert len(s.load().entries) == 4
    s.truncate_suffix(1)
    assert s.load().entries == ()


def test_compact_prefix(opener: Opener) -> None:
    s = opener()
    s.append(entries(1, 10))
    s.compact_prefix(4)
    assert [e.index for e in s.load().entries] == list(range(5, 11))
    s.compact_prefix(20)  # past the end: log empty
    assert s.load().entries == ()
    s.append(entries(21, 22))  # an empty log may restart after the compacted point
    assert [e.index for e in s.load().entries] == [21, 22]


def test_snapshot_round_trip_and_order(opener: Opener) -> None:
    s = opener()
    s.save_hard_state(HardState(2, "a"))
    s.append(entries(1, 10, term=2))
    # The driver's order: hard state, truncate, append, snapshot, compact.
    s.save_snapshot(snap(6, 2, b"fsm@6"))
    s.compact_prefix(6)
    state = s.load()
    assert state.snapshot == snap(6, 2, b"fsm@6")
    assert [e.index for e in state.entries] == [7, 8, 9, 10]
    s.save_snapshot(snap(9, 2, b"fsm@9"))
    assert s.load().snapshot == snap(9, 2, b"fsm@9")


def test_load_skips_entries_covered_by_snapshot(opener: Opener) -> None:
    # A crash between save_snapshot and compact_prefix leaves covered entries behind.
    s = opener()
    s.append(entries(1, 8))
    s.save_snapshot(snap(5, 1))
    assert [e.index for e in s.load().entries] == [6, 7, 8]


def test_installed_snapshot_past_log_drops_stale_log(opener: Opener) -> None:
    s = opener()
    s.append(entries(1, 3))
    s.save_snapshot(snap(50, 4))
    state = s.load()
    assert state.snapshot is not None and state.snapshot.meta.index == 50
    assert state.entries == ()


def test_reopen_returns_same_state(opener: Opener) -> None:
    s = opener()
    s.save_hard_state(HardState(7, "c"))
    s.append(entries(1, 6, term=7))
    s.save_snapshot(snap(3, 7, b"\x00\x01binary"))
    s.compact_prefix(3)
    s.truncate_suffix(6)
    before = s.load()
    again = opener()
    after = again.load()
    assert after == before
    assert after.hard_state == HardState(7, "c")
    assert [e.index for e in after.entries] == [4, 5]
    # and the reopened storage keeps working
    again.append(entries(6, 6, term=8))
    assert opener().load().entries[-1] == LogEntry(6, 8, EntryType.COMMAND, b"cmd6")


def test_sqlite_layout_and_retention(tmp_path: Path) -> None:
    s = SQLiteStorage(tmp_path, "srv1")
    for i in (10, 20, 30):
        s.save_snapshot(snap(i, 1, f"fsm@{i}".encode()))
    raft = tmp_path / "srv1" / "raft"
    assert (raft / "raft.db").is_file()
    names = sorted(p.name for p in (raft / "snapshots").iterdir())
    assert names == ["1-20", "1-30"]
    assert (raft / "snapshots" / "1-30" / "state.bin").read_bytes() == b"fsm@30"
    assert (raft / "snapshots" / "1-30" / "meta.json").is_file()
    s.close()


def test_sqlite_crash_mid_snapshot_keeps_previous(tmp_path: Path) -> None:
    s = SQLiteStorage(tmp_path, "srv1")
    s.save_snapshot(snap(10, 1, b"good"))
    s.close()
    # Simulate a crash while writing a newer snapshot: only the temp dir exists, half written.
    tmp = tmp_path / "srv1" / "raft" / "snapshots" / ".tmp-2-20"
    tmp.mkdir()
    (tmp / "state.bin").write_bytes(b"half")
    reopened = SQLiteStorage(tmp_path, "srv1")
    state = reopened.load()
    assert state.snapshot is not None and state.snapshot.data == b"good"
    assert not tmp.exists()  # the leftover was cleaned
    reopened.close()


def test_sqlite_durable_settings(tmp_path: Path) -> None:
    s = SQLiteStorage(tmp_path, "srv1")
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s.close()
