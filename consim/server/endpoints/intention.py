"""Consul's Intention endpoint, as Consul 1.9+ keeps intentions: each destination's
``service-intentions`` config entry holds its ``Sources`` (name, action, description, meta,
permissions). Exact upsert/delete rewrite that entry (a CAS write on its ModifyIndex, retried
when another write got in first); list, match and check read it.

consim runs no Connect proxies: these are the stored rules and the decisions the API answers,
nothing enforces them. ACLs: consim's rules have no ``intentions`` field, so writes need
``service:write`` and reads ``service:read`` on the destination.
"""

from __future__ import annotations

from typing import Any

from consim.net.network import RpcError
from consim.server.endpoints.configentry import config_entry_apply, config_entry_delete
from consim.server.endpoints.kvs import blocking_query, indexed_reply
from consim.server.endpoints.registry import authorize, endpoint, require
from consim.server.interface import Server
from consim.server.state.config_entries import ConfigEntryTable

KIND = "service-intentions"
WILDCARD = "*"


def precedence(source: str, destination: str) -> int:
    """Consul's precedence table with the default namespace exact: exact/exact 9, */exact 8,
    exact/* 6, */* 5."""
    if destination == WILDCARD:
        return 5 if source == WILDCARD else 6
    return 8 if source == WILDCARD else 9


def intention(entry: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """structs.Intention of one source of a service-intentions entry (OSS: no namespaces)."""
    out: dict[str, Any] = {"ID": ""}
    if source.get("Description"):
        out["Description"] = source["Description"]
    out["SourceName"] = source.get("Name", "")
    out["DestinationName"] = entry["Name"]
    out["SourceType"] = source.get("Type") or "consul"
    if source.get("Action"):
        out["Action"] = source["Action"]
    if source.get("Permissions"):
        out["Permissions"] = source["Permissions"]
    if source.get("LegacyMeta") or source.get("Meta"):
        out["Meta"] = source.get("LegacyMeta") or source.get("Meta")
    out["Precedence"] = precedence(out["SourceName"], out["DestinationName"])
    out["CreateIndex"] = entry["CreateIndex"]
    out["ModifyIndex"] = entry["ModifyIndex"]
    return out


def _sorted(intentions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Consul sorts by precedence (highest first), then by name for a stable answer
    return sorted(
        intentions, key=lambda i: (-i["Precedence"], i["SourceName"], i["DestinationName"])
    )


def all_intentions(node: Server) -> list[dict[str, Any]]:
    table = node.fsm.table(ConfigEntryTable)
    return [intention(e, s) for e in table.list(KIND) for s in e.get("Sources") or []]


@endpoint("Intention.Apply")
async def intention_apply(node: Server, args: dict[str, Any]) -> bool:
    """Op "upsert" (Intention: SourceName, DestinationName, Action...) or "delete"."""
    given = dict(args.get("Intention") or {})
    src, dst = str(given.get("SourceName") or ""), str(given.get("DestinationName") or "")
    if not src or not dst:
        raise RpcError("Intention source and destination names are required")
    op = str(args.get("Op") or "upsert")
    if (
        op == "upsert"
        and given.get("Action") not in ("allow", "deny")
        and not given.get("Permissions")
    ):
        raise RpcError('Action must be set to "allow" or "deny"')
    require(node, args, "service", "write", dst)
    # a CAS rewrite of the destination's entry; another write in between makes us retry
    for _attempt in range(10):
        existing = node.fsm.table(ConfigEntryTable).get(KIND, dst)
        sources = [s for s in (existing or {}).get("Sources") or [] if s.get("Name") != src]
        if op == "upsert":
            source: dict[str, Any] = {"Name": src, "Type": given.get("SourceType") or "consul"}
            for field in ("Action", "Description", "Permissions"):
                if given.get(field):
                    source[field] = given[field]
            if given.get("Meta"):
                source["LegacyMeta"] = given["Meta"]
            sources.append(source)
        elif existing is None or len(sources) == len(existing.get("Sources") or []):
            raise RpcError("Intention not found")
        entry = {**(existing or {}), "Kind": KIND, "Name": dst, "Sources": sources}
        request = {
            **args,
            "Entry": entry,
            "Op": "upsert-cas",
            "Index": existing["ModifyIndex"] if existing else 0,
        }
        if not sources:
            deleted = await _delete(node, args, dst, existing)
            if deleted:
                return True
            continue
        if await config_entry_apply(node, request):
            return True
    raise RpcError("intention write kept conflicting with other writes")


async def _delete(
    node: Server, args: dict[str, Any], dst: str, existing: dict[str, Any] | None
) -> bool:
    reply = await config_entry_delete(
        node,
        {
            **args,
            "Kind": KIND,
            "Name": dst,
            "Op": "delete-cas",
            "Index": existing["ModifyIndex"] if existing else 0,
        },
    )
    return bool(reply.get("Deleted"))


@endpoint("Intention.Get", read=True)
async def intention_get(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    src, dst = str(args.get("SourceName") or ""), str(args.get("DestinationName") or "")
    require(node, args, "service", "read", dst)

    def read() -> tuple[int, Any]:
        table = node.fsm.table(ConfigEntryTable)
        entry = table.get(KIND, dst)
        found = [
            intention(entry, s) for s in (entry or {}).get("Sources") or [] if s.get("Name") == src
        ]
        return table.index(), found

    index, found, meta = await blocking_query(node, args, read)
    if not found:
        raise RpcError("Intention not found")
    return {"Intentions": found, "Index": index, "QueryMeta": meta}


@endpoint("Intention.List", read=True)
async def intention_list(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    authz = authorize(node, args)

    def read() -> tuple[int, Any]:
        found = [
            i
            for i in all_intentions(node)
            if authz.allowed("service", "read", i["DestinationName"])
        ]
        return node.fsm.table(ConfigEntryTable).index(), _sorted(found)

    return await indexed_reply(node, args, read, "Intentions")


def matching(node: Server, by: str, name: str) -> list[dict[str, Any]]:
    """Intentions whose source (by="source") or destination names ``name`` or ``*``."""
    field = "SourceName" if by == "source" else "DestinationName"
    return _sorted([i for i in all_intentions(node) if i[field] in (name, WILDCARD)])


@endpoint("Intention.Match", read=True)
async def intention_match(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    by = str(args.get("Type") or "destination")
    names = [str(n) for n in args.get("Names") or []]
    for name in names:
        require(node, args, "service", "read", name)

    def read() -> tuple[int, Any]:
        return node.fsm.table(ConfigEntryTable).index(), [matching(node, by, n) for n in names]

    return await indexed_reply(node, args, read, "Matches")


@endpoint("Intention.Check", read=True)
async def intention_check(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    """The first intention by precedence whose source matches decides; none: the ACL default
    policy (allow without ACLs), as Consul's IntentionDefaultAllow."""
    src, dst = str(args.get("SourceName") or ""), str(args.get("DestinationName") or "")
    require(node, args, "service", "read", dst)
    for i in matching(node, "destination", dst):
        if i["SourceName"] in (src, WILDCARD):
            return {"Allowed": i.get("Action") == "allow"}
    acl = node.acl
    return {"Allowed": not acl.enabled or acl.default_policy == "allow"}
