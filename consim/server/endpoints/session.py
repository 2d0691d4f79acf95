"""Consul's Session endpoint (``session_endpoint.go``): apply (create, destroy), get, list,
node sessions and renew. TTL timers live on the leader (``consim.server.session_ttl``)."""

from __future__ import annotations

import json
from typing import Any

from consim.golike import GoError, format_duration, parse_duration
from consim.net.network import RpcError
from consim.raft.core import new_node_id
from consim.server.endpoints.kvs import blocking_query
from consim.server.endpoints.registry import endpoint, require
from consim.server.interface import Server
from consim.server.state.base import encode_command

SESSION_TTL_MIN = 10.0  # Consul's session_ttl_min default
SESSION_TTL_MAX = 24 * 3600.0  # structs.SessionTTLMax


def _ttl_seconds(ttl: str) -> float:
    try:
        seconds = parse_duration(ttl)
    except GoError as exc:
        raise RpcError(f"Session TTL '{ttl}' invalid: {exc}") from None
    if seconds != 0 and not SESSION_TTL_MIN <= seconds <= SESSION_TTL_MAX:
        raise RpcError(
            f"Invalid Session TTL '{round(seconds * 1e9)}', must be between "
            f"[{format_duration(SESSION_TTL_MIN)}={format_duration(SESSION_TTL_MAX)}]"
        )
    return seconds


def session_record(session: dict[str, Any], session_id: str) -> dict[str, Any]:
    """structs.Session in Go field order (LockDelay in nanoseconds)."""
    return {
        "ID": session_id,
        "Name": str(session.get("Name") or ""),
        "Node": str(session.get("Node") or ""),
        "LockDelay": int(session.get("LockDelay") or 0),
        "Behavior": str(session.get("Behavior") or "release"),
        "TTL": str(session.get("TTL") or ""),
        "NodeChecks": list(session["NodeChecks"])
        if session.get("NodeChecks") is not None
        else None,
        "ServiceChecks": list(session["ServiceChecks"])
        if session.get("ServiceChecks") is not None
        else None,
    }


@endpoint("Session.Apply")
async def session_apply(node: Server, args: dict[str, Any]) -> Any:
    op = str(args.get("Op") or "")
    session = dict(args.get("Session") or {})
    sid = str(session.get("ID") or "")
    if op == "destroy":
        if not sid:
            raise RpcError("Must provide ID")
        existing = node.fsm.sessions.sessions.get(sid)
        if existing is not None:
            require(node, args, "session", "write", str(existing.get("Node") or ""))
        result = await node.apply_command(
            encode_command("Session", {"Op": "destroy", "Session": {"ID": sid}})
        )
        node.session_timers.clear(sid)
        return {"Result": result is True, "Index": node.fsm.last_applied}
    if op != "create":
        raise RpcError(f"Invalid session operation {json.dumps(op)}")
    if not session.get("Node"):
        raise RpcError("Must provide Node")
    require(node, args, "session", "write", str(session["Node"]))
    behavior = str(session.get("Behavior") or "release")
    if behavior not in ("release", "delete"):
        raise RpcError(f"Invalid Behavior setting '{behavior}'")
    session["Behavior"] = behavior
    ttl = str(session.get("TTL") or "")
    if ttl:
        _ttl_seconds(ttl)
    # Consul draws a UUID and retries on a collision; consim draws it from the server's seeded
    # generator so a virtual run is repeatable.
    sid = new_node_id(node.rng)
    while sid in node.fsm.sessions.sessions:
        sid = new_node_id(node.rng)
    record = session_record(session, sid)
    result = await node.apply_command(
        encode_command("Session", {"Op": "create", "Session": record})
    )
    if isinstance(result, dict) and "Error" in result:
        raise RpcError(str(result["Error"]))
    if ttl:
        node.session_timers.reset_timer(sid, ttl)
    return {"Result": sid, "Index": node.fsm.last_applied}


@endpoint("Session.Get", read=True)
async def session_get(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    sid = str(args.get("SessionID") or "")
    index, sessions, meta = await blocking_query(node, args, lambda: node.fsm.sessions.get(sid))
    return {"Sessions": [dict(s) for s in sessions], "Index": index, "QueryMeta": meta}


@endpoint("Session.List", read=True)
async def session_list(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    index, sessions, meta = await blocking_query(node, args, lambda: node.fsm.sessions.list())
    return {"Sessions": [dict(s) for s in sessions], "Index": index, "QueryMeta": meta}


@endpoint("Session.NodeSessions", read=True)
async def session_node(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    name = str(args.get("Node") or "")
    index, sessions, meta = await blocking_query(node, args, lambda: node.fsm.sessions.list(name))
    return {"Sessions": [dict(s) for s in sessions], "Index": index, "QueryMeta": meta}


@endpoint("Session.Renew")
async def session_renew(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    # A read on the leader that restarts the session's timer (no Raft write, as in Consul).
    sid = str(args.get("SessionID") or "")
    index, sessions, meta = await blocking_query(node, args, lambda: node.fsm.sessions.get(sid))
    for s in sessions:
        node.session_timers.reset_timer(sid, str(s.get("TTL") or ""))
    return {"Sessions": [dict(s) for s in sessions], "Index": index, "QueryMeta": meta}
