"""Server-side RPC endpoints, Consul's names and reply shapes.

Each handler runs on the server that serves the request (after ``ServerNode.rpc`` has done the
datacenter and leader forwarding) and checks ACLs there, as Consul does: a follower with no leader
answers ``No cluster leader`` before it would ever answer ``Permission denied``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from consim.acl import ACLNotFound, Authorizer, PermissionDenied
from consim.net.network import RpcError
from consim.raft.types import Role
from consim.server.fsm import encode_command

if TYPE_CHECKING:
    from consim.server.node import ServerNode

DEFAULT_QUERY_TIME = 300.0  # Consul's defaultQueryTime (5m)
MAX_QUERY_TIME = 600.0  # and maxQueryTime (10m)
JITTER_FRACTION = 16  # structs.JitterFraction

Handler = Callable[["ServerNode", dict[str, Any]], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}


def endpoint(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


def require(
    node: ServerNode, args: dict[str, Any], resource: str, level: str, segment: str | None = None
) -> None:
    authorizer = authorize(node, args)
    try:
        authorizer.require(resource, level, segment)
    except PermissionDenied as exc:
        raise RpcError(str(exc)) from None


def authorize(node: ServerNode, args: dict[str, Any]) -> Authorizer:
    """The request token's authorizer (``ACL not found`` as an RpcError)."""
    try:
        return node.acl.resolve(str(args.get("Token") or ""))
    except ACLNotFound as exc:
        raise RpcError(str(exc)) from None


# ---- Status --------------------------------------------------------------------------------
@endpoint("Status.Ping")
async def status_ping(node: ServerNode, args: dict[str, Any]) -> Any:
    return True


@endpoint("Status.Leader")
async def status_leader(node: ServerNode, args: dict[str, Any]) -> str:
    return node.leader_address()


@endpoint("Status.Peers")
async def status_peers(node: ServerNode, args: dict[str, Any]) -> list[str]:
    core = node._core()
    return [s.address for s in core.latest_configuration.servers if s.is_voter]


