"""Consul's KVS endpoint (``kvs_endpoint.go``) and its blocking queries (``blockingQuery``)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import trio

from consim.acl import PermissionDenied
from consim.net.network import RpcError
from consim.server.endpoints.registry import authorize, endpoint, require
from consim.server.fsm import pack_command
from consim.server.interface import Server
from consim.structs import DEFAULT_QUERY_TIME, JITTER_FRACTION, MAX_QUERY_TIME

ERR_NOT_READY_CONSISTENT = "Not ready to serve consistent reads"


async def _read(
    node: Server, args: dict[str, Any], read: Callable[[], tuple[int, Any]]
) -> tuple[int, Any, dict[str, Any]]:
    """Consul's blockingQuery: consistency check, then wait for an index past MinQueryIndex."""
    if args.get("RequireConsistent"):
        await consistent_read(node)
    min_index = int(args.get("MinQueryIndex") or 0)
    max_time = 0.0
    if min_index > 0:
        # Consul's blockingQuery: default 5m, at most 10m, plus up to 1/16 of jitter.
        max_time = min(float(args.get("MaxQueryTime") or 0) or DEFAULT_QUERY_TIME, MAX_QUERY_TIME)
        max_time += node.rng.random() * max_time / JITTER_FRACTION
    deadline = trio.current_time() + max_time
    index, result = read()
    if min_index > 0:
        while index <= min_index and trio.current_time() < deadline:
            with trio.move_on_at(deadline):
                await node.wait_fsm_change()
            if args.get("RequireConsistent"):
                await consistent_read(node)
            index, result = read()
    return index, result, query_meta(node, args, index)


# What the other families' reads use (the same consistency modes and blocking as KV).
blocking_query = _read


async def indexed_reply(
    node: Server, args: dict[str, Any], read: Callable[[], tuple[int, Any]], field: str
) -> dict[str, Any]:
    """A blocking query answered as Consul's ``Indexed*`` structs are: ``read()``'s result as
    ``field`` (``Nodes``, ``Coordinates``...), with the index and the query meta."""
    index, result, meta = await _read(node, args, read)
    return {field: result, "Index": index, "QueryMeta": meta}


async def consistent_read(node: Server) -> None:
    if not await node.verify_leader():
        raise RpcError("node is not the leader")
    if not node.consistent_ready:
        raise RpcError(ERR_NOT_READY_CONSISTENT)


def query_meta(node: Server, args: dict[str, Any], index: int) -> dict[str, Any]:
    core = node.raft()
    if args.get("AllowStale"):
        level = "stale"
    elif args.get("RequireConsistent"):
        level = "consistent"
    else:
        level = "leader"
    contact = node.last_contact_seconds()
    return {
        "Index": index,
        "LastContact": 0.0 if contact == float("inf") else contact,
        "KnownLeader": core.leader_id is not None,
        "ConsistencyLevel": level,
    }


