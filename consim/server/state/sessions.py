"""Consul's sessions table (``state/session.go``): create, destroy and invalidation.

An invalidated session (destroyed, its TTL expired on the leader, one of its checks turned
critical, its node deregistered) releases the keys it holds, or deletes them with behaviour
``delete``, and puts each under its lock-delay. As in Consul, the lock-delay is not replicated
state: each server records it with its own clock when it applies the invalidation, and only the
leader's copy is read, before a lock is proposed.
"""

from __future__ import annotations

from typing import Any

from consim.server.state.base import Table

SERF_CHECK_ID = "serfHealth"


class SessionTable(Table):
    name = "sessions"
    commands = {"Session": "apply"}

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        # id -> structs.Session as Consul writes it (LockDelay in nanoseconds)
        self.sessions: dict[str, dict[str, Any]] = {}
        # key -> when its lock-delay ends, on this server's clock (not in snapshots)
        self.lock_delay: dict[str, float] = {}

    def apply(self, index: int, command: dict[str, Any]) -> Any:
        op = command.get("Op")
        session = dict(command.get("Session") or {})
        if op == "create":
            return self._create(index, session)
        if op == "destroy":
            sid = str(session.get("ID", ""))
            if sid in self.sessions:
                self.invalidate(index, sid)
            return True
        return {"Error": f"Invalid session operation {op!r}"}

    def _create(self, index: int, session: dict[str, Any]) -> Any:
        # Consul's sessionCreateTxn: the node and every check must exist, no check critical.
        catalog = self.store.catalog
        node = str(session.get("Node", ""))
        if node not in catalog.nodes:
            return {"Error": "Missing node registration"}
        checks = catalog.checks.get(node, {})
        for check_id in session.get("NodeChecks") or []:
            check = checks.get(check_id)
            if check is None:
                return {"Error": f"Missing check '{check_id}' registration"}
            if check["Status"] == "critical":
                return {"Error": f"Check '{check_id}' is in critical state"}
        for service_check in session.get("ServiceChecks") or []:
            check_id = str(service_check.get("ID", ""))
            check = checks.get(check_id)
            if check is None:
                return {"Error": f"Missing check '{check_id}' registration"}
            if check["Status"] == "critical":
                return {"Error": f"Check '{check_id}' is in critical state"}
        session["CreateIndex"] = index
        session["ModifyIndex"] = index
        self.sessions[str(session["ID"])] = session
        self.store.bump(index, self.name)
        return session["ID"]

    # ---- invalidation ------------------------------------------------------------------------
    def invalidate(self, index: int, sid: str) -> None:
        """Consul's deleteSessionTxn: drop the session, release or delete its keys."""
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        held = self.store.kvs.release_session(index, sid, session.get("Behavior") == "delete")
        delay = int(session.get("LockDelay") or 0) / 1e9
        if delay > 0:
            until = self.store.now() + delay
            for key in held:
                self.lock_delay[key] = until
        self.store.bump(index, self.name)

    def invalidate_for_check(self, index: int, node: str, check_id: str) -> None:
        """Sessions on ``node`` that depend on ``check_id`` (turned critical or deleted)."""
        for sid in sorted(self.sessions):
            s = self.sessions[sid]
            if s.get("Node") != node:
                continue
            if check_id in (s.get("NodeChecks") or []) or any(
                c.get("ID") == check_id for c in s.get("ServiceChecks") or []
            ):
                self.invalidate(index, sid)

    def invalidate_node(self, index: int, node: str) -> None:
        for sid in sorted(self.sessions):
            if self.sessions[sid].get("Node") == node:
                self.invalidate(index, sid)

    def lock_delay_until(self, key: str) -> float:
        """When the lock-delay of ``key`` ends on this server's clock (0: none)."""
        return self.lock_delay.get(key, 0.0)

    # ---- reads -------------------------------------------------------------------------------
    def index(self) -> int:
        return self.store.indexes.get(self.name, 0)

    def get(self, sid: str) -> tuple[int, list[dict[str, Any]]]:
        session = self.sessions.get(sid)
        return self.index(), [] if session is None else [session]

    def list(self, node: str | None = None) -> tuple[int, list[dict[str, Any]]]:
        out = [
            self.sessions[sid]
            for sid in sorted(self.sessions)
            if node is None or self.sessions[sid].get("Node") == node
        ]
        return self.index(), out

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> Any:
        return {"sessions": [self.sessions[sid] for sid in sorted(self.sessions)]}

    def restore(self, obj: Any) -> None:
        self.sessions = {str(s["ID"]): dict(s) for s in obj.get("sessions", [])}
