"""Consul's Operator endpoint (``operator_raft_endpoint.go``, ``operator_autopilot_endpoint.go``):
the Raft configuration, peer removal, leadership transfer, autopilot's configuration and health."""

from __future__ import annotations

from typing import Any

import trio

from consim.net.network import RpcError
from consim.raft.core import RaftError
from consim.raft.types import Role
from consim.server import autopilot
from consim.server.endpoints.kvs import blocking_query
from consim.server.endpoints.registry import endpoint, require
from consim.server.fsm import encode_command
from consim.server.interface import Server


# ---- raft ----------------------------------------------------------------------------------
@endpoint("Operator.RaftGetConfiguration")
async def raft_get_configuration(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "read")
    core = node.raft()
    configuration = core.latest_configuration
    leader = core.leader_address or ""
    last_indexes = _last_indexes(node)
    names = node.member_names()
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


def _last_indexes(node: Server) -> dict[str, int]:
    """Each server's last log index in this server's autopilot view (Consul's LastIndex): the
    leader's current one; on a follower (``?stale``) the state of its own last term as leader,
    or nothing (every LastIndex 0) if it never led, not its own log index beside zeros."""
    core = node.raft()
    if core.role is not Role.LEADER:
        return autopilot.last_indexes_as_follower(node)
    out = {node.server_id: core.last_index}
    for server_id, index in core.match_indexes().items():  # a fresh dict, ours to read
        if server_id != node.server_id:
            out[server_id] = index
    return out


@endpoint("Operator.RaftRemovePeerByAddress")
async def raft_remove_peer_by_address(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "write")
    address = str(args.get("Address", ""))
    server = node.raft().latest_configuration.by_address(address)
    if server is None:
        raise RpcError(f'address "{address}" was not found in the Raft configuration')
    await node.change_configuration(lambda now: node.raft().remove_server(server.id, now))
    return {}


@endpoint("Operator.RaftRemovePeerByID")
async def raft_remove_peer_by_id(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "write")
    server_id = str(args.get("ID", ""))
    if node.raft().latest_configuration.get(server_id) is None:
        raise RpcError(f'id "{server_id}" was not found in the Raft configuration')
    await node.change_configuration(lambda now: node.raft().remove_server(server_id, now))
    return {}


@endpoint("Operator.RaftTransferLeader")
async def raft_transfer_leader(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "write")
    core = node.raft()
    target = args.get("ID") or None
    if target is not None and core.latest_configuration.get(str(target)) is None:
        raise RpcError(f"Could not find address for server id {target}")
    if target is not None and str(target) == node.server_id:
        # hashicorp/raft's leaderLoop refuses this before any transfer starts.
        raise RpcError("cannot transfer leadership to itself")
    try:
        chosen = core.transfer_leadership(target, trio.current_time())
    except RaftError as exc:
        raise RpcError(str(exc)) from None
    node.flush_raft()
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


# ---- autopilot -----------------------------------------------------------------------------
@endpoint("Operator.AutopilotGetConfiguration")
async def autopilot_get(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "read")
    fsm = node.fsm
    return {
        **fsm.autopilot,
        "CreateIndex": fsm.autopilot_create_index,
        "ModifyIndex": fsm.autopilot_modify_index,
    }


@endpoint("Operator.AutopilotSetConfiguration")
async def autopilot_set(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "write")
    config = dict(args.get("Config") or {})
    body: dict[str, Any] = {
        "Config": {k: v for k, v in config.items() if k not in {"CreateIndex", "ModifyIndex"}}
    }
    if args.get("CAS"):
        body["CAS"] = int(config.get("ModifyIndex") or 0)
    result = await node.apply_command(encode_command("Autopilot", body))
    return {"Result": bool(result)}


def _public(health: dict[str, Any]) -> dict[str, Any]:
    return {
        **health,
        "Servers": [
            {k: v for k, v in s.items() if not k.startswith("_")} for s in health["Servers"]
        ],
    }


@endpoint("Operator.ServerHealth")
async def operator_server_health(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "read")
    return _public(await autopilot.server_health(node))


@endpoint("Operator.AutopilotState")
async def autopilot_state(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "read")
    health = _public(await autopilot.server_health(node))
    return {
        "Healthy": health["Healthy"],
        "FailureTolerance": health["FailureTolerance"],
        "Leader": node.server_id,
        "Voters": [s["ID"] for s in health["Servers"] if s["Voter"]],
        "Servers": {s["ID"]: s for s in health["Servers"]},
    }


# ---- usage ----------------------------------------------------------------------------------
@endpoint("Operator.Usage", read=True)
async def usage(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    """Consul's Operator.Usage (operator_usage_endpoint.go): catalog counts of this datacenter."""
    require(node, args, "operator", "read")

    def read() -> tuple[int, Any]:
        catalog = node.fsm.catalog
        names: set[str] = set()
        instances = 0
        for services in catalog.services.values():
            for service in services.values():
                names.add(str(service.get("Service", "")))
                instances += 1
        counts = {
            "Services": len(names),
            "ServiceInstances": instances,
            "ConnectServiceInstances": {
                "api-gateway": 0,
                "connect-native": 0,
                "connect-proxy": 0,
                "ingress-gateway": 0,
                "mesh-gateway": 0,
                "terminating-gateway": 0,
            },  # fmt: skip
            "BillableServiceInstances": instances,
            "Nodes": len(catalog.nodes),
        }
        return node.fsm.max_index("nodes", "services"), counts

    index, counts, meta = await blocking_query(node, args, read)
    return {"Usage": {node.datacenter: counts}, "Index": index, "QueryMeta": meta}
