"""The leader's duties (Consul's ``leader.go``): the barrier a new leader commits before it serves
consistent reads (establishLeadership), and the reconcile loop: remove servers that left,
autopilot's dead-server cleanup, add new servers as non-voters and promote them once stable.

``LeaderDuties`` is told of leadership changes by the Raft driver (it is the driver's
``LeadershipObserver``) and of member changes by the LAN pool; its ``run`` is the reconcile loop
of one incarnation.
"""

from __future__ import annotations

from typing import Any

import trio

from consim.gossip.types import STATUS_ALIVE, STATUS_FAILED, STATUS_LEFT
from consim.net.network import RpcError
from consim.raft.core import RaftCore, RaftError
from consim.raft.types import Role
from consim.server import autopilot
from consim.server.catalog_sync import reconcile_catalog
from consim.server.endpoints.acl import initialize_acls
from consim.server.fsm import encode_command
from consim.server.interface import Server
from consim.structs import DEFAULT_AUTOPILOT
from consim.testing import faults as _testing_faults

# Member events after which the leader reconciles at once instead of at the next interval.
# (a join or a return too: the leader registers the member in the catalog, as reconcileMember).
RECONCILE_EVENTS = frozenset(
    {"member_join", "member_alive", "member_left", "member_failed", "member_reap"}
)


class LeaderDuties:
    def __init__(self, server: Server, *, interval: float) -> None:
        self.server = server
        self.interval = interval  # Consul's ReconcileInterval, scaled like gossip
        self.reset()

    def reset(self) -> None:
        """A new incarnation: not ready for consistent reads."""
        self.consistent_ready = False
        self._kick = trio.Event()

    # ---- told by the Raft driver ---------------------------------------------------------------
    def leadership_established(self, core: RaftCore) -> int | None:
        """Consul's establishLeadership: commit a barrier before serving consistent reads."""
        self.consistent_ready = _testing_faults.skip_consistent_barrier
        try:
            return core.barrier(trio.current_time())
        except RaftError:
            return None

    def barrier_applied(self, core: RaftCore) -> None:
        if core.role is Role.LEADER:
            self.consistent_ready = True
            self.server.session_timers.initialize()
            # establishLeadership goes on with the reconcile (autopilot defaults, peers).
            self._kick.set()

    def leadership_lost(self) -> None:
        self.consistent_ready = False
        self.server.session_timers.clear_all()

    # ---- told by the LAN pool ------------------------------------------------------------------
    def member_event(self, kind: str) -> None:
        if kind in RECONCILE_EVENTS and self.server.is_leader():
            self._kick.set()

    # ---- the reconcile loop --------------------------------------------------------------------
    async def run(self) -> None:
        server = self.server
        while True:
            with trio.move_on_after(self.interval):
                await self._kick.wait()
            self._kick = trio.Event()
            if server.is_leader() and not server.paused:
                try:
                    await reconcile(server)
                except Exception as exc:  # the next round tries again
                    server.contained_error("leader reconcile", exc, "agent.server")


async def reconcile(node: Server) -> None:
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
    try:
        # initializeACLs: the builtin policy, anonymous and initial management tokens, once.
        await initialize_acls(node)
        await reconcile_catalog(node)
    except RpcError:
        return
    core = node.raft()
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
        if member.status == STATUS_LEFT:
            left.append(server)
        elif member.status == STATUS_FAILED and server.is_voter:
            failed.append(server)
        elif member.status == STATUS_FAILED:
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
            member.status == STATUS_ALIVE
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
                await node.change_configuration(
                    lambda now, mid=member_id, a=address: node.raft().add_nonvoter(mid, a, now)
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
            await node.change_configuration(
                lambda now, sid=server.id: node.raft().remove_server(sid, now)
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
    await autopilot.promote_stable_nonvoters(node)
