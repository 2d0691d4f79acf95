"""The agent endpoints for its own services and checks (Consul's ``agent_endpoint.go``:
AgentServices, AgentRegisterService, AgentRegisterCheck, TTL updates, maintenance), over the
node's ``LocalState``. The HTTP layer decodes the bodies (Go's case-insensitive field names);
this module checks them, changes the local state and syncs it to the catalog. Refusals are
``RpcError``s carrying the HTTP status Consul answers with (``.status``)."""

from __future__ import annotations

from typing import Any

from consim.net.network import RpcError
from consim.server.endpoints import require
from consim.server.endpoints.catalog import record_filter
from consim.server.local_state import CRITICAL, PASSING, WARNING, AgentError, LocalState

_SERVICE_FIELDS = (
    "Kind",
    "ID",
    "Service",
    "Tags",
    "Meta",
    "Port",
    "Address",
    "TaggedAddresses",
    "Weights",
    "EnableTagOverride",
)


def _error(exc: AgentError) -> RpcError:
    err = RpcError(exc.text)
    err.status = exc.status  # type: ignore[attr-defined]
    return err


def agent_service(service: dict[str, Any], datacenter: str) -> dict[str, Any]:
    """api.AgentService (buildAgentService): empty tags and meta as [] and {}."""
    out: dict[str, Any] = {}
    for k in _SERVICE_FIELDS:
        v = service.get(k)
        if k in ("Kind", "TaggedAddresses") and not v:
            continue  # omitempty
        out[k] = v
    out["Tags"] = list(service.get("Tags") or [])
    out["Meta"] = dict(service.get("Meta") or {})
    if service.get("Kind") == "connect-proxy" and service.get("Proxy") is not None:
        out["Proxy"] = dict(service["Proxy"])  # only a proxy shows its proxy configuration
    out["Datacenter"] = datacenter
    if service.get("Locality"):
        out["Locality"] = dict(service["Locality"])
    return out


def _service_record(definition: dict[str, Any]) -> dict[str, Any]:
    name = str(definition.get("Name") or "")
    if not name:
        raise AgentError(400, "Missing service name")
    address = str(definition.get("Address") or "")
    if address in ("0.0.0.0", "::", "[::]"):
        raise AgentError(400, "Invalid service address")
    weights = definition.get("Weights") or {"Passing": 1, "Warning": 1}
    if not isinstance(weights, dict) or int(weights.get("Passing") or 0) < 1:
        raise AgentError(400, "Invalid Weights: Passing must be greater than 0")
    return {
        "Kind": str(definition.get("Kind") or ""),
        "ID": str(definition.get("ID") or "") or name,
        "Service": name,
        "Tags": [str(t) for t in definition.get("Tags") or []] or None,
        "Address": address,
        "TaggedAddresses": _tagged(definition.get("TaggedAddresses")),
        "Meta": {str(k): str(v) for k, v in (definition.get("Meta") or {}).items()} or None,
        "Port": int(definition.get("Port") or 0),
        "Weights": {
            "Passing": int(weights.get("Passing") or 1),
            "Warning": int(weights.get("Warning") or 0),
        },
        "EnableTagOverride": bool(definition.get("EnableTagOverride")),
        "Proxy": _proxy(definition.get("Proxy")),
        "Locality": _locality(definition.get("Locality")),
    }


_PROXY_FIELDS = (
    "DestinationServiceName",
    "DestinationServiceID",
    "LocalServiceAddress",
    "LocalServicePort",
    "LocalServiceSocketPath",
    "Mode",
    "Config",
    "Upstreams",
    "MeshGateway",
    "Expose",
)


def _proxy(value: Any) -> dict[str, Any] | None:
    """A connect-proxy's ConnectProxyConfig with Go's field names, whatever case was sent."""
    if not isinstance(value, dict):
        return None
    by_lower = {f.lower(): f for f in _PROXY_FIELDS}
    out = {
        by_lower[k.lower().replace("_", "")]: v
        for k, v in value.items()
        if k.lower().replace("_", "") in by_lower
    }
    out.setdefault("MeshGateway", {})
    out.setdefault("Expose", {})
    return out


def _locality(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict) or not value:
        return None
    low = {str(k).lower(): str(v) for k, v in value.items()}
    return {"Region": low.get("region", ""), "Zone": low.get("zone", "")}


SIDECAR_PORTS = range(21000, 21256)  # Consul's sidecar_min_port .. sidecar_max_port


