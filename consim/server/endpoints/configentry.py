"""Consul's ConfigEntry endpoint (``config_endpoint.go``): apply (with CAS), get, list and
delete of config entries in the replicated table.

ACLs, simplified from each kind's CanRead/CanWrite: the service-scoped kinds (service-defaults,
router, splitter, resolver, intentions, the gateways) need ``service:read`` / ``service:write``
on the entry's name; every other kind is read by anyone and written with ``operator:write``.
"""

from __future__ import annotations

from typing import Any

from consim.net.network import RpcError
from consim.server.endpoints.kvs import indexed_reply
from consim.server.endpoints.registry import authorize, endpoint, require
from consim.server.interface import Server
from consim.server.state.base import encode_command
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

    return await indexed_reply(node, args, read, "Entry")


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

    return await indexed_reply(node, args, read, "Entries")
