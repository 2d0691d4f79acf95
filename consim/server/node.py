"""ServerNode: one Consul server, wired from its parts (Consul's ``agent/consul/server.go``).

A ``ServerNode`` object is the server's identity and its durable storage; each ``run()`` is one
incarnation (process lifetime). Killing the node cancels ``run()``: everything volatile (the Raft
core's memory, the state machine, waiters) is dropped, and the next ``run()`` rebuilds it from
storage, exactly what a crash and restart of a real server does.

The parts, each in its own module:

- ``raft_driver``: runs the Raft core (persist, apply, send; apply and verify futures);
- ``leader``: the leader's duties (barrier, reconcile) and ``autopilot``;
- ``forwarding``: where an RPC is served (another datacenter, the leader, here);
- ``membership`` and ``gossip_driver``: the gossip pools and the static directory;
- ``endpoints/``: the RPC endpoints by family, reaching the server through ``interface.Server``;
- ``startup``: the data dir, peers.json recovery, the bootstrap configuration;
- ``agent``: the agent view the HTTP app uses.

This module only wires them and holds what the whole server shares: identity, the run/pause
lifecycle, error containment and the incoming RPCs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import trio

from consim.acl import ACLConfig
from consim.events import EventLog
from consim.gossip import GossipConfig
from consim.gossip.types import GossipEvent
from consim.net.network import Network
from consim.raft.config import RaftConfig
from consim.raft.core import FollowerReplication, RaftCore, new_node_id
from consim.raft.messages import Message
from consim.raft.types import Configuration, Role
from consim.server import rpc_listener, startup
from consim.server.forwarding import Forwarder
from consim.server.fsm import StateMachine
from consim.server.gossip_driver import GossipPool
from consim.server.leader import LeaderDuties
from consim.server.local_state import LocalState
from consim.server.membership import Membership
from consim.server.raft_driver import RaftDriver
from consim.server.raft_transport import READ_TIMEOUT, RaftTransport
from consim.server.rpc_listener import tls_client
from consim.server.session_ttl import SessionTimers
from consim.server.user_events import UserEventLog
from consim.spec import ServerSpec
from consim.storage.base import RaftStorage
from consim.tls.config import TLSConfig


class ServerFailed(Exception):
    """A server's Raft driver hit an unexpected error: that server stops (as a Consul server whose
    raft loop panics), the others go on. The cluster logs it and keeps the server down."""


class ServerNode:
    """One server; implements ``consim.server.interface.Server`` for its parts."""

    def __init__(
        self,
        spec: ServerSpec,
        *,
        network: Network,
        storage_factory: Callable[[], RaftStorage],
        events: EventLog,
        rng: random.Random,
        raft_config: RaftConfig,
        raft_protocol: int = 3,
        rpc_hold_timeout: float = 7.0,
        acl: ACLConfig | None = None,
        tls: TLSConfig | None = None,
        data_dir: Path | None = None,
        directory: Callable[[], list[ServerSpec]] | None = None,
        encrypt: str | None = None,
        gossip_scale: float = 1.0,
        gossip: bool = True,
        raft_peers: Configuration | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.node_name = spec.name
        self.datacenter = spec.datacenter
        self.address = spec.rpc_address
        self.net = network
        self.events = events
        self.rng = rng
        self.raft_config = raft_config
        self.raft_protocol = raft_protocol
        self.raft_peers = raft_peers
        self.acl = acl or ACLConfig()
        self.tls = tls if tls is not None and tls.enabled else None
        self.data_dir = data_dir
        self._storage_factory = storage_factory
        self.node_id = spec.node_id or new_node_id(rng)
        self.server_id = self.node_id if raft_protocol >= 3 else self.address
        self.running = False
        self.paused = False
        self._resumed = trio.Event()
        self._resumed.set()
        # raft_send_failed: Raft messages the network refused (not encodable, over the frame
        # limit, ...); each is logged and reported to the core, which sends it again.
        self.counters: dict[str, int] = {
            # Raft connections closed for bytes that are not hashicorp's protocol, and for a
            # request not complete within the read timeout (raft_transport counts them).
            "raft_wire_dropped": 0,
            "raft_wire_stalled": 0,
            "raft_unaddressable": 0,  # Raft messages to a server whose address nobody knows
            "raft_send_failed": 0,
            "internal_errors": 0,  # contained failures (see contained_error / fail_server)
        }
        # Why this incarnation stopped, when an internal error stopped it (see fail_server).
        self.failure: str | None = None
        self._run_scope: trio.CancelScope | None = None
        self.started_at = 0.0
        self.incarnation = 0
        # consim check turns this on: DEBUG events for every applied entry and each new leader's
        # log terms, for the Raft invariant checkers. Off, the trace is unchanged.
        self.record_applies = False
        self.autopilot_tracked: tuple[tuple[int, int], dict[str, Any]] | None = None
        self.gossip_scale = gossip_scale
        # Extra serf tags (consim agent: Consul's "expect" with bootstrap_expect, "bootstrap").
        self.gossip_tags: dict[str, str] = {}
        self.raft_driver = RaftDriver(self, raft_config, rng)
        self.leader = LeaderDuties(self, interval=2.0 * gossip_scale)
        self.user_events = UserEventLog(self.name)
        self.raft_driver.observer = self.leader
        self.session_timers = SessionTimers(self)
        # Raft on byte 1 of the server port, as hashicorp/raft's NetworkTransport.
        self.raft_transport = RaftTransport(
            self,
            network,
            pre_vote=raft_config.pre_vote,
            read_timeout=getattr(network, "read_timeout", READ_TIMEOUT),
        )
        self.raft_driver.transport = self.raft_transport
        # The agent's own services and checks (/v1/agent/service, /v1/agent/check).
        self.local_state = LocalState(self, sync_interval=60.0 * gossip_scale)
        self.forwarder = Forwarder(self, network, hold_timeout=rpc_hold_timeout)
        self.lan_pool: GossipPool | None = None
        self.wan_pool: GossipPool | None = None
        if gossip:
            self.lan_pool = GossipPool(
                self,
                wan=False,
                config=GossipConfig.lan(gossip_scale),
                initial_key=encrypt,
                rng=random.Random(rng.getrandbits(64)),
                on_event=self._on_gossip_event,
            )
            self.wan_pool = GossipPool(
                self,
                wan=True,
                config=GossipConfig.wan(gossip_scale),
                initial_key=encrypt,
                rng=random.Random(rng.getrandbits(64)),
            )
        # Every server the cluster knows, for Node names and WAN routes until gossip fills them.
        self.membership = Membership(
            self.datacenter, directory or (lambda: [spec]), self.lan_pool, self.wan_pool
        )
        self._reset_volatile()

    # ---- identity, files and parts -------------------------------------------------------------
    @property
    def node_dir(self) -> Path | None:
        return None if self.data_dir is None else self.data_dir / self.name

    @property
    def rpc_hold_timeout(self) -> float:
        return self.forwarder.hold_timeout

    @property
    def core(self) -> RaftCore | None:
        """This incarnation's Raft core (None while down)."""
        return self.raft_driver.core

    @property
    def fsm(self) -> StateMachine:
        return self.raft_driver.fsm

    @property
    def storage(self) -> RaftStorage | None:
        return self.raft_driver.storage

    @property
    def consistent_ready(self) -> bool:
        """True on a leader once its barrier entry is applied: it may serve consistent reads."""
        return self.leader.consistent_ready

    # ---- lifecycle ---------------------------------------------------------------------------
    def _reset_volatile(self) -> None:
        self.raft_driver.reset()
        self.leader.reset()
        self.session_timers.reset()
        self.local_state.reset()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """One incarnation of the server: runs until cancelled (crash) or stopped."""
        self._reset_volatile()
        self.forwarder.reset_pool()  # a new process: no connections from the last one
        self.incarnation += 1
        self.failure = None
        incarnation = self.incarnation
        driver = self.raft_driver
        timer = driver.new_timer(incarnation)
        storage = self._storage_factory()
        driver.storage = storage
        try:
            state = startup.start_state(storage, self.node_dir, self.raft_protocol, driver.emit)
        except startup.RecoveryError as exc:  # a bad peers.json: refuse to start, keep the file
            storage.close()
            self.events.emit(
                self.name,
                "recovery_failed",
                {"error": str(exc)},
                level="ERROR",
                subsystem="agent.server.raft",
                message="failed to recover from peers.json",
            )
            raise
        now = trio.current_time()
        self.started_at = now
        driver.start(
            storage,
            state,
            now,
            lambda: startup.bootstrap_configuration(
                self.membership.local_servers(), self.raft_protocol, self.raft_peers, self.address
            ),
        )
        self.running = True
        self.events.emit(
            self.name,
            "server_started",
            {"id": self.server_id, "address": self.address, "incarnation": self.incarnation},
            subsystem="agent.server",
            message="consul server starting",
        )
        try:
            # fail_server cancels this scope: the incarnation ends like a crash.
            with trio.CancelScope() as self._run_scope:
                self.raft_transport.start()
                rpc_listener.register(
                    self,
                    self.net.port_mux(self.address),
                    self.net.stats[self.address],
                    self.tls,
                    read_timeout=self.raft_transport.read_timeout,  # the network's, as Raft's
                )
                if self.tls is not None:
                    self.net.outgoing_tls[self.address] = tls_client(self, self.tls)
                async with trio.open_nursery() as nursery:
                    # The server port: Consul's RPC and hashicorp/raft, by first byte (above).
                    await nursery.start(self.net.serve_port, self.address)
                    driver.flush()  # arms the timer
                    nursery.start_soon(self.session_timers.run)
                    nursery.start_soon(self.local_state.run)
                    if self.lan_pool is not None and self.wan_pool is not None:
                        lan_join, wan_join = self.membership.join_addresses()
                        await nursery.start(self.lan_pool.run, lan_join)
                        await nursery.start(self.wan_pool.run, wan_join)
                        nursery.start_soon(self.leader.run)
                    task_status.started()
            if self.failure is not None and self.incarnation == incarnation:
                # Tell the cluster (it tears down this server's HTTP listener too).
                raise ServerFailed(self.failure)
        finally:
            # Only this incarnation's own state: a restart may already have begun the next one.
            timer.disarm()
            if self.incarnation == incarnation:
                self.raft_transport.stop()
                self.forwarder.pool.close()
            storage.close()
            if self.incarnation == incarnation:
                self.running = False

    # ---- pause / resume ----------------------------------------------------------------------
    def pause(self) -> None:
        """Like SIGSTOP: nothing is processed until resume; incoming work queues up."""
        if not self.paused:
            self.paused = True
            self._resumed = trio.Event()

    def resume(self) -> None:
        """Like SIGCONT. What arrived while paused (Raft messages, datagrams) is handled in order
        from a timer at this instant, alongside the requests that waited for the resume; the Raft
        and gossip ticks held meanwhile run after it, so a follower paused past its election
        timeout sees the leader's queued heartbeats before it decides the leader is gone."""
        if self.paused:
            self.paused = False
            self._resumed.set()
            self.raft_transport.resume_soon(self._run_held_raft_tick)
            for pool in (self.lan_pool, self.wan_pool):
                if pool is not None:
                    pool.resume()

    def _run_held_raft_tick(self) -> None:
        timer = self.raft_driver.timer
        if self.running and self.core is not None and timer is not None:
            timer.arm(trio.current_time())  # the tick held while paused

    async def wait_resumed(self) -> None:
        if self.paused:
            await self._resumed.wait()

    # ---- containment -------------------------------------------------------------------------
    def contained_error(self, where: str, exc: BaseException, subsystem: str = "agent") -> None:
        """An unexpected error that this server survives (a gossip timer, an RPC handler, a
        connection): counted and logged at ERROR; the caller carries on."""
        self.counters["internal_errors"] += 1
        self.events.emit(
            self.name,
            "internal_error",
            {"where": where, "error": f"{type(exc).__name__}: {exc}"},
            level="ERROR",
            subsystem=subsystem,
            message=f"unexpected error in {where}, continuing",
        )

    def fail_server(self, where: str, exc: BaseException) -> None:
        """An unexpected error in the Raft driver: the Ready batch may be half persisted or half
        applied, so going on could diverge this server's state. Stop this server only (like a
        Consul server whose raft loop panics: storage survives, ``restart`` brings it back)."""
        if self.failure is not None:
            return
        self.counters["internal_errors"] += 1
        self.failure = f"{where}: {type(exc).__name__}: {exc}"
        self.events.emit(
            self.name,
            "server_failed",
            {"where": where, "error": f"{type(exc).__name__}: {exc}"},
            level="ERROR",
            subsystem="agent.server",
            message=f"unexpected error in {where}, stopping this server",
        )
        self.running = False  # timers and handlers of this incarnation do nothing from now on
        self.raft_driver.shutdown()  # no client waits for good on a write this server holds
        if self.raft_driver.timer is not None:
            self.raft_driver.timer.disarm()
        if self._run_scope is not None:
            self._run_scope.cancel()

    # ---- Raft, for the endpoints and leader duties (interface.Server) ------------------------
    def raft(self) -> RaftCore:
        return self.raft_driver.running_core()

    def flush_raft(self) -> None:
        self.raft_driver.flush()

    def apply_command(
        self, data: bytes, command: dict[str, Any] | None = None
    ) -> Coroutine[Any, Any, Any]:
        """Propose a command on the leader; awaiting the result waits until it is applied here.
        (Proposed at the call, not at the await: every caller awaits it at once, and the
        future's own coroutine is one frame less on every write. Not the leader: RpcError.)
        ``command`` is ``data`` decoded, if the caller has it: applied here as it is."""
        return self.raft_driver.propose_command(data, command).result()

    async def change_configuration(self, propose: Callable[[float], int]) -> Any:
        return await self.raft_driver.propose(propose).result()

    async def verify_leader(self) -> bool:
        future = self.raft_driver.verify_leader()
        return False if future is None else await future.result()

    async def wait_fsm_change(self) -> None:
        await self.raft_driver.wait_fsm_change()

    # These run on every RPC: they read the driver's core directly, not through the property.
    def is_leader(self) -> bool:
        core = self.raft_driver.core
        return self.running and core is not None and core.role is Role.LEADER

    def leader_address(self) -> str:
        core = self.raft_driver.core
        if core is None or not self.running:
            return ""
        return core.leader_address or ""

    def has_heard_from_leader(self) -> bool:
        core = self.raft_driver.core
        return core is not None and (core.role is Role.LEADER or core.last_contact is not None)

    def last_contact_seconds(self) -> float:
        core = self.raft_driver.core
        if core is None or core.role is Role.LEADER:
            return 0.0
        if core.last_contact is None:
            return math.inf
        return max(0.0, trio.current_time() - core.last_contact)

    # ---- replication health (for autopilot) -------------------------------------------------
    def follower_replication(self) -> dict[str, FollowerReplication]:
        """On the leader, the Raft core's replication state per follower (server id ->
        :class:`~consim.raft.core.FollowerReplication`: match/next index, last contact, last
        successful append, snapshot transfer progress, unsent messages); ``{}`` elsewhere.
        Times are trio times, comparable with ``trio.current_time()``."""
        core = self.core
        if core is None or not self.running or core.role is not Role.LEADER:
            return {}
        return core.follower_replication()

    def replication_problem(
        self, server_id: str, *, max_trailing_logs: int, stall_timeout: float
    ) -> str | None:
        """On the leader: why follower ``server_id`` is not catching up, or None if it is (or is
        not a follower of this leader). A follower that answers heartbeats can still be stuck:

        - a snapshot transfer that acknowledged no chunk for ``stall_timeout`` seconds;
        - more than ``max_trailing_logs`` entries behind with no successful append (or snapshot
          install) for ``stall_timeout`` seconds (a wiped follower, or one whose messages fail
          to send).

        Autopilot's server health should count such a server unhealthy even when its last
        contact is recent."""
        rep = self.follower_replication().get(server_id)
        core = self.core
        if rep is None or core is None:
            return None
        now = trio.current_time()
        if rep.snapshot_index and rep.snapshot_progress_at is not None:
            if now - rep.snapshot_progress_at > stall_timeout:
                return (
                    f"snapshot transfer stalled at {rep.snapshot_offset} of "
                    f"{rep.snapshot_size} bytes"
                )
            return None  # making progress: catching up
        behind = core.last_index - rep.match_index
        if behind > max_trailing_logs:
            since = rep.since if rep.last_success is None else rep.last_success
            if now - since > stall_timeout:
                return f"{behind} entries behind and no successful append for {stall_timeout}s"
        return None

    # ---- membership and forwarding (interface.Server) ----------------------------------------
    def datacenter_routes(self, datacenter: str) -> tuple[bool, list[str]]:
        return self.membership.datacenter_routes(datacenter)

    def known_datacenters(self) -> list[str]:
        return self.membership.known_datacenters()

    def member_names(self) -> dict[str, str]:
        return self.membership.member_names()

    def directory_servers(self) -> list[ServerSpec]:
        return self.membership.directory()

    def rpc(self, method: str, args: dict[str, Any]) -> Coroutine[Any, Any, Any]:
        """Consul's ``Server.RPC``: forward to another datacenter or to the leader, or serve.
        (The forwarder's coroutine itself: one frame less on every RPC.)"""
        return self.forwarder.rpc(method, args)

    async def forward_dc(self, method: str, args: dict[str, Any], datacenter: str) -> Any:
        return await self.forwarder.forward_dc(method, args, datacenter)

    async def call(self, address: str, method: str, args: dict[str, Any], timeout: float) -> Any:
        return await self.forwarder.call(address, method, args, timeout)

    def _on_gossip_event(self, pool: GossipPool, event: GossipEvent) -> None:
        if event.kind == "user_event" and pool is self.lan_pool:
            fields = event.fields
            self.user_events.receive(
                str(fields.get("name", "")),
                bytes(fields.get("payload") or b""),
                int(fields.get("ltime", 0)),
            )
        self.leader.member_event(event.kind)

    # ---- the Raft transport's host --------------------------------------------------------------
    def raft_core(self) -> RaftCore | None:
        return self.raft_driver.core if self.running else None

    def step_raft(self, src_id: str, message: Message) -> None:
        self.raft_driver.deliver(src_id, message)

    def raft_send_failed(self, to_id: str, message: Message) -> None:
        self.raft_driver.connection_failed(to_id, message)

    # ---- state the HTTP agent needs ----------------------------------------------------------
    def status(self) -> dict[str, Any]:
        core = self.core
        if core is None or not self.running:
            down: dict[str, Any] = {
                "name": self.name,
                "datacenter": self.datacenter,
                "address": self.address,
                "state": "down",
                "paused": self.paused,
                "internal_errors": self.counters["internal_errors"],
            }
            if self.failure is not None:
                down["failed"] = self.failure
            return down
        contact = self.last_contact_seconds()
        return {
            "name": self.name,
            "datacenter": self.datacenter,
            "address": self.address,
            "state": core.role.value.lower(),
            "term": core.term,
            "commit_index": core.commit_index,
            "last_index": core.last_index,
            "applied_index": self.fsm.last_applied,
            "leader": core.leader_address or "",
            "last_contact": None if math.isinf(contact) else round(contact, 6),
            "paused": self.paused,
            "internal_errors": self.counters["internal_errors"],
        }
