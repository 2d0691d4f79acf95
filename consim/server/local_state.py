"""The agent's own services and checks (Consul's ``agent/local`` state and ``checks.CheckTTL``).

What ``/v1/agent/service/*`` and ``/v1/agent/check/*`` register lives here, on the agent, and is
pushed to the catalog (``Catalog.Register`` / ``Catalog.Deregister`` through the server's own RPC
path, so a follower forwards it to the leader) after every change, as Consul's ``syncChanges``
does. A push that fails (no leader) leaves the entry out of sync; the next change, or the next
``sync_interval`` pass of ``run``, tries again (Consul's anti-entropy). TTL checks turn critical
with ``TTL expired`` when nobody updates them in time. HTTP and TCP checks are probed every
interval through ``prober`` (the cluster gives one that reaches its own servers' HTTP and RPC
addresses, in either mode; anything else is refused); script, gRPC, H2PING, UDP and OS-service
checks are registered and shown but never run: they keep the status they were registered with
(critical by default).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from consim.golike import GoError, format_duration, parse_duration
from consim.net.network import RpcError

PASSING, WARNING, CRITICAL = "passing", "warning", "critical"
SERVICE_MAINT_PREFIX = "_service_maintenance:"
NODE_MAINT_ID = "_node_maintenance"
SERVICE_MAINT_NAME = "Service Maintenance Mode"
NODE_MAINT_NAME = "Node Maintenance Mode"
SERVICE_MAINT_REASON = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)
NODE_MAINT_REASON = (
    "Maintenance mode is enabled for this node, but no reason was provided. "
    "This is a default message."
)


def unknown_service(sid: str) -> str:
    # Consul's vetServiceUpdateWithAuthorizer: a 404 before anything is changed
    return (
        f'Unknown service ID "{sid}". Ensure that the service ID is passed, not the service name.'
    )


def unknown_check(cid: str) -> str:
    return f'Unknown check ID "{cid}". Ensure that the check ID is passed, not the check name.'


class AgentError(Exception):
    """A refused agent request: ``status`` (400/404/500) and Consul's text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


# (kind "http" | "tcp", target URL or address, timeout seconds) -> (status, output)
Prober = Callable[[str, str, float], Awaitable[tuple[str, str]]]
DEFAULT_PROBE_TIMEOUT = 10.0  # Consul's default for HTTP and TCP checks


@dataclass
class LocalCheck:
    check: dict[str, Any]  # structs.HealthCheck, Go field order
    ttl: float = 0.0  # seconds; 0 = not a TTL check
    expires: float = float("inf")
    token: str = ""
    in_sync: bool = False
    # HTTP and TCP checks: what to probe, how often, when next
    probe: str = ""
    interval: float = 0.0
    timeout: float = DEFAULT_PROBE_TIMEOUT
    next_probe: float = float("inf")


@dataclass
class LocalService:
    service: dict[str, Any]  # structs.NodeService
    token: str = ""
    in_sync: bool = False
    check_ids: list[str] = field(default_factory=list)
    sidecar_of: str = ""  # the service this one was registered beside (connect sidecar_service)


def duration(value: Any) -> float:
    """A duration field of a check definition in seconds: a Go duration string, or a number of
    nanoseconds (CheckDefinition.UnmarshalJSON); 0 when absent."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool):
        raise AgentError(
            400,
            "Request decode failed: json: cannot unmarshal bool into Go value of type time.Duration",
        )
    if isinstance(value, int | float):
        return float(value) / 1e9
    try:
        return parse_duration(str(value))
    except GoError as exc:
        raise AgentError(400, f"Request decode failed: {exc}") from None


def check_type(definition: dict[str, Any]) -> tuple[str, float]:
    """Consul's CheckType.Validate and Type(): the kind of a check definition and its TTL."""
    interval_kinds = [
        k for k in ("HTTP", "TCP", "UDP", "GRPC", "H2PING", "OSService") if definition.get(k)
    ]
    script = bool(definition.get("Args") or definition.get("ScriptArgs"))
    ttl = duration(definition.get("TTL"))
    interval = duration(definition.get("Interval"))
    if definition.get("AliasService") or definition.get("AliasNode"):
        return "alias", 0.0
    if interval_kinds or script:
        if interval <= 0:
            raise AgentError(
                400,
                "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or "
                "OSService checks",
            )
        return ("script" if script else interval_kinds[0].lower()), 0.0
    if ttl <= 0:
        raise AgentError(400, "Invalid check: TTL must be > 0 for TTL checks")
    return "ttl", ttl


