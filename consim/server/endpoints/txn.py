"""Consul's Txn endpoint (``txn_endpoint.go``): KV transactions, through Raft when they write,
answered from the local state when every operation reads (``Txn.Read``)."""

from __future__ import annotations

from typing import Any

from consim.acl import PermissionDenied
from consim.net.network import RpcError
from consim.server.endpoints.kvs import blocking_query
from consim.server.endpoints.registry import authorize, endpoint
from consim.server.interface import Server
from consim.server.state.base import encode_command
from consim.server.state.txn import WRITE_VERBS, run_ops


def _check_acls(node: Server, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Consul's txnPreApply: key:read for reads, key:write for writes, per operation."""
    authz = authorize(node, args)
    ops = []
    for op in args.get("Ops") or []:
        kv = dict((op or {}).get("KV") or {})
        verb = str(kv.get("Verb", ""))
        key = str(kv.get("Key", ""))
        try:
            if verb == "delete-tree":
                authz.require_key_write_prefix(key)
            elif verb in WRITE_VERBS:
                authz.require("key", "write", key)
            else:
                authz.require("key", "read", key)
        except PermissionDenied as exc:
            raise RpcError(str(exc)) from None
        ops.append(kv)
    return ops


@endpoint("Txn.Apply")
async def txn_apply(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    ops = _check_acls(node, args)
    result = await node.apply_command(encode_command("Txn", {"Ops": ops}))
    if isinstance(result, dict) and "Error" in result and "Errors" not in result:
        raise RpcError(str(result["Error"]))
    return {**result, "Index": node.fsm.last_applied}


@endpoint("Txn.Read", read=True)
async def txn_read(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    ops = _check_acls(node, args)

    def read() -> tuple[int, Any]:
        kvs = node.fsm.kvs
        results, errors = run_ops(kvs, 0, ops)
        return node.fsm.max_index(kvs.name), {
            "Results": None if errors else results,
            "Errors": errors or None,
        }

    index, reply, meta = await blocking_query(node, {**args, "MinQueryIndex": 0}, read)
    return {**reply, "Index": index, "QueryMeta": meta}
