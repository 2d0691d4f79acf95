"""The replicated state machine: one table per module, dispatched by command ``Type``.

Pure and deterministic: ``StateMachine.apply`` takes a committed command (msgpack, a dict with a
``Type``) and returns its result; ``snapshot`` / ``restore`` serialise every table (Raft snapshots
hold exactly these bytes). As Consul's state store, the tables share one index table
(``indexes``: table name -> Raft index of its last change) that blocking queries wait on.

Adding a table is its module here and ONE line in ``TABLES`` below. A table is a ``Table``
subclass with:

- ``name``: its key in the snapshot (and in ``StateMachine.tables``);
- ``commands``: command ``Type`` -> the name of its method ``(index, command) -> result``;
- ``snapshot() -> msgpack-able`` and ``restore(obj)``;
- ``self.store``: the ``StateMachine``, to reach another table (``self.store.table(KVTable)``)
  for effects that span tables, as Consul's transactions do (an invalidated session releases
  its KV locks, a deregistered node takes its sessions with it).

Reads go through the table objects (``fsm.kvs.get(key)``, ``fsm.table(MyTable).query(...)``);
each returns the index a blocking query compares with ``MinQueryIndex``.

``StateMachine.now()`` is the applying server's clock, for the one piece of state Consul keeps
outside Raft: the lock-delay of keys whose session was invalidated (never in snapshots; only
the leader's copy is consulted, before a lock is proposed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

import msgpack

from consim.raft.types import EntryType, LogEntry
from consim.server.state.acl import ACLTable
from consim.server.state.autopilot import AutopilotTable
from consim.server.state.base import Table, encode_command
from consim.server.state.catalog import CatalogTable
from consim.server.state.config_entries import ConfigEntryTable
from consim.server.state.coordinates import CoordinateTable
from consim.server.state.kvs import DirEntry, KVTable
from consim.server.state.sessions import SessionTable
from consim.server.state.txn import TxnTable

# The registry: one line per table. Order is the snapshot's and the restore's.
TABLES: tuple[type[Table], ...] = (
    KVTable,
    AutopilotTable,
    CatalogTable,
    SessionTable,
    ACLTable,
    TxnTable,
    CoordinateTable,
    ConfigEntryTable,
)

# Snapshot layout version: 1 (no "version" key) was KV + autopilot at the top level.
SNAPSHOT_VERSION = 2

T = TypeVar("T", bound=Table)

__all__ = [
    "TABLES",
    "ACLTable",
    "AutopilotTable",
    "CatalogTable",
    "ConfigEntryTable",
    "CoordinateTable",
    "DirEntry",
    "KVTable",
    "SessionTable",
    "StateMachine",
    "Table",
    "encode_command",
]


_unpackb = msgpack.unpackb


def _zero() -> float:
    return 0.0


class StateMachine:
    """Every table, the shared index table and the last applied index."""

    COMMANDS: ClassVar[dict[str, tuple[str, str]]] = {
        kind: (cls.name, method) for cls in TABLES for kind, method in cls.commands.items()
    }

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.now: Callable[[], float] = clock or _zero
        self.last_applied = 0
        self.indexes: dict[str, int] = {}
        self.tables: dict[str, Table] = {cls.name: cls(self) for cls in TABLES}
        # command Type -> the bound method applying it (looked up once, not per command)
        self._handlers: dict[str, Callable[[int, dict[str, Any]], Any]] = {
            kind: getattr(self.tables[name], method)
            for kind, (name, method) in self.COMMANDS.items()
        }
        # The plain KV set, applied from its bytes (``KVTable.apply_plain_set``).
        self._plain_set = self.kvs.apply_plain_set

    # ---- tables ------------------------------------------------------------------------------
    def table(self, cls: type[T]) -> T:
        table = self.tables[cls.name]
        assert isinstance(table, cls)
        return table

    @property
    def kvs(self) -> KVTable:
        return self.table(KVTable)

    @property
    def catalog(self) -> CatalogTable:
        return self.table(CatalogTable)

    @property
    def sessions(self) -> SessionTable:
        return self.table(SessionTable)

    def bump(self, index: int, *names: str) -> None:
        """Tables ``names`` changed at ``index`` (Consul's index table)."""
        for name in names:
            self.indexes[name] = index

    def max_index(self, *names: str) -> int:
        """Consul's maxIndex: the latest change among ``names``."""
        return max((self.indexes.get(n, 0) for n in names), default=0)

    # ---- apply -------------------------------------------------------------------------------
    def apply(self, index: int, data: bytes, command: Any = None) -> Any:
        """Apply one committed command; returns the result handed back to the proposer.
        ``command``: ``data`` already decoded (the proposer's own dict, on the leader)."""
        self.last_applied = index
        if command is None:
            if self._plain_set(index, data):
                return True
            return self._apply_bytes(index, data)
        if not isinstance(command, dict):
            return {"Error": "malformed command"}
        kind = command.get("Type")
        handler = self._handlers.get(kind) if type(kind) is str else None
        if handler is None:
            return {"Error": f"unknown command type {kind!r}"}
        try:
            return handler(index, command)
        except (TypeError, ValueError, AttributeError) as exc:
            # A command of the wrong shape (only a foreign or buggy leader writes one): every
            # server refuses it the same way, so the state machines stay the same.
            return {"Error": f"malformed command: {exc}"}

    def _apply_bytes(self, index: int, data: bytes) -> Any:
        """``apply`` of a command that is not the plain set: decoded by msgpack."""
        try:
            command = _unpackb(data, raw=False)
        except Exception:
            command = None
        if not isinstance(command, dict):  # (None would send ``apply`` back here)
            self.last_applied = index
            return {"Error": "malformed command"}
        return self.apply(index, data, command)

    def apply_entries(self, entries: Iterable[LogEntry]) -> None:
        """Apply committed log entries whose results nobody waits for (a follower's batch):
        ``apply`` of every command, in one loop."""
        command = EntryType.COMMAND
        plain_set = self._plain_set
        for entry in entries:
            if entry.type is command:
                self.last_applied = index = entry.index
                if not plain_set(index, entry.data):
                    self._apply_bytes(index, entry.data)
            else:
                self.last_applied = entry.index

    # ---- compatibility with the KV + autopilot machine's names ---------------------------------
    @property
    def kv(self) -> dict[str, DirEntry]:
        return self.kvs.entries

    @property
    def kv_index(self) -> int:
        return self.indexes.get(KVTable.name, 0)

    @property
    def autopilot(self) -> dict[str, Any]:
        return self.table(AutopilotTable).config

    @property
    def autopilot_create_index(self) -> int:
        return self.table(AutopilotTable).create_index

    @property
    def autopilot_modify_index(self) -> int:
        return self.table(AutopilotTable).modify_index

    def get(self, key: str) -> tuple[int, DirEntry | None]:
        return self.kvs.get(key)

    def list(self, prefix: str) -> tuple[int, list[DirEntry]]:
        return self.kvs.list(prefix)

    def list_keys(self, prefix: str, separator: str) -> tuple[int, list[str]]:
        return self.kvs.list_keys(prefix, separator)

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        return msgpack.packb(
            {
                "version": SNAPSHOT_VERSION,
                "last_applied": self.last_applied,
                "indexes": dict(sorted(self.indexes.items())),
                "tables": {name: table.snapshot() for name, table in self.tables.items()},
            },
            use_bin_type=True,
        )

    @classmethod
    def restore(cls, data: bytes, clock: Callable[[], float] | None = None) -> StateMachine:
        obj = msgpack.unpackb(data, raw=False) if data else {}
        fsm = cls(clock)
        fsm.last_applied = int(obj.get("last_applied", 0))
        if "version" not in obj:
            # Version 1: {"kv": [...], "kv_index", "autopilot", "autopilot_*_index", ...}.
            fsm.indexes[KVTable.name] = int(obj.get("kv_index", 0))
            fsm.kvs.restore({"entries": obj.get("kv", [])})
            fsm.table(AutopilotTable).restore(
                {
                    "config": obj.get("autopilot"),
                    "create_index": obj.get("autopilot_create_index", 0),
                    "modify_index": obj.get("autopilot_modify_index", 0),
                }
            )
            return fsm
        fsm.indexes = {str(k): int(v) for k, v in (obj.get("indexes") or {}).items()}
        tables = obj.get("tables") or {}
        for name, table in fsm.tables.items():
            if name in tables:
                table.restore(tables[name])
        return fsm