def _shown(value: Any) -> str:
    """A duration as HealthCheck shows it (Go's Duration.String()), "" when absent."""
    seconds = duration(value)
    return format_duration(seconds) if seconds else ""


class LocalState:
    def __init__(self, server: Any, *, sync_interval: float = 60.0) -> None:
        self.server = server  # the ServerNode (Server protocol plus node_name and spec)
        self.sync_interval = sync_interval
        # Set by the cluster: how HTTP and TCP checks reach their targets.
        self.prober: Prober | None = None
        self.services: dict[str, LocalService] = {}
        self.checks: dict[str, LocalCheck] = {}
        # Entries removed here whose catalog deregistration has not gone through yet.
        self.removed_services: dict[str, str] = {}
        self.removed_checks: dict[str, str] = {}
        self._kick = trio.Event()

    def reset(self) -> None:
        """A new incarnation: everything is pushed again (the catalog may have lost it)."""
        self._kick = trio.Event()
        for s in self.services.values():
            s.in_sync = False
        for c in self.checks.values():
            c.in_sync = False
        if self.services or self.checks:
            self._kick.set()

    # ---- services ----------------------------------------------------------------------------
    def add_service(
        self,
        service: dict[str, Any],
        checks: list[dict[str, Any]],
        token: str,
        *,
        sidecar_of: str = "",
    ) -> None:
        for definition in checks:
            check_type(definition)  # every check valid before anything changes
        sid = service["ID"]
        old = self.services.get(sid)
        self.removed_services.pop(sid, None)
        entry = LocalService(service=service, token=token, sidecar_of=sidecar_of)
        if old is not None:
            entry.check_ids = list(old.check_ids)
        for n, definition in enumerate(checks, start=1):
            cid = str(definition.get("CheckID") or "") or (
                f"service:{sid}" if len(checks) == 1 else f"service:{sid}:{n}"
            )
            name = str(definition.get("Name") or "") or f"Service '{service['Service']}' check"
            self.add_check(
                {**definition, "CheckID": cid, "Name": name, "ServiceID": sid}, token, service
            )
            if cid not in entry.check_ids:
                entry.check_ids.append(cid)
        self.services[sid] = entry

    def remove_service(self, sid: str) -> None:
        entry = self.services.pop(sid, None)
        if entry is None:
            raise AgentError(404, unknown_service(sid))
        for cid in [c for c, chk in self.checks.items() if chk.check["ServiceID"] == sid]:
            self.checks.pop(cid, None)
        self.removed_services[sid] = entry.token
        # A sidecar registered with its service goes with it (Consul's removeServiceSidecars).
        for other in [o for o, e in self.services.items() if e.sidecar_of == sid]:
            self.remove_service(other)

    # ---- checks ------------------------------------------------------------------------------
    def add_check(
        self, definition: dict[str, Any], token: str, service: dict[str, Any] | None = None
    ) -> None:
        kind, ttl = check_type(definition)
        sid = str(definition.get("ServiceID") or "")
        if sid and service is None:
            owner = self.services.get(sid)
            if owner is None:
                raise AgentError(404, f'ServiceID "{sid}" does not exist')
            service = owner.service
        cid = str(definition.get("CheckID") or "") or str(definition["Name"])
        check = {
            "Node": self.server.node_name,
            "CheckID": cid,
            "Name": str(definition["Name"]),
            "Status": str(definition.get("Status") or CRITICAL),
            "Notes": str(definition.get("Notes") or ""),
            "Output": "",
            "ServiceID": sid,
            "ServiceName": service["Service"] if service else "",
            "ServiceTags": service["Tags"] if service else None,
            "Type": kind,
            "Interval": _shown(definition.get("Interval")),
            "Timeout": _shown(definition.get("Timeout")),
            "ExposedPort": 0,
            "Definition": {},
        }
        entry = LocalCheck(check=check, ttl=ttl, token=token)
        if ttl:
            entry.expires = trio.current_time() + ttl
            self._kick.set()
        if kind in ("http", "tcp"):
            entry.probe = str(definition.get(kind.upper()) or "")
            entry.interval = duration(definition.get("Interval"))
            entry.timeout = duration(definition.get("Timeout")) or DEFAULT_PROBE_TIMEOUT
            entry.next_probe = trio.current_time()  # the first probe at once, then every interval
            self._kick.set()
        self.removed_checks.pop(cid, None)
        self.checks[cid] = entry

    def remove_check(self, cid: str) -> None:
        entry = self.checks.pop(cid, None)
        if entry is None:
            raise AgentError(404, unknown_check(cid))
        self.removed_checks[cid] = entry.token
        sid = entry.check["ServiceID"]
        if sid in self.services and cid in self.services[sid].check_ids:
            self.services[sid].check_ids.remove(cid)

    def update_ttl(self, cid: str, status: str, output: str) -> None:
        """Consul's updateTTLCheck: set the status and restart the TTL."""
        entry = self.checks.get(cid)
        if entry is None:
            raise AgentError(404, unknown_check(cid))  # vetCheckUpdate comes first
        if not entry.ttl:
            raise AgentError(500, f'CheckID "{cid}" does not have associated TTL')
        self._set_status(entry, status, output)
        entry.expires = trio.current_time() + entry.ttl
        self._kick.set()

    def _set_status(self, entry: LocalCheck, status: str, output: str) -> None:
        if (entry.check["Status"], entry.check["Output"]) != (status, output):
            entry.check["Status"], entry.check["Output"] = status, output
            entry.in_sync = False

    # ---- maintenance -------------------------------------------------------------------------
    def service_maintenance(self, sid: str, enable: bool, reason: str, token: str) -> None:
        if sid not in self.services:
            raise AgentError(404, unknown_service(sid))  # vetServiceUpdate comes first
        cid = SERVICE_MAINT_PREFIX + sid
        if not enable:
            if cid in self.checks:
                self.remove_check(cid)
            return
        if cid in self.checks:
            return
        service = self.services[sid].service
        self._add_maintenance(
            cid, SERVICE_MAINT_NAME, reason or SERVICE_MAINT_REASON, sid, service, token
        )

    def node_maintenance(self, enable: bool, reason: str, token: str) -> None:
        if not enable:
            if NODE_MAINT_ID in self.checks:
                self.remove_check(NODE_MAINT_ID)
            return
        if NODE_MAINT_ID not in self.checks:
            self._add_maintenance(
                NODE_MAINT_ID, NODE_MAINT_NAME, reason or NODE_MAINT_REASON, "", None, token
            )

    def _add_maintenance(
        self, cid: str, name: str, notes: str, sid: str, service: dict[str, Any] | None, token: str
    ) -> None:
        check = {
            "Node": self.server.node_name,
            "CheckID": cid,
            "Name": name,
            "Status": CRITICAL,
            "Notes": notes,
            "Output": "",
            "ServiceID": sid,
            "ServiceName": service["Service"] if service else "",
            "ServiceTags": service["Tags"] if service else None,
            "Type": "maintenance",
            "Interval": "",
            "Timeout": "",
            "ExposedPort": 0,
            "Definition": {},
        }
        self.removed_checks.pop(cid, None)
        self.checks[cid] = LocalCheck(check=check, token=token)

    # ---- pushing to the catalog (anti-entropy) -----------------------------------------------------
    async def sync(self) -> bool:
        """Push what is out of sync; True when everything went through."""
        server = self.server
        node = server.node_name
        address = server.spec.host
        ok = True
        for sid, token in sorted(self.removed_services.items()):
            ok &= (
                await self._rpc(
                    "Catalog.Deregister", {"Node": node, "ServiceID": sid, "Token": token}
                )
                and self.removed_services.pop(sid, None) is not None
            )
        for cid, token in sorted(self.removed_checks.items()):
            ok &= (
                await self._rpc(
                    "Catalog.Deregister", {"Node": node, "CheckID": cid, "Token": token}
                )
                and self.removed_checks.pop(cid, None) is not None
            )
        for sid in sorted(self.services):
            entry = self.services[sid]
            checks = [c for c in self.checks.values() if c.check["ServiceID"] == sid]
            if entry.in_sync and all(c.in_sync for c in checks):
                continue
            args = {
                "Node": node,
                "Address": address,
                "SkipNodeUpdate": True,
                "Service": entry.service,
                "Checks": [c.check for c in checks],
                "Token": entry.token,
            }
            if await self._rpc("Catalog.Register", args):
                entry.in_sync = True
                for c in checks:
                    c.in_sync = True
            else:
                ok = False
        for cid in sorted(self.checks):
            entry = self.checks[cid]
            if entry.in_sync or entry.check["ServiceID"]:
                continue
            args = {
                "Node": node,
                "Address": address,
                "SkipNodeUpdate": True,
                "Checks": [entry.check],
                "Token": entry.token,
            }
            if await self._rpc("Catalog.Register", args):
                entry.in_sync = True
            else:
                ok = False
        return ok

    async def _rpc(self, method: str, args: dict[str, Any]) -> bool:
        server = self.server
        try:
            await server.rpc(method, {"Datacenter": server.datacenter, **args})
        except RpcError as exc:
            server.events.emit(
                server.name,
                "agent_sync_failed",
                {"method": method, "error": exc.message},
                level="WARN",
                subsystem="agent",
                message="failed to sync changes",
            )
            return False
        return True

    # ---- the TTL timers and the anti-entropy pass (one task per incarnation) -------------------------
    async def run(self) -> None:
        next_sync = trio.current_time() + self.sync_interval
        while True:
            wake = min([next_sync, *(min(c.expires, c.next_probe) for c in self.checks.values())])
            with trio.move_on_at(wake):
                await self._kick.wait()
            self._kick = trio.Event()
            now = trio.current_time()
            for cid in sorted(self.checks):
                entry = self.checks.get(cid)
                if entry is None or entry.next_probe > now:
                    continue
                entry.next_probe = now + entry.interval
                if self.prober is not None and not self.server.paused:
                    status, output = await self.prober(
                        entry.check["Type"], entry.probe, entry.timeout
                    )
                    if self.checks.get(cid) is entry:  # not removed meanwhile
                        self._set_status(entry, status, output)
            now = trio.current_time()
            for entry in self.checks.values():
                if entry.ttl and entry.expires <= now:
                    entry.expires = float("inf")
                    output = "TTL expired"
                    if entry.check["Output"] and entry.check["Status"] != CRITICAL:
                        output += "\n\nLast output before TTL expired:\n" + entry.check["Output"]
                    self._set_status(entry, CRITICAL, output)
            dirty = (
                self.removed_services
                or self.removed_checks
                or any(not s.in_sync for s in self.services.values())
                or any(not c.in_sync for c in self.checks.values())
            )
            if now >= next_sync or dirty:
                if now >= next_sync:
                    next_sync = now + self.sync_interval
                if dirty and not self.server.paused:
                    await self.sync()
