"""Consul's transactions (``state/txn.go``) over the KV table, and snapshot restore.

``Txn`` applies a list of KV operations atomically: they run in order against the KV table and,
at the first failure, every change of the transaction is undone and the errors are the answer
(Consul aborts its memdb transaction). ``Restore`` replaces every table with the state in a
snapshot (what ``/v1/snapshot`` PUT ends in: Consul's ``raft.Restore`` then an FSM restore),
on every server, at the Raft index of the entry.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from consim.server.state.base import Table

MAX_TXN_OPS = 128  # Consul's txn_max_ops default

READ_VERBS = frozenset({"get", "get-tree", "check-index", "check-session", "check-not-exists"})
WRITE_VERBS = frozenset(
    {"set", "cas", "lock", "unlock", "delete", "delete-tree", "delete-cas"}
)  # fmt: skip


def _q(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def run_ops(kvs: Any, index: int, ops: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """Run KV ``ops`` (each ``{"Verb", "Key", "Value", "Flags", "Index", "Session"}``) on the
    table; (results, errors) as Consul's TxnResults / TxnErrors."""
    results: list[Any] = []
    errors: list[Any] = []
    for i, op in enumerate(ops):
        verb = str(op.get("Verb", ""))
        key = str(op.get("Key", ""))
        ent = {
            "Key": key,
            "Value": op.get("Value"),
            "Flags": int(op.get("Flags") or 0),
            "ModifyIndex": int(op.get("Index") or 0),
            "Session": str(op.get("Session") or ""),
        }
        existing = kvs.entries.get(key)
        what: str | None = None
        out: list[Any] = []
        if verb in WRITE_VERBS:
            internal = {"set": "set", "cas": "cas"}.get(verb, verb)
            result = kvs.apply(index, {"Op": internal, "DirEnt": ent})
            if isinstance(result, dict) and "Error" in result:
                what = str(result["Error"])
            elif result is False:
                what = {
                    "cas": f"failed to set key {_q(key)}, index is stale",
                    "delete-cas": f"failed to delete key {_q(key)}, index is stale",
                    "lock": f"failed to lock key {_q(key)}, lock is already held",
                    "unlock": f"failed to unlock key {_q(key)}, lock isn't held, or is held by another session",
                }.get(verb, f"failed {verb} on {_q(key)}")
            elif verb in ("set", "cas", "lock", "unlock"):
                entry = kvs.entries.get(key)
                if entry is not None:
                    wire = entry.to_wire()
                    wire["Value"] = None  # writes answer the entry without its value
                    out.append(wire)
        elif verb == "get":
            if existing is None:
                what = f"key {_q(key)} doesn't exist"
            else:
                out.append(existing.to_wire())
        elif verb == "get-tree":
            out.extend(e.to_wire() for e in kvs.list(key)[1])
        elif verb == "check-index":
            if existing is None:
                what = f"key {_q(key)} doesn't exist"
            elif existing.modify_index != ent["ModifyIndex"]:
                what = f"current modify index {existing.modify_index} != {ent['ModifyIndex']}"
            else:
                out.append(existing.to_wire())
        elif verb == "check-session":
            if existing is None:
                what = f"key {_q(key)} doesn't exist"
            elif existing.session != ent["Session"]:
                what = (
                    f"failed session check for key {_q(key)}, current session "
                    f"{_q(existing.session)} != {_q(ent['Session'])}"
                )
            else:
                out.append(existing.to_wire())
        elif verb == "check-not-exists":
            if existing is not None:
                what = f"key {_q(key)} exists"
        else:
            what = f"unknown KV verb {_q(verb)}"
        if what is not None:
            errors.append({"OpIndex": i, "What": what})
            break  # Consul stops at the first failed operation
        results.extend({"KV": e} for e in out)
    return results, errors


class TxnTable(Table):
    """No state of its own: the transaction and restore commands, over the other tables."""

    name = "txn"
    commands = {"Txn": "apply", "Restore": "restore_all"}

    def apply(self, index: int, command: dict[str, Any]) -> dict[str, Any]:
        kvs = self.store.kvs
        saved = {k: dataclasses.replace(e) for k, e in kvs.entries.items()}
        saved_indexes = dict(self.store.indexes)
        results, errors = run_ops(kvs, index, list(command.get("Ops") or []))
        if errors:
            kvs.entries = saved
            self.store.indexes = saved_indexes
            return {"Results": None, "Errors": errors}
        return {"Results": results, "Errors": None}

    def restore_all(self, index: int, command: dict[str, Any]) -> bool:
        fresh = type(self.store).restore(bytes(command.get("State") or b""))
        for table in fresh.tables.values():
            table.store = self.store
        self.store.tables = fresh.tables
        self.store.indexes = fresh.indexes
        for name in list(self.store.indexes):
            # Blocking queries must see the change: every table moved at this index.
            self.store.indexes[name] = index
        return True

    def snapshot(self) -> Any:
        return {}

    def restore(self, obj: Any) -> None:
        return None
