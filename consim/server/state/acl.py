"""Consul's ACL tables (``state/acl.go``): tokens, policies, roles, auth methods, binding rules.

Records are kept as Consul writes them on the wire (``structs.ACLToken`` etc., Go field names);
the ACL endpoint (``consim.server.endpoints.acl``) validates a request and builds the record on
the leader, the table only stores it with its Raft indexes, as Consul's FSM does. ``init`` is the
leader's ``initializeACLs``: the builtin global-management policy, the anonymous token and the
configured initial management token, each created once.
"""

from __future__ import annotations

from typing import Any

from consim.server.state.base import Table

GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
GLOBAL_MANAGEMENT_NAME = "global-management"
ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
ANONYMOUS_SECRET = "anonymous"
# structs.ACLPolicyGlobalManagement (Consul's builtin policy text).
GLOBAL_MANAGEMENT_RULES = """
acl = "write"
agent_prefix "" {
	policy = "write"
}
event_prefix "" {
	policy = "write"
}
identity_prefix "" {
	policy = "write"
	intentions = "write"
}
key_prefix "" {
	policy = "write"
}
keyring = "write"
node_prefix "" {
	policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
	policy = "write"
}
service_prefix "" {
	policy = "write"
	intentions = "write"
}
session_prefix "" {
	policy = "write"
}"""

# Table name -> (record key field, snapshot key).
_KINDS = {
    "token": "AccessorID",
    "policy": "ID",
    "role": "ID",
    "authmethod": "Name",
    "bindingrule": "ID",
}


class ACLTable(Table):
    name = "acl"
    commands = {"ACL": "apply"}

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.records: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in _KINDS}
        # Raft index of the bootstrap (Consul's ACLBootstrap.ModifyIndex), 0 = not yet.
        self.bootstrap_index = 0

    # ---- apply -------------------------------------------------------------------------------
    def apply(self, index: int, command: dict[str, Any]) -> Any:
        op = str(command.get("Op", ""))
        if op == "init":
            return self._init(index, command)
        if op == "bootstrap":
            if self.bootstrap_index:
                return {"Error": self.bootstrap_refused()}
            self.bootstrap_index = index
            return self._set(index, "token", dict(command.get("Record") or {}))
        kind, _, action = op.rpartition("-")
        if kind not in _KINDS or action not in ("set", "delete"):
            return {"Error": f"Invalid ACL operation {op!r}"}
        if action == "set":
            return self._set(index, kind, dict(command.get("Record") or {}))
        key = str(command.get("Key", ""))
        existed = self.records[kind].pop(key, None) is not None
        if existed and kind == "authmethod":
            # Consul deletes an auth method's binding rules and tokens with it.
            for rid in [
                r for r, v in self.records["bindingrule"].items() if v["AuthMethod"] == key
            ]:
                del self.records["bindingrule"][rid]
            for aid in [a for a, v in self.records["token"].items() if v.get("AuthMethod") == key]:
                del self.records["token"][aid]
        self.store.bump(index, self._index_name(kind))
        return existed

    def _init(self, index: int, command: dict[str, Any]) -> bool:
        changed = False
        if GLOBAL_MANAGEMENT_ID not in self.records["policy"]:
            self._set(index, "policy", dict(command.get("Policy") or {}))
            changed = True
        if ANONYMOUS_ACCESSOR not in self.records["token"]:
            self._set(index, "token", dict(command.get("Anonymous") or {}))
            changed = True
        management = command.get("Management")
        if management and self.by_secret(str(management.get("SecretID", ""))) is None:
            self._set(index, "token", dict(management))
            # An initial management token from the configuration is a bootstrap.
            self.bootstrap_index = self.bootstrap_index or index
            changed = True
        return changed

    def _set(self, index: int, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        key = str(record.get(_KINDS[kind], ""))
        existing = self.records[kind].get(key)
        record["CreateIndex"] = existing["CreateIndex"] if existing else index
        record["ModifyIndex"] = index
        self.records[kind][key] = record
        self.store.bump(index, self._index_name(kind))
        return record

    @staticmethod
    def _index_name(kind: str) -> str:
        return f"acl-{kind}s"

    def bootstrap_refused(self) -> str:
        # structs.ACLBootstrapNotAllowedErr, with the reset index Consul reports.
        return f"ACL bootstrap no longer allowed (reset index: {self.bootstrap_index})"

    # ---- reads -------------------------------------------------------------------------------
    def index(self, kind: str) -> int:
        return self.store.max_index(self._index_name(kind))

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.records[kind].get(key)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [self.records[kind][k] for k in sorted(self.records[kind])]

    def by_secret(self, secret: str) -> dict[str, Any] | None:
        if not secret:
            return None
        for token in self.records["token"].values():
            if token.get("SecretID") == secret:
                return token
        return None

    def by_name(self, kind: str, name: str) -> dict[str, Any] | None:
        for record in self.records[kind].values():
            if record.get("Name") == name:
                return record
        return None

    @property
    def initialized(self) -> bool:
        return ANONYMOUS_ACCESSOR in self.records["token"]

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> Any:
        return {
            "records": {kind: self.all(kind) for kind in _KINDS},
            "bootstrap_index": self.bootstrap_index,
        }

    def restore(self, obj: Any) -> None:
        records = obj.get("records") or {}
        for kind, field in _KINDS.items():
            self.records[kind] = {str(r[field]): dict(r) for r in records.get(kind) or []}
        self.bootstrap_index = int(obj.get("bootstrap_index", 0))
