"""SQLite-backed :class:`~consim.storage.base.RaftStorage`, laid out like Consul's data directory.

``<data_dir>/<node>/raft/raft.db`` holds ``logs(idx, term, type, data)`` and ``stable(key, value)``
(current term, voted-for). WAL with ``synchronous=FULL`` makes every committed write durable when the
call returns. Snapshots live in ``raft/snapshots/<term>-<index>/{meta.json,state.bin}``; each is
written into a temporary directory, fsynced and renamed into place, so a crash mid-write leaves the
previous snapshot intact. Only the latest :data:`RETAIN_SNAPSHOTS` are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

from consim.raft.types import (
    EntryType,
    HardState,
    LogEntry,
    PersistentState,
    Snapshot,
    SnapshotMeta,
)
from consim.storage.base import RaftStorage
from consim.storage.memory import check_contiguous, log_after_snapshot

RETAIN_SNAPSHOTS = 2
_TMP_PREFIX = ".tmp-"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    type INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS stable (
    key TEXT PRIMARY KEY,
    value
);
"""


def _fsync_dir(path: Path) -> None:
    # A rename is only durable once the directory holding it is synced.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class SQLiteStorage(RaftStorage):
    def __init__(self, data_dir: Path, node_name: str) -> None:
        self.raft_dir = Path(data_dir) / node_name / "raft"
        self.snapshot_dir = self.raft_dir / "snapshots"
        self.db_path = self.raft_dir / "raft.db"
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: each statement (or explicit BEGIN..COMMIT) is its own durable transaction.
        self._db = sqlite3.connect(self.db_path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._clean_temp_snapshots()

    # -- reading ---------------------------------------------------------------------------------

    def load(self) -> PersistentState:
        rows = self._db.execute("SELECT key, value FROM stable").fetchall()
        stable = dict(rows)
        hard = HardState(
            current_term=int(stable.get("current_term", 0) or 0),
            voted_for=stable.get("voted_for"),
        )
        snapshot = self._latest_snapshot()
        entries = [
            LogEntry(idx, term, EntryType(typ), bytes(data))
            for idx, term, typ, data in self._db.execute(
                "SELECT idx, term, type, data FROM logs ORDER BY idx"
            )
        ]
        return PersistentState(hard, snapshot, log_after_snapshot(entries, snapshot))

    def _snapshot_dirs(self) -> list[tuple[int, int, Path]]:
        """Complete snapshot directories as (index, term, path), oldest first."""
        found = []
        for p in self.snapshot_dir.iterdir():
            if p.name.startswith(_TMP_PREFIX) or not p.is_dir():
                continue
            term_s, _, index_s = p.name.partition("-")
            if not (term_s.isdigit() and index_s.isdigit()):
                continue
            if (p / "meta.json").is_file() and (p / "state.bin").is_file():
                found.append((int(index_s), int(term_s), p))
        found.sort()
        return found

    def _latest_snapshot(self) -> Snapshot | None:
        dirs = self._snapshot_dirs()
        if not dirs:
            return None
        path = dirs[-1][2]
        meta = SnapshotMeta.from_wire(json.loads((path / "meta.json").read_text()))
        return Snapshot(meta, (path / "state.bin").read_bytes())

    # -- writing ---------------------------------------------------------------------------------

    def save_hard_state(self, state: HardState) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO stable(key, value) VALUES ('current_term', ?)",
                (state.current_term,),
            )
            self._db.execute(
                "INSERT OR REPLACE INTO stable(key, value) VALUES ('voted_for', ?)",
                (state.voted_for,),
            )

    def append(self, entries: list[LogEntry]) -> None:
        if not entries:
            return
        row = self._db.execute("SELECT MAX(idx) FROM logs").fetchone()
        check_contiguous(entries, row[0])
        with self._tx():
            self._db.executemany(
                "INSERT INTO logs(idx, term, type, data) VALUES (?, ?, ?, ?)",
                [(e.index, e.term, int(e.type), e.data) for e in entries],
            )

    def truncate_suffix(self, from_index: int) -> None:
        with self._tx():
            self._db.execute("DELETE FROM logs WHERE idx >= ?", (from_index,))

    def compact_prefix(self, through_index: int) -> None:
        with self._tx():
            self._db.execute("DELETE FROM logs WHERE idx <= ?", (through_index,))

    def save_snapshot(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        final = self.snapshot_dir / f"{meta.term}-{meta.index}"
        tmp = self.snapshot_dir / f"{_TMP_PREFIX}{meta.term}-{meta.index}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        _write_file(tmp / "state.bin", snapshot.data)
        _write_file(tmp / "meta.json", json.dumps(meta.to_wire(), sort_keys=True).encode())
        _fsync_dir(tmp)
        if final.exists():
            # Same term and index means same state; replace it (rmtree then rename is not atomic,
            # but the older retained snapshot still covers a crash in between).
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(self.snapshot_dir)
        # "Latest" is the one just saved (base.py); directories sort by (index, term), so any that
        # sort after it are stale (never happens in Raft, where snapshots only move forward).
        dirs = self._snapshot_dirs()
        key = (meta.index, meta.term)
        for index, term, path in dirs:
            if (index, term) > key:
                shutil.rmtree(path, ignore_errors=True)
        for _, _, old in self._snapshot_dirs()[:-RETAIN_SNAPSHOTS]:
            shutil.rmtree(old, ignore_errors=True)

    def close(self) -> None:
        self._db.close()

    # -- helpers ---------------------------------------------------------------------------------

    def _clean_temp_snapshots(self) -> None:
        # Leftovers of a crash mid-write: never complete, never used.
        for p in self.snapshot_dir.iterdir():
            if p.name.startswith(_TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
