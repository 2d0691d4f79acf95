"""Consul's Catalog endpoint (``catalog_endpoint.go``).

Registrations are checked here (Consul's preApply texts) and applied through Raft to the
catalog table (``consim.server.state.catalog``); reads are blocking queries with the same
consistency modes as KV. ACLs: ``node:write`` on a node registration (services and checks are
not yet covered by consim's ACL rules) and ``node:read`` filtering on node listings.
"""

from __future__ import annotations

import re
from typing import Any

from consim.bexpr import FilterError, Predicate, compile_filter
from consim.net.network import RpcError
from consim.server.endpoints.kvs import indexed_reply
from consim.server.endpoints.registry import authorize, endpoint, require
from consim.server.interface import Server
from consim.server.state.base import encode_command
from consim.server.state.catalog import STATUSES, CatalogTable
from consim.server.state.config_entries import ConfigEntryTable

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def node_record(args: dict[str, Any], datacenter: str) -> dict[str, Any]:
    """structs.Node from a RegisterRequest (Go field order)."""
    return {
        "ID": str(args.get("ID") or ""),
        "Node": str(args.get("Node") or ""),
        "Address": str(args.get("Address") or ""),
        "Datacenter": str(args.get("Datacenter") or datacenter),
        "TaggedAddresses": args.get("TaggedAddresses") or None,
        "Meta": args.get("NodeMeta") or None,
    }


def service_record(service: dict[str, Any]) -> dict[str, Any]:
    """structs.NodeService from a registration's Service (Go field order)."""
    name = str(service.get("Service") or "")
    sid = str(service.get("ID") or "") or name
    weights = service.get("Weights")
    return {
        "Kind": str(service.get("Kind") or ""),
        "ID": sid,
        "Service": name,
        "Tags": list(service["Tags"]) if service.get("Tags") is not None else None,
        "Address": str(service.get("Address") or ""),
        "TaggedAddresses": service.get("TaggedAddresses") or None,
        "Meta": dict(service["Meta"]) if service.get("Meta") else None,
        "Port": int(service.get("Port") or 0),
        # ToServiceNode stores 1/1 for absent (or invalid) weights; reads show that
        "Weights": dict(weights)
        if weights and int(weights.get("Passing") or 0) >= 1
        else {"Passing": 1, "Warning": 1},
        "EnableTagOverride": bool(service.get("EnableTagOverride")),
        "Proxy": dict(service["Proxy"]) if isinstance(service.get("Proxy"), dict) else None,
        "Locality": dict(service["Locality"]) if service.get("Locality") else None,
    }


def check_record(check: dict[str, Any], node: str) -> dict[str, Any]:
    """structs.HealthCheck from a registration's Check (Go field order)."""
    name = str(check.get("Name") or "")
    definition = check.get("Definition") or {}
    return {
        "Node": str(check.get("Node") or node),
        "CheckID": str(check.get("CheckID") or "") or name,  # Consul's checkPreApply
        "Name": name,
        "Status": str(check.get("Status") or ""),
        "Notes": str(check.get("Notes") or ""),
        "Output": str(check.get("Output") or ""),
        "ServiceID": str(check.get("ServiceID") or ""),
        "ServiceName": str(check.get("ServiceName") or ""),
        "ServiceTags": check.get("ServiceTags"),
        "Type": str(check.get("Type") or ""),
        "Interval": str(check.get("Interval") or definition.get("Interval") or ""),
        "Timeout": str(check.get("Timeout") or definition.get("Timeout") or ""),
        "ExposedPort": int(check.get("ExposedPort") or 0),
        "Definition": dict(definition) if isinstance(definition, dict) else {},
    }