@endpoint("KVS.Get")
async def kvs_get(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    key = str(args.get("Key", ""))
    require(node, args, "key", "read", key)

    def read() -> tuple[int, Any]:
        index, entry = node.fsm.get(key)
        return index, [] if entry is None else [entry.to_wire()]

    index, entries, meta = await _read(node, args, read)
    return {"Entries": entries, "Index": index, "QueryMeta": meta}


def _filtered(args: dict[str, Any], meta: dict[str, Any], filtered: bool) -> dict[str, Any]:
    # Consul's maskResultsFilteredByACLs: an anonymous caller is never told what it missed.
    if filtered and args.get("Token"):
        meta["ResultsFilteredByACLs"] = True
    return meta


@endpoint("KVS.List")
async def kvs_list(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    # Consul checks nothing up front (acl.enable_key_list_policy is off by default) and filters
    # each entry by key:read: a listing answers the readable subset, or nothing (404).
    prefix = str(args.get("Key", ""))
    authz = authorize(node, args)
    filtered = [False]

    def read() -> tuple[int, Any]:
        index, entries = node.fsm.list(prefix)
        if authz.unrestricted:
            return index, [e.to_wire() for e in entries]
        readable = set(authz.filter_keys([e.key for e in entries]))
        filtered[0] = len(readable) != len(entries)
        return index, [e.to_wire() for e in entries if e.key in readable]

    index, entries, meta = await _read(node, args, read)
    return {"Entries": entries, "Index": index, "QueryMeta": _filtered(args, meta, filtered[0])}


@endpoint("KVS.ListKeys")
async def kvs_list_keys(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    prefix = str(args.get("Key", ""))
    authz = authorize(node, args)
    separator = str(args.get("Separator") or "")
    filtered = [False]

    def read() -> tuple[int, Any]:
        # Filter the entries first, then cut at the separator (Consul's ListKeys), so a
        # "directory" shows only when one of its keys is readable.
        if authz.unrestricted:
            return node.fsm.list_keys(prefix, separator)
        index, entries = node.fsm.list(prefix)
        readable = authz.filter_keys([e.key for e in entries])
        filtered[0] = len(readable) != len(entries)
        return index, _keys_to_separator(readable, prefix, separator)

    index, keys, meta = await _read(node, args, read)
    return {"Keys": keys, "Index": index, "QueryMeta": _filtered(args, meta, filtered[0])}


def _keys_to_separator(keys: list[str], prefix: str, separator: str) -> list[str]:
    if not separator:
        return keys
    out: list[str] = []
    seen: set[str] = set()
    for key in keys:
        cut = key.find(separator, len(prefix))
        if cut < 0:
            out.append(key)
            continue
        short = key[: cut + len(separator)]
        if short not in seen:
            seen.add(short)
            out.append(short)
    return out


@endpoint("KVS.Apply")
async def kvs_apply(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    # Every write comes here: values already of the right type are not converted again.
    op = args.get("Op", "")
    if type(op) is not str:
        op = str(op)
    dirent = args.get("DirEnt") or {}
    if type(dirent) is not dict:
        dirent = dict(dirent)  # only read here: a plain dict needs no copy
    key = dirent.get("Key", "")
    if type(key) is not str:
        key = str(key)
    if op not in {"set", "cas", "delete", "delete-tree", "delete-cas", "lock", "unlock"}:
        raise RpcError(f"Unknown KVS operation: {op}")
    # Consul's kvsPreApply: delete-tree needs KeyWritePrefix (write on the prefix and on every
    # rule beneath it), every other operation key:write on its key. (With ACLs off every token
    # may do everything: no authorizer to build on every write.)
    if node.acl.enabled:
        authorizer = authorize(node, args)
        try:
            if op == "delete-tree":
                authorizer.require_key_write_prefix(key)
            else:
                authorizer.require("key", "write", key)
        except PermissionDenied as exc:
            raise RpcError(str(exc)) from None
    session = dirent.get("Session") or ""
    if type(session) is not str:
        session = str(session)
    if op == "lock":
        # Consul's kvs_endpoint Apply: lock-delay is wall time, so only the leader's view of it
        # is checked, before the command is proposed (each server would expire it differently).
        until = node.fsm.sessions.lock_delay_until(key)
        if until > trio.current_time():
            node.events.emit(
                node.name,
                "kvs_lock_delay",
                {"key": key, "remaining": round(until - trio.current_time(), 3)},
                level="WARN",
                subsystem="agent.server.kvs",
                message="Rejecting lock of key due to lock-delay",
            )
            return {"Result": False, "Index": node.fsm.last_applied}
    value = dirent.get("Value")
    if isinstance(value, str):
        value = base64.b64decode(value)
    # Fields at their zero value are left out (the table reads them with that default): every
    # server decodes this command once per write, and each field costs a key to decode.
    ent: dict[str, Any] = {"Key": key, "Value": value}
    flags = dirent.get("Flags") or 0
    if flags:
        ent["Flags"] = int(flags)
    modify_index = dirent.get("ModifyIndex") or 0
    if modify_index:
        ent["ModifyIndex"] = int(modify_index)
    if session:
        ent["Session"] = session
    command = {"Type": "KVS", "Op": op, "DirEnt": ent}  # what decoding the command gives
    result = await node.apply_command(pack_command(command), command)
    if isinstance(result, dict) and "Error" in result:
        raise RpcError(str(result["Error"]))
    return {"Result": bool(result), "Index": node.fsm.last_applied}
