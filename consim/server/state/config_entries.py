"""The config entries table (Consul's ``config_entries``: kind + name -> entry), written by
``ConfigEntry.Apply`` / ``ConfigEntry.Delete`` and read by ``/v1/config/*`` and by the catalog's
gateway services.

An entry is kept as the client sent it (its ``Kind`` and ``Name`` set, Raft indexes added):
consim does not model each kind's schema, its defaults or its cross-entry validation (a
service-router pointing at a service without an L7 protocol, for instance).
"""

from __future__ import annotations

from typing import Any

from consim.server.state.base import Table

# structs.ConfigEntry kinds (MakeConfigEntry accepts exactly these).
KINDS = (
    "service-defaults",
    "proxy-defaults",
    "service-router",
    "service-splitter",
    "service-resolver",
    "ingress-gateway",
    "terminating-gateway",
    "service-intentions",
    "mesh",
    "exported-services",
    "sameness-group",
    "api-gateway",
    "bound-api-gateway",
    "inline-certificate",
    "file-system-certificate",
    "http-route",
    "tcp-route",
    "jwt-provider",
)

# ConfigEntryRequest ops, as Consul names them.
UPSERT, UPSERT_CAS, DELETE, DELETE_CAS = "upsert", "upsert-cas", "delete", "delete-cas"


class ConfigEntryTable(Table):
    name = "config-entries"
    commands = {"ConfigEntry": "apply"}

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.entries: dict[tuple[str, str], dict[str, Any]] = {}

    def apply(self, index: int, command: dict[str, Any]) -> Any:
        """One ConfigEntryRequest: the result is whether it applied (CAS ops may not)."""
        op = str(command.get("Op") or UPSERT)
        entry = dict(command.get("Entry") or {})
        key = (str(entry.get("Kind") or ""), str(entry.get("Name") or ""))
        existing = self.entries.get(key)
        cas = int(command.get("Index") or 0)
        if op in (UPSERT, UPSERT_CAS):
            # ensureConfigEntryCAS: index 0 means "only if absent"
            if op == UPSERT_CAS and (
                (cas == 0 and existing is not None)
                or (cas != 0 and (existing is None or existing["ModifyIndex"] != cas))
            ):
                return False
            entry["CreateIndex"] = existing["CreateIndex"] if existing else index
            entry["ModifyIndex"] = index
            self.entries[key] = entry
        elif op in (DELETE, DELETE_CAS):
            if op == DELETE_CAS and (existing is None or existing["ModifyIndex"] != cas):
                return False
            if existing is None:
                return True  # deleting nothing is no change (and no index bump)
            del self.entries[key]
        else:
            return {"Error": f"Invalid config entry operation: {op!r}"}
        self.store.bump(index, self.name)
        return True

    def index(self) -> int:
        return self.store.max_index(self.name)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.entries.get((kind, name))

    def list(self, kind: str = "") -> list[dict[str, Any]]:
        """Entries of ``kind`` (every kind when empty), sorted by kind then name."""
        return [e for (k, _n), e in sorted(self.entries.items()) if not kind or k == kind]

    def snapshot(self) -> Any:
        return [entry for _key, entry in sorted(self.entries.items())]

    def restore(self, obj: Any) -> None:
        self.entries = {(str(e["Kind"]), str(e["Name"])): dict(e) for e in obj or []}