def registration(args: dict[str, Any], datacenter: str) -> dict[str, Any]:
    """Consul's Catalog.Register checks on a RegisterRequest; the command body to propose."""
    node = str(args.get("Node") or "")
    if not node:
        raise RpcError("Must provide node")
    node_id = str(args.get("ID") or "")
    if node_id and not _UUID.match(node_id):
        raise RpcError("Bad node ID: uuid string is wrong length")
    skip = bool(args.get("SkipNodeUpdate"))
    if not args.get("Address") and not skip:
        raise RpcError("Must provide address if SkipNodeUpdate is not set")
    service = None
    if args.get("Service"):
        service = service_record(dict(args["Service"]))
        if service["ID"] and not service["Service"]:
            raise RpcError(
                "Must provide service name (Service.Service) when service ID is provided"
            )
        if service["Address"] in ("0.0.0.0", "::", "[::]"):
            raise RpcError("Invalid service address")
    checks = [dict(c) for c in args.get("Checks") or []]
    if args.get("Check"):
        checks.append(dict(args["Check"]))
    records = [check_record(c, node) for c in checks]
    for check in records:
        if check["Node"].lower() != node.lower():
            raise RpcError(
                f"Node '{check['Node']}' for check '{check['CheckID']}' doesn't match register "
                f"request node '{node}'"
            )
        if check["Status"] and check["Status"] not in STATUSES:
            raise RpcError(f"Invalid check status: '{check['Status']}'")
    return {
        "Node": node_record(args, datacenter),
        "Service": service,
        "Checks": records,
        "SkipNodeUpdate": skip,
    }


async def _apply(node: Server, kind: str, body: dict[str, Any]) -> Any:
    result = await node.apply_command(encode_command(kind, body))
    if isinstance(result, dict) and "Error" in result:
        raise RpcError(str(result["Error"]))
    return result


