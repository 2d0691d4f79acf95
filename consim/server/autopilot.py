"""Gossip-backed server duties: the keyring operation, autopilot endpoints, and the leader's
reconcile (remove servers that left; autopilot's dead-server cleanup; add new servers as
non-voters and promote them once stable).

Consul's shape: ``Internal.KeyringOperation`` runs on whichever server receives it (no leader
needed): the WAN pool once, then one server in every datacenter answers for its own LAN pool.
Autopilot's configuration is replicated state; its health view is the leader's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import trio
from trio.testing import MockClock

from consim.events import VIRTUAL_EPOCH
from consim.net.network import RpcError, RpcTimeout, Unreachable
from consim.net.sim import VirtualClock
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


# How long the leader waits for a server's Status.RaftStats answer (Consul's autopilot fetches
# every server's stats with a deadline too; no answer means unhealthy).
STATS_TIMEOUT = 0.5


@dataclass(slots=True)
class _Tracked:
    healthy: bool
    since: float  # when ``healthy`` last changed (autopilot's StableSince)


def _tracked(node: ServerNode) -> dict[str, _Tracked]:
    """The leader's autopilot state for this incarnation and term (a new leader starts afresh,
    as Consul's autopilot does when leadership is established)."""
    core = node._core()
    key = (node.incarnation, core.term)
    state = getattr(node, "_autopilot_tracked", None)
    if state is None or state[0] != key:
        state = (key, {})
        node._autopilot_tracked = state  # type: ignore[attr-defined]
    return state[1]


async def _fetch_stats(node: ServerNode, servers: list[Any]) -> dict[str, dict[str, Any]]:
    """Every other server's own Raft stats (Consul's autopilot asks each one over RPC)."""
    out: dict[str, dict[str, Any]] = {}

    async def fetch(server: Any) -> None:
        try:
            reply = await node.net.call(
                node.address, server.address, "Status.RaftStats", {}, timeout=STATS_TIMEOUT
            )
        except (RpcError, RpcTimeout, Unreachable):
            return
        if isinstance(reply, dict):
            out[server.id] = reply

    async with trio.open_nursery() as nursery:
        for server in servers:
            nursery.start_soon(fetch, server)
    return out


