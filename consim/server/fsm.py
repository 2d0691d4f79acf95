"""The replicated state machine: Consul's KV store and the autopilot configuration.

Pure and deterministic: ``apply`` takes a committed command and returns its result; ``snapshot`` /
``restore`` serialise the whole state with msgpack (Raft snapshots hold exactly these bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from consim.structs import DEFAULT_AUTOPILOT


@dataclass(slots=True)
class DirEntry:
    """One KV entry, with Consul's field names on the wire."""

    key: str
    value: bytes | None
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "LockIndex": self.lock_index,
            "Key": self.key,
            "Flags": self.flags,
            "Value": self.value,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


def encode_command(kind: str, body: dict[str, Any]) -> bytes:
    return msgpack.packb({"Type": kind, **body}, use_bin_type=True)


@dataclass
class StateMachine:
    kv: dict[str, DirEntry] = field(default_factory=dict)
    # Raft index of the last change to the KV table (Consul's "kvs" table index).
    kv_index: int = 0
    autopilot: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_AUTOPILOT))
    autopilot_create_index: int = 0
    autopilot_modify_index: int = 0
    last_applied: int = 0

    # ---- apply -------------------------------------------------------------------------------
    def apply(self, index: int, data: bytes) -> Any:
        """Apply one committed command; returns the result handed back to the proposer."""
        self.last_applied = index
        try:
            command = msgpack.unpackb(data, raw=False)
        except Exception:
            return {"Error": "malformed command"}
        if not isinstance(command, dict):
            return {"Error": "malformed command"}
        kind = command.get("Type")
        if kind == "KVS":
            return self._apply_kvs(index, command)
        if kind == "Autopilot":
            return self._apply_autopilot(index, command)
        return {"Error": f"unknown command type {kind!r}"}

    def _apply_kvs(self, index: int, command: dict[str, Any]) -> bool:
        op = command.get("Op")
        ent = command.get("DirEnt") or {}
        key = str(ent.get("Key", ""))
        existing = self.kv.get(key)
        if op == "set":
            self._set(index, key, ent, existing)
            return True
        if op == "cas":
            want = int(ent.get("ModifyIndex", 0))
            # cas=0 means "create only if absent" (Consul's KVSCAS).
            if (want == 0 and existing is not None) or (
                want != 0 and (existing is None or existing.modify_index != want)
            ):
                return False
            self._set(index, key, ent, existing)
            return True
        if op == "delete":
            if existing is not None:
                del self.kv[key]
            self.kv_index = index
            return True
        if op == "delete-cas":
            want = int(ent.get("ModifyIndex", 0))
            if existing is None:
                # Consul: deleting a missing key with cas succeeds only when index 0 is given.
                return want == 0
            if existing.modify_index != want:
                return False
            del self.kv[key]
            self.kv_index = index
            return True
        if op == "delete-tree":
            for k in [k for k in sorted(self.kv) if k.startswith(key)]:
                del self.kv[k]
            self.kv_index = index
            return True
        return False

    def _set(self, index: int, key: str, ent: dict[str, Any], existing: DirEntry | None) -> None:
        value = ent.get("Value")
        self.kv[key] = DirEntry(
            key=key,
            value=bytes(value) if value is not None else None,
            flags=int(ent.get("Flags", 0)),
            create_index=existing.create_index if existing else index,
            modify_index=index,
            lock_index=existing.lock_index if existing else 0,
        )
        self.kv_index = index

    def _apply_autopilot(self, index: int, command: dict[str, Any]) -> bool:
        cas = command.get("CAS")
        if cas is not None and int(cas) != self.autopilot_modify_index:
            return False
        config = dict(DEFAULT_AUTOPILOT)
        config.update(command.get("Config") or {})
        self.autopilot = config
        if self.autopilot_create_index == 0:
            self.autopilot_create_index = index
        self.autopilot_modify_index = index
        return True

    # ---- reads -------------------------------------------------------------------------------
    def get(self, key: str) -> tuple[int, DirEntry | None]:
        ent = self.kv.get(key)
        if ent is not None:
            return ent.modify_index, ent
        return self.kv_index, None

    def list(self, prefix: str) -> tuple[int, list[DirEntry]]:
        return self.kv_index, [self.kv[k] for k in sorted(self.kv) if k.startswith(prefix)]

    def list_keys(self, prefix: str, separator: str) -> tuple[int, list[str]]:
        keys: list[str] = []
        seen: set[str] = set()
        for k in sorted(self.kv):
            if not k.startswith(prefix):
                continue
            if separator:
                cut = k.find(separator, len(prefix))
                if cut != -1:
                    k = k[: cut + len(separator)]
            if k not in seen:
                seen.add(k)
                keys.append(k)
        return self.kv_index, keys

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        return msgpack.packb(
            {
                "kv": [e.to_wire() for _, e in sorted(self.kv.items())],
                "kv_index": self.kv_index,
                "autopilot": self.autopilot,
                "autopilot_create_index": self.autopilot_create_index,
                "autopilot_modify_index": self.autopilot_modify_index,
                "last_applied": self.last_applied,
            },
            use_bin_type=True,
        )

    @classmethod
    def restore(cls, data: bytes) -> StateMachine:
        obj = msgpack.unpackb(data, raw=False) if data else {}
        fsm = cls()
        for w in obj.get("kv", []):
            fsm.kv[w["Key"]] = DirEntry(
                key=w["Key"],
                value=w["Value"],
                flags=w["Flags"],
                create_index=w["CreateIndex"],
                modify_index=w["ModifyIndex"],
                lock_index=w["LockIndex"],
            )
        fsm.kv_index = obj.get("kv_index", 0)
        fsm.autopilot = obj.get("autopilot", dict(DEFAULT_AUTOPILOT))
        fsm.autopilot_create_index = obj.get("autopilot_create_index", 0)
        fsm.autopilot_modify_index = obj.get("autopilot_modify_index", 0)
        fsm.last_applied = obj.get("last_applied", 0)
        return fsm