@endpoint("Status.RaftStats")
async def status_raft_stats(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
    core = node._core()
    return {
        "LastTerm": core.last_term,
        "LastIndex": core.last_index,
        "LastContact": node.last_contact_seconds() if core.last_contact is not None else -1.0,
    }


# ---- Operator: raft ------------------------------------------------------------------------
@endpoint("Operator.RaftGetConfiguration")
async def raft_get_configuration(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "read")
    core = node._core()
    configuration = core.latest_configuration
    leader = core.leader_address or ""
    last_indexes = _last_indexes(node)
    names = _member_names(node)
    protocol = str(node.raft_protocol)
    servers = []  # each in api.RaftServer's field order
    for server in configuration.servers:
        servers.append(
            {
                "ID": server.id,
                "Node": names.get(server.address, "(unknown)"),
                "Address": server.address,
                "Leader": server.address == leader,
                "ProtocolVersion": protocol,
                "Voter": server.is_voter,
                "LastIndex": last_indexes.get(server.id, 0),
            }
        )
    return {"Servers": servers, "Index": core.latest_configuration_index}


def _member_names(node: ServerNode) -> dict[str, str]:
    """RPC address -> node name for every server at once, as Consul looks the Node name up in the
    LAN pool (first match wins; an address missing from the map is ``(unknown)``): one pass over
    the LAN pool per request instead of one per server."""
    names: dict[str, str] = {}
    if node.lan_pool is not None:
        for member in node.lan_pool.members():
            names.setdefault(f"{member.addr}:{member.tags.get('port', '8300')}", member.name)
        return names
    for spec in node._directory():
        if spec.datacenter == node.datacenter:
            names.setdefault(spec.rpc_address, spec.name)
    return names


def _last_indexes(node: ServerNode) -> dict[str, int]:
    """Each server's last log index as this server knows it (Consul takes autopilot's view)."""
    core = node._core()
    out = {node.server_id: core.last_index}
    if core.role is not Role.LEADER:
        return out
    for server_id, index in core.match_indexes().items():  # a fresh dict, ours to read
        if server_id != node.server_id:
            out[server_id] = index
    return out


@endpoint("Operator.RaftRemovePeerByAddress")
async def raft_remove_peer_by_address(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "write")
    address = str(args.get("Address", ""))
    server = node._core().latest_configuration.by_address(address)
    if server is None:
        raise RpcError(f'address "{address}" was not found in the Raft configuration')
    await node._wait_for_index(lambda now: node._core().remove_server(server.id, now))
    return {}


@endpoint("Operator.RaftRemovePeerByID")
async def raft_remove_peer_by_id(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "write")
    server_id = str(args.get("ID", ""))
    if node._core().latest_configuration.get(server_id) is None:
        raise RpcError(f'id "{server_id}" was not found in the Raft configuration')
    await node._wait_for_index(lambda now: node._core().remove_server(server_id, now))
    return {}


@endpoint("Operator.RaftTransferLeader")
async def raft_transfer_leader(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "write")
    core = node._core()
    target = args.get("ID") or None
    if target is not None and core.latest_configuration.get(str(target)) is None:
        raise RpcError(f"Could not find address for server id {target}")
    if target is not None and str(target) == node.server_id:
        # hashicorp/raft's leaderLoop refuses this before any transfer starts.
        raise RpcError("cannot transfer leadership to itself")
    from consim.raft.core import RaftError

    try:
        chosen = core.transfer_leadership(target, trio.current_time())
    except RaftError as exc:
        raise RpcError(str(exc)) from None
    node._handle_ready()
    # hashicorp/raft's future resolves when the target has taken over (or the timeout passes).
    with trio.move_on_after(node.raft_config.election_timeout * 2):
        while node.core is not None and node.core.role is Role.LEADER:
            await trio.sleep(node.raft_config.heartbeat_timeout / 20)
    if node.core is not None and node.core.role is Role.LEADER:
        raise RpcError("leadership transfer timeout")
    node.events.emit(
        node.name,
        "leadership_transferred",
        {"target": chosen},
        subsystem="agent.server",
        message="leadership transfer complete",
    )
    return {"Success": True}


# ---- KV ------------------------------------------------------------------------------------
async def _read(
    node: ServerNode, args: dict[str, Any], read: Callable[[], tuple[int, Any]]
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
                await node._fsm_changed.wait()
            if args.get("RequireConsistent"):
                await consistent_read(node)
            index, result = read()
    return index, result, query_meta(node, args, index)


async def consistent_read(node: ServerNode) -> None:
    if not await node.verify_leader():
        raise RpcError("node is not the leader")
    if not node._consistent_ready:
        raise RpcError("Not ready to serve consistent reads")


def query_meta(node: ServerNode, args: dict[str, Any], index: int) -> dict[str, Any]:
    core = node._core()
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
async def kvs_get(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
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
async def kvs_list(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
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
async def kvs_list_keys(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
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
async def kvs_apply(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
    op = str(args.get("Op", ""))
    dirent = dict(args.get("DirEnt") or {})
    key = str(dirent.get("Key", ""))
    if op not in {"set", "cas", "delete", "delete-tree", "delete-cas", "lock", "unlock"}:
        raise RpcError(f"Unknown KVS operation: {op}")
    # Consul's kvsPreApply: delete-tree needs KeyWritePrefix (write on the prefix and on every
    # rule beneath it), every other operation key:write on its key.
    authorizer = authorize(node, args)
    try:
        if op == "delete-tree":
            authorizer.require_key_write_prefix(key)
        else:
            authorizer.require("key", "write", key)
    except PermissionDenied as exc:
        raise RpcError(str(exc)) from None
    if op in ("lock", "unlock"):
        # consim has no session endpoints, so no session exists: Consul's state store answers
        # a lock with an unknown session with this error (a 500), and an unlock by a session
        # that does not hold the key with false.
        session = str(dirent.get("Session") or "")
        if not session:
            raise RpcError("missing session")
        if op == "lock":
            raise RpcError(f"invalid session {json.dumps(session, ensure_ascii=False)}")
        return {"Result": False, "Index": node.fsm.last_applied}
    value = dirent.get("Value")
    if isinstance(value, str):
        value = base64.b64decode(value)
    command = encode_command(
        "KVS",
        {
            "Op": op,
            "DirEnt": {
                "Key": key,
                "Value": value,
                "Flags": int(dirent.get("Flags") or 0),
                "ModifyIndex": int(dirent.get("ModifyIndex") or 0),
            },
        },
    )
    result = await node.apply_command(command)
    return {"Result": bool(result), "Index": node.fsm.last_applied}
