"""Gossip-backed server duties: the keyring operation, autopilot endpoints, and the leader's
reconcile (remove servers that left; autopilot's dead-server cleanup).

Consul's shape: ``Internal.KeyringOperation`` runs on whichever server receives it (no leader
needed): the WAN pool once, then one server in every datacenter answers for its own LAN pool.
Autopilot's configuration is replicated state; its health view is the leader's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from consim import CONSUL_VERSION
from consim.net.network import RpcError
from consim.raft.types import Role
from consim.server.endpoints import Handler, require
from consim.server.fsm import DEFAULT_AUTOPILOT, encode_command

if TYPE_CHECKING:
    from consim.server.node import ServerNode

HANDLERS: dict[str, Handler] = {}

SERF_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


def _endpoint(name: str):  # type: ignore[no-untyped-def]
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


# ---- keyring -----------------------------------------------------------------------------------
@_endpoint("Internal.KeyringOperation")
async def keyring_operation(node: ServerNode, args: dict[str, Any]) -> list[dict[str, Any]]:
    from consim.server.gossip_driver import keyring_entry

    op = str(args.get("Op", ""))
    require(node, args, "keyring", "read" if op == "list" else "write")
    key = args.get("Key")
    if node.lan_pool is None or node.wan_pool is None:
        raise RpcError("gossip is not enabled on this server")
    out: list[dict[str, Any]] = []
    if args.get("LocalOnly"):
        response = await node.lan_pool.keyring_query(op, key)
        return [keyring_entry(response, wan=False, datacenter=node.datacenter)]
    if not args.get("Forwarded"):
        wan = await node.wan_pool.keyring_query(op, key)
        out.append(keyring_entry(wan, wan=True, datacenter=node.datacenter))
        forwarded = {**args, "Forwarded": True}
        for datacenter in node.known_datacenters():
            if datacenter == node.datacenter:
                lan = await node.lan_pool.keyring_query(op, key)
                out.append(keyring_entry(lan, wan=False, datacenter=node.datacenter))
            else:
                out.extend(
                    await node._forward_dc("Internal.KeyringOperation", forwarded, datacenter)
                )
        return out
    lan = await node.lan_pool.keyring_query(op, key)
    return [keyring_entry(lan, wan=False, datacenter=node.datacenter)]


# ---- autopilot ---------------------------------------------------------------------------------
@_endpoint("Operator.AutopilotGetConfiguration")
async def autopilot_get(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "read")
    fsm = node.fsm
    return {
        **fsm.autopilot,
        "CreateIndex": fsm.autopilot_create_index,
        "ModifyIndex": fsm.autopilot_modify_index,
    }


@_endpoint("Operator.AutopilotSetConfiguration")
async def autopilot_set(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "write")
    config = dict(args.get("Config") or {})
    body: dict[str, Any] = {
        "Config": {k: v for k, v in config.items() if k not in {"CreateIndex", "ModifyIndex"}}
    }
    if args.get("CAS"):
        body["CAS"] = int(config.get("ModifyIndex") or 0)
    result = await node.apply_command(encode_command("Autopilot", body))
    return {"Result": bool(result)}


def server_health(node: ServerNode) -> dict[str, Any]:
    """The leader's view of every server (Consul's OperatorHealthReply)."""
    core = node._core()
    now = trio.current_time()
    config = node.fsm.autopilot
    threshold = float(config.get("LastContactThreshold", 0.2))
    max_trailing = int(config.get("MaxTrailingLogs", 250))
    matches = core.match_indexes() if core.role is Role.LEADER else {}
    contacts = core.follower_last_contact() if core.role is Role.LEADER else {}
    members = {}
    if node.lan_pool is not None:
        for m in node.lan_pool.members():
            members[f"{m.addr}:{m.tags.get('port', '8300')}"] = m
    servers = []
    for server in core.latest_configuration.servers:
        member = members.get(server.address)
        is_self = server.id == node.server_id
        last_contact = 0.0 if is_self else max(0.0, now - contacts.get(server.id, -1e9))
        last_index = core.last_index if is_self else matches.get(server.id, 0)
        serf_status = SERF_STATUS.get(member.status, "none") if member else "none"
        healthy = (
            serf_status == "alive"
            and last_contact <= threshold
            and core.last_index - last_index <= max_trailing
        )
        servers.append(
            {
                "ID": server.id,
                "Name": member.name if member else "(unknown)",
                "Address": server.address,
                "SerfStatus": serf_status,
                "Version": CONSUL_VERSION,
                "Leader": is_self and core.role is Role.LEADER,
                "LastContact": last_contact if last_contact < 1e8 else -1.0,
                "LastTerm": core.term if healthy or is_self else 0,
                "LastIndex": last_index,
                "Healthy": healthy,
                "Voter": server.is_voter,
                "StableSince": node.started_at,
            }
        )
    voters = [s for s in servers if s["Voter"]]
    healthy_voters = sum(1 for s in voters if s["Healthy"])
    quorum = len(voters) // 2 + 1
    return {
        "Healthy": all(s["Healthy"] for s in servers),
        "FailureTolerance": max(0, healthy_voters - quorum),
        "Servers": servers,
    }


@_endpoint("Operator.ServerHealth")
async def operator_server_health(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "read")
    return server_health(node)


@_endpoint("Operator.AutopilotState")
async def autopilot_state(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "read")
    health = server_health(node)
    return {
        "Healthy": health["Healthy"],
        "FailureTolerance": health["FailureTolerance"],
        "Leader": node.server_id,
        "Voters": [s["ID"] for s in health["Servers"] if s["Voter"]],
        "Servers": {s["ID"]: s for s in health["Servers"]},
    }


# ---- the leader's reconcile --------------------------------------------------------------------
async def reconcile(node: ServerNode) -> None:
    """Remove servers whose LAN member left (Consul's leader reconcile) and, with
    CleanupDeadServers, failed ones, never so many that a majority of voters would go at once."""
    if node.lan_pool is None or not node.is_leader():
        return
    if node.fsm.autopilot_create_index == 0:
        # Consul's getOrCreateAutopilotConfig (establishLeadership): the leader stores the
        # default configuration once, so GET shows real Create/ModifyIndex values.
        try:
            await node.apply_command(
                encode_command("Autopilot", {"Config": dict(DEFAULT_AUTOPILOT), "CAS": 0})
            )
        except RpcError:
            return
    core = node._core()
    members = {m.tags.get("id", ""): m for m in node.lan_pool.members()}
    by_address = {f"{m.addr}:{m.tags.get('port', '8300')}": m for m in node.lan_pool.members()}
    left, failed = [], []
    for server in core.latest_configuration.servers:
        if server.id == node.server_id:
            continue
        member = members.get(server.id) or by_address.get(server.address)
        if member is None:
            continue
        if member.status == 3:
            left.append(server)
        elif member.status == 4 and server.is_voter:
            failed.append(server)
    to_remove = list(left)
    if failed and node.fsm.autopilot.get("CleanupDeadServers", True):
        voters = len(core.latest_configuration.voters())
        if len(failed) > (voters - 1) // 2:
            node.events.emit(
                node.name,
                "autopilot_too_many_dead",
                {"failed": len(failed), "voters": voters},
                level="WARN",
                subsystem="agent.server.autopilot",
                message=f"Failed to remove dead servers: too many dead servers: {len(failed)}/{voters}",
            )
        else:
            to_remove.extend(failed)
    # An alive server of this datacenter that is not in the configuration (a restarted or new
    # server) is added back, as Consul's leader reconcile does (Consul adds a non-voter and
    # promotes it after ServerStabilizationTime; consim adds the voter directly).
    configured = {s.id for s in core.latest_configuration.servers}
    for member in node.lan_pool.members():
        member_id = member.tags.get("id", "")
        if (
            member.status == 1
            and member.tags.get("role") == "consul"
            and member.tags.get("dc") == node.datacenter
            and member_id
            and member_id not in configured
            and node.raft_protocol >= 3
        ):
            address = f"{member.addr}:{member.tags.get('port', '8300')}"
            node.events.emit(
                node.name,
                "reconcile_add_server",
                {"id": member_id, "address": address},
                subsystem="agent.server",
                message="adding server to the raft configuration",
            )
            try:
                await node._wait_for_index(
                    lambda now, mid=member_id, a=address: node._core().add_voter(mid, a, now)
                )
            except RpcError:
                return
            return
    for server in to_remove:
        node.events.emit(
            node.name,
            "autopilot_remove_server",
            {"id": server.id, "address": server.address},
            subsystem="agent.server.autopilot",
            message="removing server from the raft configuration",
        )
        try:
            await node._wait_for_index(
                lambda now, sid=server.id: node._core().remove_server(sid, now)
            )
        except RpcError as exc:
            node.events.emit(
                node.name,
                "autopilot_remove_failed",
                {"id": server.id, "error": exc.message},
                level="WARN",
                subsystem="agent.server.autopilot",
                message="failed to remove server",
            )
            return