def sidecar(
    service: dict[str, Any], taken: set[int]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Consul's sidecarServiceFromNodeService for ``connect { sidecar_service {} }``: the proxy
    service registered beside ``service``, on the first free sidecar port, and its checks."""
    port = next((p for p in SIDECAR_PORTS if p not in taken), 0)
    if not port:
        raise AgentError(
            400,
            "Invalid SidecarService: no port provided for sidecar_service "
            "and none left in the configured range [21000, 21255]",
        )
    proxy = {
        "Kind": "connect-proxy",
        "ID": f"{service['ID']}-sidecar-proxy",
        "Service": f"{service['Service']}-sidecar-proxy",
        "Tags": service["Tags"],
        "Address": "",
        "TaggedAddresses": None,
        "Meta": service["Meta"],
        "Port": port,
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
        "Proxy": {
            "DestinationServiceName": service["Service"],
            "DestinationServiceID": service["ID"],
            "LocalServiceAddress": "127.0.0.1",
            "LocalServicePort": service["Port"],
            "MeshGateway": {},
            "Expose": {},
        },
        "Locality": service.get("Locality"),
    }
    checks = [
        {"Name": "Connect Sidecar Listening", "TCP": f"127.0.0.1:{port}", "Interval": "10s"},
        {"Name": f"Connect Sidecar Aliasing {service['ID']}", "AliasService": service["ID"]},
    ]
    return proxy, checks


def _tagged(value: Any) -> dict[str, Any] | None:
    """map[string]ServiceAddress: {"Address", "Port"} whatever case the client wrote."""
    if not isinstance(value, dict) or not value:
        return None
    out = {}
    for tag, addr in sorted(value.items()):
        addr = {str(k).lower(): v for k, v in (addr or {}).items()}
        out[str(tag)] = {
            "Address": str(addr.get("address") or ""),
            "Port": int(addr.get("port") or 0),
        }
    return out


def _vet_service_update(node: Any, local: LocalState, sid: str, token: str) -> None:
    """vetServiceUpdateWithAuthorizer: service:write on the existing service (an unknown one is
    the 404 the local state gives)."""
    entry = local.services.get(sid)
    if entry is not None:
        require(node, {"Token": token}, "service", "write", entry.service["Service"])


def _vet_check_update(node: Any, local: LocalState, cid: str, token: str) -> None:
    """vetCheckUpdateWithAuthorizer: a service's check needs service:write, a node's node:write."""
    entry = local.checks.get(cid)
    if entry is None:
        return
    if entry.check["ServiceID"]:
        require(node, {"Token": token}, "service", "write", entry.check["ServiceName"])
    else:
        require(node, {"Token": token}, "node", "write", node.node_name)


async def local_agent(node: Any, op: str, args: dict[str, Any], token: str) -> Any:
    """Run one agent operation ``op`` on ``node``'s local state (see the module docstring)."""
    local: LocalState = node.local_state
    dc = node.datacenter
    try:
        if op == "services":
            wanted = record_filter(args)
            shown = {sid: agent_service(s.service, dc) for sid, s in sorted(local.services.items())}
            return {sid: svc for sid, svc in shown.items() if wanted(svc)}
        if op == "service":
            entry = local.services.get(args["ID"])
            if entry is None:
                raise AgentError(404, f"unknown service ID: {args['ID']}")
            return agent_service(entry.service, dc)
        if op == "checks":
            # structs.HealthCheck with its RaftIndex, zero on the agent
            wanted = record_filter(args)
            return {
                cid: {**c.check, "CreateIndex": 0, "ModifyIndex": 0}
                for cid, c in sorted(local.checks.items())
                if wanted(c.check)
            }
        if op == "service_register":
            definition = args["Definition"]
            service = _service_record(definition)
            checks = list(definition.get("Checks") or [])
            if definition.get("Check"):
                checks.insert(0, definition["Check"])
            for check in checks:
                status = check.get("Status")
                if status and status not in (PASSING, WARNING, CRITICAL):
                    raise AgentError(400, "Status for checks must 'passing', 'warning', 'critical'")
            connect = definition.get("Connect")
            side = None
            if isinstance(connect, dict):
                low = {str(k).lower().replace("_", ""): v for k, v in connect.items()}
                if isinstance(low.get("sidecarservice"), dict):
                    taken = {e.service["Port"] for e in local.services.values()}
                    side = sidecar(service, taken)
            # vetServiceRegister: service:write on it (and on what it replaces)
            require(node, {"Token": token}, "service", "write", service["Service"])
            replaced = local.services.get(service["ID"])
            if replaced is not None and replaced.service["Service"] != service["Service"]:
                require(node, {"Token": token}, "service", "write", replaced.service["Service"])
            local.add_service(service, checks, token)
            if side is not None:
                local.add_service(side[0], side[1], token, sidecar_of=service["ID"])
        elif op == "service_deregister":
            _vet_service_update(node, local, args["ID"], token)
            local.remove_service(args["ID"])
        elif op == "check_register":
            definition = args["Definition"]
            if not definition.get("Name"):
                raise AgentError(400, "Missing check name")
            status = definition.get("Status")
            if status and status not in (PASSING, WARNING, CRITICAL):
                raise AgentError(400, "Bad check status")
            owner = local.services.get(str(definition.get("ServiceID") or ""))
            if not definition.get("ServiceID"):
                require(node, {"Token": token}, "node", "write", node.node_name)
            elif owner is not None:
                require(node, {"Token": token}, "service", "write", owner.service["Service"])
            local.add_check(definition, token)
        elif op == "check_deregister":
            _vet_check_update(node, local, args["ID"], token)
            local.remove_check(args["ID"])
        elif op == "check_update":
            _vet_check_update(node, local, args["ID"], token)
            local.update_ttl(args["ID"], args["Status"], args["Output"])
        elif op == "service_maintenance":
            _vet_service_update(node, local, args["ID"], token)
            local.service_maintenance(args["ID"], args["Enable"], args["Reason"], token)
        elif op == "node_maintenance":
            require(node, {"Token": token}, "node", "write", node.node_name)
            local.node_maintenance(args["Enable"], args["Reason"], token)
        else:
            raise AgentError(500, f"unknown agent operation {op}")
    except AgentError as exc:
        raise _error(exc) from None
    # Consul's syncChanges: push now; a failure only logs (anti-entropy retries later).
    await local.sync()
    return None
