"""Autopilot (Consul's ``autopilot`` library as the server uses it): the leader's health view of
every server and the promotion of stable non-voters. Its configuration is replicated state (the
state machine's ``autopilot``); its health view is the leader's, kept per leader term in
``Server.autopilot_tracked``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import trio
from trio.testing import MockClock

from consim.events import VIRTUAL_EPOCH
from consim.gossip.types import STATUS_NAMES
from consim.net.network import RpcError, RpcTimeout, Unreachable
from consim.net.sim import VirtualClock
from consim.raft.types import Role
from consim.server.interface import Server

# How long the leader waits for a server's Status.RaftStats answer (Consul's autopilot fetches
# every server's stats with a deadline too; no answer means unhealthy).
STATS_TIMEOUT = 0.5


@dataclass(slots=True)
class _Tracked:
    healthy: bool
    since: float  # when ``healthy`` last changed (autopilot's StableSince)
    # The server's LastIndex in the latest state: what this server reports for it in the Raft
    # configuration's LastIndex once it is a follower again (autopilot keeps its last state).
    last_index: int = 0


def _tracked(node: Server) -> dict[str, _Tracked]:
    """The leader's autopilot state for this incarnation and term (a new leader starts afresh,
    as Consul's autopilot does when leadership is established)."""
    core = node.raft()
    key = (node.incarnation, core.term)
    state = node.autopilot_tracked
    if state is None or state[0] != key:
        state = node.autopilot_tracked = (key, {})
    return state[1]


async def _fetch_stats(node: Server, servers: list[Any]) -> dict[str, dict[str, Any]]:
    """Every other server's own Raft stats (Consul's autopilot asks each one over RPC)."""
    out: dict[str, dict[str, Any]] = {}

    async def fetch(server: Any) -> None:
        try:
            reply = await node.call(server.address, "Status.RaftStats", {}, timeout=STATS_TIMEOUT)
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


async def server_health(node: Server) -> dict[str, Any]:
    """The leader's view of every server (Consul's OperatorHealthReply).

    Healthy, as Consul's autopilot decides it: serf says alive; the server answered for its Raft
    stats; the leader heard from it within LastContactThreshold (plus one heartbeat interval);
    its last log term is the leader's; and its last index trails the leader's by at most
    MaxTrailingLogs. The index used is the lower of the leader's match index for it and what the
    server itself reports, so a server restarted with an empty data dir counts as far behind
    even while the leader's match index still remembers its old log.
    """
    core = node.raft()
    leader = core.role is Role.LEADER
    configured = list(core.latest_configuration.servers)
    stats = (
        await _fetch_stats(node, [s for s in configured if s.id != node.server_id])
        if leader
        else {}
    )
    core = node.raft()  # may have changed while the stats were fetched
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
        serf_status = STATUS_NAMES.get(member.status, "none") if member else "none"
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
        previous.last_index = last_index
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


def last_indexes_as_follower(node: Server) -> dict[str, int]:
    """Each server's LastIndex in this server's autopilot state while it is not the leader:
    Consul's autopilot keeps the state of its last run, so a server that led earlier in this
    incarnation still reports that (frozen) view and one that never led reports none."""
    state = node.autopilot_tracked
    if state is None or state[0][0] != node.incarnation:
        return {}
    return {server_id: t.last_index for server_id, t in state[1].items()}


async def promote_stable_nonvoters(node: Server) -> None:
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
            await node.change_configuration(
                lambda now, sid=server["ID"], a=server["Address"]: node.raft().add_voter(
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
