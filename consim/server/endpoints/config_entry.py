"""Consul's ConfigEntry endpoint (``config_endpoint.go``): apply (with CAS), get, list and
delete of config entries in the replicated table, and ``Catalog.GatewayServices``, which reads
the ingress and terminating gateways' entries.

ACLs, simplified from each kind's CanRead/CanWrite: the service-scoped kinds (service-defaults,
router, splitter, resolver, intentions, the gateways) need ``service:read`` / ``service:write``
on the entry's name; every other kind is read by anyone and written with ``operator:write``.
"""

from __future__ import annotations

from typing import Any

from consim.net.network import RpcError
from consim.server.endpoints.kvs import blocking_query
from consim.server.endpoints.registry import authorize, endpoint, require
from consim.server.interface import Server
from consim.server.state.base import encode_command
from consim.server.state.catalog import CatalogTable
from consim.server.state.config_entries import (
    DELETE,
    DELETE_CAS,
    KINDS,
    UPSERT,
    UPSERT_CAS,
    ConfigEntryTable,
)

SERVICE_KINDS = frozenset(
    {
        "service-defaults",
        "service-router",
        "service-splitter",
        "service-resolver",
        "service-intentions",
        "ingress-gateway",
        "terminating-gateway",
    }
)
GATEWAY_KINDS = ("ingress-gateway", "terminating-gateway")


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise RpcError(f"invalid config entry kind: {kind}")
    return kind


def _readable(node: Server, args: dict[str, Any]) -> Any:
    authz = authorize(node, args)
    return lambda kind, name: (
        kind not in SERVICE_KINDS or authz.allowed("service", "read", name or None)
    )


def _require_write(node: Server, args: dict[str, Any], kind: str, name: str) -> None:
    if kind in SERVICE_KINDS:
        require(node, args, "service", "write", name)
    else:
        require(node, args, "operator", "write")


async def _apply(node: Server, body: dict[str, Any]) -> Any:
    result = await node.apply_command(encode_command("ConfigEntry", body))
    if isinstance(result, dict) and "Error" in result:
        raise RpcError(str(result["Error"]))
    return result


@endpoint("ConfigEntry.Apply")
async def config_entry_apply(node: Server, args: dict[str, Any]) -> bool:
    entry = dict(args.get("Entry") or {})
    kind = _kind(str(entry.get("Kind") or ""))
    name = str(entry.get("Name") or "")
    if not name:
        raise RpcError("Name is required")
    _require_write(node, args, kind, name)
    op = UPSERT_CAS if args.get("Op") == UPSERT_CAS else UPSERT
    entry.pop("CreateIndex", None)
    entry.pop("ModifyIndex", None)
    return bool(await _apply(node, {"Op": op, "Entry": entry, "Index": args.get("Index", 0)}))


@endpoint("ConfigEntry.Delete")
async def config_entry_delete(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    kind = _kind(str(args.get("Kind") or ""))
    name = str(args.get("Name") or "")
    _require_write(node, args, kind, name)
    op = DELETE_CAS if args.get("Op") == DELETE_CAS else DELETE
    deleted = await _apply(
        node, {"Op": op, "Entry": {"Kind": kind, "Name": name}, "Index": args.get("Index", 0)}
    )
    return {"Deleted": bool(deleted)}


@endpoint("ConfigEntry.Get", read=True)
async def config_entry_get(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    kind = _kind(str(args.get("Kind") or ""))
    name = str(args.get("Name") or "")
    if kind in SERVICE_KINDS:
        require(node, args, "service", "read", name)

    def read() -> tuple[int, Any]:
        table = node.fsm.table(ConfigEntryTable)
        entry = table.get(kind, name)
        return table.index(), dict(entry) if entry is not None else None

    index, entry, meta = await blocking_query(node, args, read)
    return {"Entry": entry, "Index": index, "QueryMeta": meta}


@endpoint("ConfigEntry.List", read=True)
async def config_entry_list(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    kind = str(args.get("Kind") or "")
    if kind:
        _kind(kind)
    readable = _readable(node, args)

    def read() -> tuple[int, Any]:
        table = node.fsm.table(ConfigEntryTable)
        return table.index(), [
            dict(e) for e in table.list(kind) if readable(e["Kind"], e.get("Name", ""))
        ]

    index, entries, meta = await blocking_query(node, args, read)
    return {"Entries": entries, "Index": index, "QueryMeta": meta}


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

    index, services, meta = await blocking_query(node, args, read)
    return {"Services": services, "Index": index, "QueryMeta": meta}