@endpoint("Catalog.Register")
async def catalog_register(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    body = registration(args, node.datacenter)
    name = body["Node"]["Node"]
    existing = node.fsm.catalog.nodes.get(name)
    changes_node = existing is None or any(
        existing.get(k) != body["Node"].get(k) for k in ("ID", "Address", "TaggedAddresses", "Meta")
    )
    # Consul's vetRegisterWithACL: re-posting a node unchanged needs no node:write.
    if changes_node and not (body["SkipNodeUpdate"] and existing is not None):
        require(node, args, "node", "write", name)
    services = node.fsm.catalog.services.get(name, {})
    service = body["Service"]
    if service:
        require(node, args, "service", "write", service["Service"])
        replaced = services.get(service["ID"])
        if replaced is not None and replaced["Service"] != service["Service"]:
            # overwriting another service's registration is a delete of that one
            require(node, args, "service", "write", replaced["Service"])
    for check in body["Checks"]:
        if not check["ServiceID"]:
            require(node, args, "node", "write", name)
        elif not service or check["ServiceID"] != service["ID"]:
            other = services.get(check["ServiceID"])
            if other is not None:
                require(node, args, "service", "write", other["Service"])
            elif not authorize(node, args).unrestricted:
                raise RpcError(
                    f"Unknown service ID '{check['ServiceID']}' for check ID '{check['CheckID']}'"
                )
    await _apply(node, "Register", body)
    return {}


def _vet_deregister(node: Server, args: dict[str, Any], name: str) -> None:
    """Consul's vetDeregisterWithACL: node:write allows anything on the node; otherwise
    service:write on the service (or on the service of the check) being removed."""
    if authorize(node, args).allowed("node", "write", name):
        return
    service_id = str(args.get("ServiceID") or "")
    check_id = str(args.get("CheckID") or "")
    catalog = node.fsm.catalog
    if service_id:
        service = catalog.services.get(name, {}).get(service_id)
        if service is None:
            raise RpcError(f"Unknown service ID '{service_id}'")
        require(node, args, "service", "write", service["Service"])
    elif check_id:
        check = catalog.checks.get(name, {}).get(check_id)
        if check is None:
            raise RpcError(f"Unknown check ID '{check_id}'")
        if check.get("ServiceID"):
            require(node, args, "service", "write", check["ServiceName"])
        else:
            require(node, args, "node", "write", name)
    else:
        require(node, args, "node", "write", name)


@endpoint("Catalog.Deregister")
async def catalog_deregister(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    name = str(args.get("Node") or "")
    if not name:
        raise RpcError("Must provide node")
    _vet_deregister(node, args, name)
    await _apply(
        node,
        "Deregister",
        {
            "Node": name,
            "ServiceID": str(args.get("ServiceID") or ""),
            "CheckID": str(args.get("CheckID") or ""),
        },
    )
    return {}


@endpoint("Catalog.ListDatacenters", local=True)
async def catalog_datacenters(node: Server, args: dict[str, Any]) -> list[str]:
    # Consul orders them by distance; consim has no coordinates: its own first, then by name.
    others = sorted(dc for dc in node.known_datacenters() if dc != node.datacenter)
    return [node.datacenter, *others]


def record_filter(args: dict[str, Any]) -> Predicate:
    """The request's ``Filter`` (go-bexpr) as a predicate; every record passes without one."""
    text = str(args.get("Filter") or "")
    if not text:
        return lambda record: True
    try:
        return compile_filter(text)
    except FilterError as exc:
        raise RpcError(str(exc)) from None


def readable_nodes(node: Server, args: dict[str, Any]) -> Any:
    authz = authorize(node, args)
    if authz.unrestricted:
        return lambda name: True
    return lambda name: authz.allowed("node", "read", name)


@endpoint("Catalog.ListNodes", read=True)
async def catalog_nodes(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    readable = readable_nodes(node, args)
    meta_filter = dict(args.get("NodeMetaFilters") or {})
    wanted = record_filter(args)

    def read() -> tuple[int, Any]:
        catalog = node.fsm.catalog
        out = []
        for name in sorted(catalog.nodes):
            n = catalog.nodes[name]
            meta = n.get("Meta") or {}
            if (
                readable(name)
                and all(meta.get(k) == v for k, v in meta_filter.items())
                and wanted(n)
            ):
                out.append(dict(n))
        return node.fsm.max_index("nodes"), out

    return await indexed_reply(node, args, read, "Nodes")


@endpoint("Catalog.ListServices", read=True)
async def catalog_services(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    wanted = record_filter(args)

    def read() -> tuple[int, Any]:
        index = node.fsm.max_index("nodes", "services")
        if not args.get("Filter"):
            return index, node.fsm.catalog.service_names()
        # Consul filters the service instances, then lists the names and tags of those left.
        names: dict[str, list[str]] = {}
        for n, s in node.fsm.catalog.all_instances():
            if wanted(service_node(n, s)):
                tags = names.setdefault(s["Service"], [])
                tags.extend(t for t in s.get("Tags") or [] if t not in tags)
        return index, {name: sorted(names[name]) for name in sorted(names)}

    return await indexed_reply(node, args, read, "Services")


def service_node(n: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    """structs.ServiceNode: a node and one of its services, flattened (Go field order)."""
    return {
        "ID": n["ID"],
        "Node": n["Node"],
        "Address": n["Address"],
        "Datacenter": n["Datacenter"],
        "TaggedAddresses": n.get("TaggedAddresses"),
        "NodeMeta": n.get("Meta"),
        "ServiceKind": s.get("Kind", ""),
        "ServiceID": s["ID"],
        "ServiceName": s["Service"],
        "ServiceTags": s.get("Tags"),
        "ServiceAddress": s.get("Address", ""),
        "ServiceTaggedAddresses": s.get("TaggedAddresses"),
        "ServiceWeights": s.get("Weights") or {"Passing": 1, "Warning": 1},
        "ServiceMeta": s.get("Meta"),
        "ServicePort": s.get("Port", 0),
        "ServiceEnableTagOverride": s.get("EnableTagOverride", False),
        "CreateIndex": s["CreateIndex"],
        "ModifyIndex": s["ModifyIndex"],
    }


@endpoint("Catalog.ServiceNodes", read=True)
async def catalog_service_nodes(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    name = str(args.get("ServiceName") or "")
    tags = [str(t) for t in args.get("ServiceTags") or []]
    readable = readable_nodes(node, args)
    wanted = record_filter(args)

    def read() -> tuple[int, Any]:
        out = [
            service_node(n, s)
            for n, s in node.fsm.catalog.service_instances(name)
            if readable(n["Node"]) and all(t in (s.get("Tags") or []) for t in tags)
        ]
        out = [sn for sn in out if wanted(sn)]
        if args.get("Connect"):
            out = []  # no Connect in consim: no instance is connect-capable
        return node.fsm.max_index("nodes", "services"), out

    return await indexed_reply(node, args, read, "ServiceNodes")


@endpoint("Catalog.NodeServices", read=True)
async def catalog_node_services(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    name = str(args.get("Node") or "")
    require(node, args, "node", "read", name)
    wanted = record_filter(args)

    def read() -> tuple[int, Any]:
        catalog = node.fsm.catalog
        if name not in catalog.nodes:
            return node.fsm.max_index("nodes", "services"), None
        services = catalog.services.get(name, {})
        # The filter applies to each entry of Services (NodeService), not to the node.
        return node.fsm.max_index("nodes", "services"), {
            "Node": dict(catalog.nodes[name]),
            "Services": {
                sid: dict(services[sid]) for sid in sorted(services) if wanted(services[sid])
            },
        }

    return await indexed_reply(node, args, read, "NodeServices")


# ---- gateway services: what the ingress and terminating gateways' config entries link

GATEWAY_KINDS = ("ingress-gateway", "terminating-gateway")


def gateway_services(node: Server, gateway: str) -> list[dict[str, Any]]:
    """structs.GatewayServices of ``gateway``, from its ingress or terminating entry: one per
    listed service (``*`` stands for every service in the catalog, as Consul's wildcard)."""
    table = node.fsm.table(ConfigEntryTable)
    out: list[dict[str, Any]] = []
    for kind in GATEWAY_KINDS:
        entry = table.get(kind, gateway)
        if entry is None:
            continue
        if kind == "ingress-gateway":
            links = [
                (svc, listener)
                for listener in entry.get("Listeners") or []
                for svc in listener.get("Services") or []
            ]
        else:
            links = [(svc, {}) for svc in entry.get("Services") or []]
        for svc, listener in links:
            name = str(svc.get("Name") or "")
            names = [name]
            wildcard = name == "*"
            if wildcard:
                catalog = node.fsm.table(CatalogTable)
                names = [
                    s
                    for s in catalog.service_names()
                    if s != gateway and not _is_gateway(catalog, s)
                ]
            for service in names:
                gs: dict[str, Any] = {
                    "Gateway": {"Name": gateway},
                    "Service": {"Name": service},
                    "GatewayKind": kind,
                }
                if kind == "ingress-gateway":
                    gs["Port"] = int(listener.get("Port") or 0)
                    gs["Protocol"] = str(listener.get("Protocol") or "tcp")
                    if svc.get("Hosts"):
                        gs["Hosts"] = list(svc["Hosts"])
                else:
                    for field in ("CAFile", "CertFile", "KeyFile", "SNI"):
                        if svc.get(field):
                            gs[field] = str(svc[field])
                if wildcard:
                    gs["FromWildcard"] = True
                gs["CreateIndex"] = entry["CreateIndex"]
                gs["ModifyIndex"] = entry["ModifyIndex"]
                out.append(gs)
    return sorted(out, key=lambda g: g["Service"]["Name"])


def _is_gateway(catalog: CatalogTable, service: str) -> bool:
    return any(
        s.get("Kind") in GATEWAY_KINDS
        for _n, s in catalog.all_instances()
        if s.get("Service") == service
    )


@endpoint("Catalog.GatewayServices", read=True)
async def catalog_gateway_services(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    gateway = str(args.get("ServiceName") or "")
    require(node, args, "service", "read", gateway)

    def read() -> tuple[int, Any]:
        index = node.fsm.max_index(ConfigEntryTable.name, "services")
        return index, gateway_services(node, gateway)

    return await indexed_reply(node, args, read, "Services")
