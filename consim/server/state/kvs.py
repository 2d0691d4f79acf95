"""Consul's KV table (``state/kvs.go``): set, cas, deletes, and session locks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from consim.server.state.base import Table


@dataclass(slots=True)
class DirEntry:
    """One KV entry, with Consul's field names on the wire."""

    key: str
    value: bytes | None
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0
    session: str = ""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "LockIndex": self.lock_index,
            "Key": self.key,
            "Flags": self.flags,
            "Value": self.value,
        }
        if self.session:
            wire["Session"] = self.session
        wire["CreateIndex"] = self.create_index
        wire["ModifyIndex"] = self.modify_index
        return wire


# ``pack_command({"Type": "KVS", "Op": "set", "DirEnt": {"Key": k, "Value": v}})`` up to the
# key's string header: the plain set, as KVS.Apply encodes it (fields at their zero value are
# left out), which every server applies for every write.
_PLAIN_SET_HEAD = b"\x83\xa4Type\xa3KVS\xa2Op\xa3set\xa6DirEnt\x82\xa3Key"
_KEY_AT = len(_PLAIN_SET_HEAD)
_VALUE_BIN8 = b"\xa5Value\xc4"
_VALUE_BIN16 = b"\xa5Value\xc5"
_VALUE_NIL = b"\xa5Value\xc0"


