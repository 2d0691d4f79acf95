"""Consul's catalog tables (``state/catalog.go``): nodes, their services and health checks.

Stored as Consul writes them (Go field names): ``nodes`` name -> structs.Node, ``services``
node -> service ID -> structs.NodeService, ``checks`` node -> check ID -> structs.HealthCheck.
A registration that changes nothing changes no index (Consul's ``IsSame`` checks), so the
leader's reconcile can re-register a node every pass without waking blocking queries. A check
turning critical, or going away, invalidates the sessions that depend on it; a deregistered node
takes its sessions with it.
"""

from __future__ import annotations

from typing import Any

from consim.server.state.base import Table

PASSING, WARNING, CRITICAL, MAINT = "passing", "warning", "critical", "maintenance"
STATUSES = (PASSING, WARNING, CRITICAL, MAINT)
_RAFT = ("CreateIndex", "ModifyIndex")


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k not in _RAFT} == {
        k: v for k, v in b.items() if k not in _RAFT
    }


class CatalogTable(Table):
    name = "catalog"
    commands = {"Register": "register", "Deregister": "deregister"}
    INDEXES = ("nodes", "services", "checks")

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.nodes: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, dict[str, Any]]] = {}
        self.checks: dict[str, dict[str, dict[str, Any]]] = {}

    # ---- apply: Consul's ensureRegistrationTxn ----------------------------------------------------
    def register(self, index: int, command: dict[str, Any]) -> Any:
        node = command.get("Node") or {}
        name = str(node.get("Node", ""))
        service = command.get("Service")
        checks = list(command.get("Checks") or [])
        existing = self.nodes.get(name)
        if not (command.get("SkipNodeUpdate") and existing is not None):
            self._ensure_node(index, node, existing)
        if service:
            self._ensure_service(index, name, service)
        for check in checks:
            error = self._ensure_check(index, name, check)
            if error:
                return {"Error": error}
        return True

    def _ensure_node(
        self, index: int, node: dict[str, Any], existing: dict[str, Any] | None
    ) -> None:
        if existing is not None and _same(existing, node):
            return
        entry = dict(node)
        entry["CreateIndex"] = existing["CreateIndex"] if existing else index
        entry["ModifyIndex"] = index
        self.nodes[entry["Node"]] = entry
        self.store.bump(index, "nodes")

    def _ensure_service(self, index: int, node: str, service: dict[str, Any]) -> None:
        services = self.services.setdefault(node, {})
        existing = services.get(service["ID"])
        if existing is not None and _same(existing, service):
            return
        entry = dict(service)
        entry["CreateIndex"] = existing["CreateIndex"] if existing else index
        entry["ModifyIndex"] = index
        services[entry["ID"]] = entry
        self.store.bump(index, "services")
        # A check of the service shows its name and tags (Consul updates them on the checks).
        for check in self.checks.get(node, {}).values():
            shown = (check.get("ServiceName"), check.get("ServiceTags"))
            if check.get("ServiceID") == entry["ID"] and shown != (entry["Service"], entry["Tags"]):
                check["ServiceName"], check["ServiceTags"] = entry["Service"], entry["Tags"]
                check["ModifyIndex"] = index
                self.store.bump(index, "checks")

    def _ensure_check(self, index: int, node: str, check: dict[str, Any]) -> str | None:
        if node not in self.nodes:
            return "Missing node registration"
        check = dict(check)
        check["Node"] = node
        service_id = check.get("ServiceID") or ""
        if service_id:
            service = self.services.get(node, {}).get(service_id)
            if service is None:
                return f"Missing service registration for {service_id}"
            check["ServiceName"] = service["Service"]
            check["ServiceTags"] = service["Tags"]
        if not check.get("Status"):
            check["Status"] = CRITICAL
        checks = self.checks.setdefault(node, {})
        existing = checks.get(check["CheckID"])
        if existing is not None and _same(existing, check):
            return None
        check["CreateIndex"] = existing["CreateIndex"] if existing else index
        check["ModifyIndex"] = index
        checks[check["CheckID"]] = check
        self.store.bump(index, "checks")
        if check["Status"] == CRITICAL:
            self.store.sessions.invalidate_for_check(index, node, check["CheckID"])
        return None

    # ---- apply: Consul's Deregister (deleteNodeTxn / deleteServiceTxn / deleteCheckTxn) -------
    def deregister(self, index: int, command: dict[str, Any]) -> Any:
        node = str(command.get("Node", ""))
        service_id = str(command.get("ServiceID") or "")
        check_id = str(command.get("CheckID") or "")
        if node not in self.nodes:
            return True
        if service_id:
            self._delete_service(index, node, service_id)
        if check_id:
            self._delete_check(index, node, check_id)
        if not service_id and not check_id:
            for sid in sorted(self.services.get(node, {})):
                self._delete_service(index, node, sid)
            for cid in sorted(self.checks.get(node, {})):
                self._delete_check(index, node, cid)
            self.services.pop(node, None)
            self.checks.pop(node, None)
            del self.nodes[node]
            self.store.bump(index, "nodes")
            self.store.sessions.invalidate_node(index, node)
        return True

    def _delete_service(self, index: int, node: str, service_id: str) -> None:
        services = self.services.get(node, {})
        if services.pop(service_id, None) is None:
            return
        self.store.bump(index, "services")
        for cid in sorted(self.checks.get(node, {})):
            if self.checks[node][cid].get("ServiceID") == service_id:
                self._delete_check(index, node, cid)

    def _delete_check(self, index: int, node: str, check_id: str) -> None:
        if self.checks.get(node, {}).pop(check_id, None) is None:
            return
        self.store.bump(index, "checks")
        self.store.sessions.invalidate_for_check(index, node, check_id)

    # ---- reads -------------------------------------------------------------------------------
    def index(self) -> int:
        return self.store.max_index(*self.INDEXES)

    def node_checks(self, node: str) -> list[dict[str, Any]]:
        checks = self.checks.get(node, {})
        return [checks[c] for c in sorted(checks)]

    def service_names(self) -> dict[str, list[str]]:
        """Service name -> the union of its tags (Consul's /v1/catalog/services)."""
        out: dict[str, list[str]] = {}
        for node in sorted(self.services):
            for service in self.services[node].values():
                tags = out.setdefault(service["Service"], [])
                for tag in service.get("Tags") or []:
                    if tag not in tags:
                        tags.append(tag)
        return {name: sorted(out[name]) for name in sorted(out)}

    def all_instances(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(node, service) for every service instance, by node then ID."""
        return [
            (self.nodes[node], self.services[node][sid])
            for node in sorted(self.services)
            if node in self.nodes
            for sid in sorted(self.services[node])
        ]

    def service_instances(self, name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(node, service) pairs of every instance of service ``name``, by node then ID."""
        out = []
        for node in sorted(self.services):
            for sid in sorted(self.services[node]):
                service = self.services[node][sid]
                if service["Service"] == name and node in self.nodes:
                    out.append((self.nodes[node], service))
        return out

    def checks_in_state(self, state: str) -> list[dict[str, Any]]:
        out = []
        for node in sorted(self.checks):
            for cid in sorted(self.checks[node]):
                check = self.checks[node][cid]
                if state == "any" or check["Status"] == state:
                    out.append(check)
        return out

    def service_checks(self, name: str) -> list[dict[str, Any]]:
        return [
            c
            for node in sorted(self.checks)
            for cid, c in sorted(self.checks[node].items())
            if c.get("ServiceName") == name
        ]

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> Any:
        return {
            "nodes": [self.nodes[n] for n in sorted(self.nodes)],
            "services": [
                {"Node": n, **self.services[n][s]}
                for n in sorted(self.services)
                for s in sorted(self.services[n])
            ],
            "checks": [
                self.checks[n][c] for n in sorted(self.checks) for c in sorted(self.checks[n])
            ],
        }

    def restore(self, obj: Any) -> None:
        self.nodes = {n["Node"]: dict(n) for n in obj.get("nodes", [])}
        self.services = {}
        for s in obj.get("services", []):
            s = dict(s)
            node = s.pop("Node")
            self.services.setdefault(node, {})[s["ID"]] = s
        self.checks = {}
        for c in obj.get("checks", []):
            self.checks.setdefault(c["Node"], {})[c["CheckID"]] = dict(c)