def _stable_since_text(t: float) -> str:
    """StableSince as Go marshals a time.Time (RFC 3339, fraction without trailing zeros): on the
    event log's epoch in virtual time, on the wall clock live."""
    clock = trio.lowlevel.current_clock()
    if isinstance(clock, VirtualClock | MockClock):
        when = VIRTUAL_EPOCH + timedelta(seconds=t)
    else:
        when = datetime.fromtimestamp(time.time() - (trio.current_time() - t), tz=UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    return text + "Z"


async def server_health(node: ServerNode) -> dict[str, Any]:
    """The leader's view of every server (Consul's OperatorHealthReply).

    Healthy, as Consul's autopilot decides it: serf says alive; the server answered for its Raft
    stats; the leader heard from it within LastContactThreshold (plus one heartbeat interval);
    its last log term is the leader's; and its last index trails the leader's by at most
    MaxTrailingLogs. The index used is the lower of the leader's match index for it and what the
    server itself reports, so a server restarted with an empty data dir counts as far behind
    even while the leader's match index still remembers its old log.
    """
    core = node._core()
    leader = core.role is Role.LEADER
    configured = list(core.latest_configuration.servers)
    stats = (
        await _fetch_stats(node, [s for s in configured if s.id != node.server_id])
        if leader
        else {}
    )
    core = node._core()  # may have changed while the stats were fetched
    now = trio.current_time()
    config = node.fsm.autopilot
    # An idle follower answers the leader once per heartbeat interval (HeartbeatTimeout/10:
    # 500 ms at the default raft multiplier 5), so the contact rule allows one interval on top
    # of LastContactThreshold; otherwise every follower of an idle cluster flaps unhealthy and
    # none stays stable long enough to be promoted.
    threshold = float(config.get("LastContactThreshold", 0.2)) + node.raft_config.heartbeat_interval
    max_trailing = int(config.get("MaxTrailingLogs", 250))
    matches = core.match_indexes() if core.role is Role.LEADER else {}
    contacts = core.follower_last_contact() if core.role is Role.LEADER else {}
    tracked = _tracked(node) if core.role is Role.LEADER else {}
    members = {}
    if node.lan_pool is not None:
        for m in node.lan_pool.members():
            members[f"{m.addr}:{m.tags.get('port', '8300')}"] = m
    servers = []
    for server in configured:
        member = members.get(server.address)
        is_self = server.id == node.server_id
        serf_status = SERF_STATUS.get(member.status, "none") if member else "none"
        if is_self:
            last_contact, last_index, last_term, answered = (
                0.0,
                core.last_index,
                core.last_term,
                True,
            )
        else:
            last_contact = max(0.0, now - contacts.get(server.id, -1e9))
            reported = stats.get(server.id)
            last_index = matches.get(server.id, 0)
            answered = reported is not None
            last_term = 0
            if reported is not None:
                last_index = min(last_index, int(reported.get("LastIndex") or 0))
                last_term = int(reported.get("LastTerm") or 0)
        healthy = (
            serf_status == "alive"
            and answered
            and last_contact <= threshold
            and last_term == core.last_term
            and core.last_index - last_index <= max_trailing
        )
        previous = tracked.get(server.id)
        if previous is None or previous.healthy != healthy:
            previous = tracked[server.id] = _Tracked(healthy, now)
        servers.append(
            {
                "ID": server.id,
                "Name": member.name if member else "(unknown)",
                "Address": server.address,
                "SerfStatus": serf_status,
                # Consul reads it from the member's serf build tag ("version:revision")
                "Version": member.tags.get("build", "").split(":")[0] if member else "",
                "Leader": is_self and core.role is Role.LEADER,
                "LastContact": last_contact if last_contact < 1e8 else -1.0,
                "LastTerm": last_term,
                "LastIndex": last_index,
                "Healthy": healthy,
                "Voter": server.is_voter,
                "StableSince": _stable_since_text(previous.since),
                # not in Consul's JSON: seconds on the cluster clock, for the promotion rule
                "_stable_for": now - previous.since,
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


def _public(health: dict[str, Any]) -> dict[str, Any]:
    return {
        **health,
        "Servers": [
            {k: v for k, v in s.items() if not k.startswith("_")} for s in health["Servers"]
        ],
    }


@_endpoint("Operator.ServerHealth")
async def operator_server_health(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "read")
    return _public(await server_health(node))


@_endpoint("Operator.AutopilotState")
async def autopilot_state(node: ServerNode, args: dict[str, Any]) -> dict[str, Any]:
    require(node, args, "operator", "read")
    health = _public(await server_health(node))
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
    left: list[Any] = []
    failed: list[Any] = []
    failed_nonvoters: list[Any] = []
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
        elif member.status == 4:
            failed_nonvoters.append(server)
    to_remove = list(left)
    cleanup = node.fsm.autopilot.get("CleanupDeadServers", True)
    if cleanup:
        # A non-voter counts for no quorum: a failed one goes whatever the count.
        to_remove.extend(failed_nonvoters)
    if failed and cleanup:
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
    # server, or anything that gossip says is one) is added as a non-voter, as Consul's leader
    # reconcile does with raft protocol 3; autopilot promotes it once it has been healthy for
    # ServerStabilizationTime (below), so a member that only claims to be a server never votes.
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
                {"id": member_id, "address": address, "suffrage": "nonvoter"},
                subsystem="agent.server",
                message="adding server to the raft configuration as a non-voter",
            )
            try:
                await node._wait_for_index(
                    lambda now, mid=member_id, a=address: node._core().add_nonvoter(mid, a, now)
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
    await promote_stable_nonvoters(node)


async def promote_stable_nonvoters(node: ServerNode) -> None:
    """Autopilot's promotion: a non-voter healthy for ServerStabilizationTime without a break
    becomes a voter (one per pass: Raft takes one configuration change at a time)."""
    if not node.is_leader():
        return
    health = await server_health(node)
    if not node.is_leader():
        return
    stabilization = float(node.fsm.autopilot.get("ServerStabilizationTime", 10.0))
    for server in health["Servers"]:
        if server["Voter"] or not server["Healthy"] or server["_stable_for"] < stabilization:
            continue
        node.events.emit(
            node.name,
            "autopilot_promote_server",
            {"id": server["ID"], "address": server["Address"], "name": server["Name"]},
            subsystem="agent.server.autopilot",
            message="Promoting server",
        )
        try:
            await node._wait_for_index(
                lambda now, sid=server["ID"], a=server["Address"]: node._core().add_voter(
                    sid, a, now
                )
            )
        except RpcError as exc:
            node.events.emit(
                node.name,
                "autopilot_promote_failed",
                {"id": server["ID"], "error": exc.message},
                level="WARN",
                subsystem="agent.server.autopilot",
                message="failed to promote server",
            )
        return