def value_bytes(value: Any) -> bytes:
    """A command's ``Value`` as bytes: bytes-like as is, text as UTF-8; anything else (a number
    from a foreign leader, say: ``bytes(n)`` would allocate n bytes) is a malformed command."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise ValueError(f"Value: expected bytes, got {type(value).__name__}")


class KVTable(Table):
    name = "kvs"
    commands = {"KVS": "apply"}

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.entries: dict[str, DirEntry] = {}

    def _changed(self, index: int) -> None:
        self.store.indexes[self.name] = index  # store.bump, inlined: every write comes here

    # ---- apply -------------------------------------------------------------------------------
    def apply_plain_set(self, index: int, data: bytes) -> bool:
        """Apply ``data`` if it is exactly the encoding of a plain set, the map
        ``{"Type": "KVS", "Op": "set", "DirEnt": {"Key": key, "Value": value}}`` (a key of up
        to 255 bytes, a value of up to 65,535 or nil), as ``apply`` would; False, with nothing
        done, for anything else (malformed or not: msgpack's to decode). A follower's every
        write: a few byte compares instead of building, reading and dropping two maps."""
        if not data.startswith(_PLAIN_SET_HEAD):
            return False
        try:
            head = data[_KEY_AT]
            if 0xA0 <= head <= 0xBF:  # fixstr
                start = _KEY_AT + 1
                end = start + head - 0xA0
            elif head == 0xD9:  # str8
                start = _KEY_AT + 2
                end = start + data[_KEY_AT + 1]
            else:
                return False
            field = data[end : end + 7]
            if field == _VALUE_BIN8:
                if data[end + 7] != len(data) - end - 8:  # short, or trailing bytes
                    return False
                value: bytes | None = data[end + 8 :]
            elif field == _VALUE_BIN16:
                if int.from_bytes(data[end + 7 : end + 9], "big") != len(data) - end - 9:
                    return False
                value = data[end + 9 :]
            elif field == _VALUE_NIL and len(data) == end + 7:
                value = None
            else:
                return False
            key = data[start:end].decode()  # strict UTF-8, as msgpack's raw=False
        except (IndexError, UnicodeDecodeError):
            return False
        existing = self.entries.get(key)
        if existing is None:
            self.entries[key] = DirEntry(key, value, 0, index, index, 0, "")
        elif not existing.session:
            self.entries[key] = DirEntry(
                key, value, 0, existing.create_index, index, existing.lock_index, ""
            )
        else:
            self._set(index, key, {"Key": key, "Value": value}, existing)
            return True
        self.store.indexes[self.name] = index
        return True

    def apply(self, index: int, command: dict[str, Any]) -> Any:
        op = command.get("Op")
        ent = command.get("DirEnt") or {}
        key = ent.get("Key", "")
        if type(key) is not str:
            key = str(key)
        existing = self.entries.get(key)
        if op == "set":
            if existing is None or not existing.session:
                # The common write, inline (no lock to keep): every server applies every one.
                value = ent.get("Value")
                if value is not None and type(value) is not bytes:
                    value = value_bytes(value)
                self.entries[key] = DirEntry(
                    key,
                    value,
                    int(ent.get("Flags", 0)),
                    index if existing is None else existing.create_index,
                    index,
                    0 if existing is None else existing.lock_index,
                    "",
                )
                self.store.indexes[self.name] = index
            else:
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
                del self.entries[key]
            self._changed(index)
            return True
        if op == "delete-cas":
            want = int(ent.get("ModifyIndex", 0))
            if existing is None:
                # Consul: deleting a missing key with cas succeeds only when index 0 is given.
                return want == 0
            if existing.modify_index != want:
                return False
            del self.entries[key]
            self._changed(index)
            return True
        if op == "delete-tree":
            for k in [k for k in sorted(self.entries) if k.startswith(key)]:
                del self.entries[k]
            self._changed(index)
            return True
        if op == "lock":
            return self._lock(index, key, ent, existing)
        if op == "unlock":
            return self._unlock(index, key, ent, existing)
        return False

    def _set(
        self,
        index: int,
        key: str,
        ent: dict[str, Any],
        existing: DirEntry | None,
        *,
        session: str | None = None,
        lock_index: int | None = None,
    ) -> None:
        value = ent.get("Value")
        if value is not None and type(value) is not bytes:
            value = value_bytes(value)
        # A plain set keeps the lock a session holds on the key (Consul's kvsSetTxn).
        if existing is not None:
            create_index = existing.create_index
            if lock_index is None:
                lock_index = existing.lock_index
            if session is None:
                session = existing.session
        else:
            create_index = index
            if lock_index is None:
                lock_index = 0
            if session is None:
                session = ""
        # positional: key, value, flags, create_index, modify_index, lock_index, session
        self.entries[key] = DirEntry(
            key, value, int(ent.get("Flags", 0)), create_index, index, lock_index, session
        )
        self.store.indexes[self.name] = index

    def _lock(self, index: int, key: str, ent: dict[str, Any], existing: DirEntry | None) -> Any:
        # Consul's kvsLockTxn.
        session = str(ent.get("Session") or "")
        if not session:
            return {"Error": "missing session"}
        if session not in self.store.sessions.sessions:
            return {"Error": f"invalid session {json.dumps(session, ensure_ascii=False)}"}
        if existing is None:
            self._set(index, key, ent, None, session=session, lock_index=1)
            return True
        if existing.session == session:
            self._set(index, key, ent, existing, session=session)  # re-acquire: same LockIndex
            return True
        if existing.session:
            return False  # held by another session
        self._set(index, key, ent, existing, session=session, lock_index=existing.lock_index + 1)
        return True

    def _unlock(self, index: int, key: str, ent: dict[str, Any], existing: DirEntry | None) -> Any:
        # Consul's kvsUnlockTxn.
        session = str(ent.get("Session") or "")
        if not session:
            return {"Error": "missing session"}
        if existing is None or existing.session != session:
            return False
        self._set(index, key, ent, existing, session="")
        return True

    # ---- what an invalidated session does to its locks (state/session.go) ----------------------
    def release_session(self, index: int, session: str, delete: bool) -> list[str]:
        """Release (or delete, for behaviour delete) every key ``session`` holds; their names."""
        held = [k for k in sorted(self.entries) if self.entries[k].session == session]
        for key in held:
            if delete:
                del self.entries[key]
            else:
                ent = self.entries[key]
                ent.session = ""
                ent.modify_index = index
        if held:
            self._changed(index)
        return held

    # ---- reads -------------------------------------------------------------------------------
    def get(self, key: str) -> tuple[int, DirEntry | None]:
        ent = self.entries.get(key)
        if ent is not None:
            return ent.modify_index, ent
        return self.store.indexes.get(self.name, 0), None

    def list(self, prefix: str) -> tuple[int, list[DirEntry]]:
        return self.store.indexes.get(self.name, 0), [
            self.entries[k] for k in sorted(self.entries) if k.startswith(prefix)
        ]

    def list_keys(self, prefix: str, separator: str) -> tuple[int, list[str]]:
        keys: list[str] = []
        seen: set[str] = set()
        for k in sorted(self.entries):
            if not k.startswith(prefix):
                continue
            if separator:
                cut = k.find(separator, len(prefix))
                if cut != -1:
                    k = k[: cut + len(separator)]
            if k not in seen:
                seen.add(k)
                keys.append(k)
        return self.store.indexes.get(self.name, 0), keys

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> Any:
        return {"entries": [e.to_wire() for _, e in sorted(self.entries.items())]}

    def restore(self, obj: Any) -> None:
        self.entries = {}
        for w in obj.get("entries", []):
            self.entries[w["Key"]] = DirEntry(
                key=w["Key"],
                value=w["Value"],
                flags=w["Flags"],
                create_index=w["CreateIndex"],
                modify_index=w["ModifyIndex"],
                lock_index=w["LockIndex"],
                session=w.get("Session", ""),
            )
