"""ServerNode: one Consul server. Drives the sans-IO Raft core from trio, owns the state machine,
serves the RPC endpoints and forwards to the leader the way Consul's ``agent/consul/rpc.go`` does.

A ``ServerNode`` object is the server's identity and its durable storage; each ``run()`` is one
incarnation (process lifetime). Killing the node cancels ``run()``: everything volatile (the Raft
core's memory, the state machine, waiters) is dropped, and the next ``run()`` rebuilds it from
storage, exactly what a crash and restart of a real server does.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import trio

from consim import CONSUL_VERSION
from consim.acl import ACLConfig
from consim.events import EventLog
from consim.gossip import STATUS_ALIVE, GossipConfig
from consim.net.network import ConnectionLost, Network, RpcError, RpcTimeout, Unreachable
from consim.raft.config import RaftConfig
from consim.raft.core import (
    FollowerReplication,
    NotLeader,
    Outbound,
    RaftCore,
    RaftError,
    new_node_id,
)
from consim.raft.messages import (
    AppendEntries,
    InstallSnapshot,
    message_from_wire,
    message_to_wire,
)
from consim.raft.types import (
    Configuration,
    EntryType,
    MalformedMessage,
    PersistentState,
    Role,
    Server,
)
from consim.server import autopilot, endpoints
from consim.server.fsm import StateMachine
from consim.server.gossip_driver import GossipPool
from consim.spec import ServerSpec
from consim.storage.base import RaftStorage
from consim.structs import JITTER_FRACTION
from consim.testing import faults as _testing_faults

# Consul's and hashicorp/raft's error texts.
ERR_NO_LEADER = "No cluster leader"
ERR_NO_PATH = "No path to datacenter"
ERR_NO_DC_SERVER = "Remote DC has no server currently reachable"
ERR_NOT_LEADER = "node is not the leader"
ERR_LEADERSHIP_LOST = "leadership lost while committing log"
ERR_NOT_READY_CONSISTENT = "Not ready to serve consistent reads"
ERR_RPC_EOF = "rpc error making call: EOF"

# RPC methods that only read; they may be served stale.
READ_METHODS = frozenset(
    {
        "Operator.RaftGetConfiguration",
        "KVS.Get",
        "KVS.List",
        "KVS.ListKeys",
        "Operator.AutopilotGetConfiguration",
        "Operator.ServerHealth",
        "Operator.AutopilotState",
    }
)
# Answered by whichever server receives them (Consul's Status endpoint never forwards in-DC).
LOCAL_METHODS = frozenset(
    {
        "Status.Leader",
        "Status.Peers",
        "Status.Ping",
        "Status.RaftStats",
        "Internal.KeyringOperation",
    }
)


class ServerFailed(Exception):
    """A server's Raft driver hit an unexpected error: that server stops (as a Consul server whose
    raft loop panics), the others go on. The cluster logs it and keeps the server down."""


class ServerNode:
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
        data_dir: Path | None = None,
        directory: Callable[[], list[ServerSpec]] | None = None,
        encrypt: str | None = None,
        gossip_scale: float = 1.0,
        gossip: bool = True,
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
        self.rpc_hold_timeout = rpc_hold_timeout
        self.acl = acl or ACLConfig()
        self.data_dir = data_dir
        # Every server the cluster knows, for Node names and WAN routes until gossip fills them.
        self._directory = directory or (lambda: [spec])
        self._storage_factory = storage_factory
        self.storage: RaftStorage | None = None
        self.node_id = spec.node_id or new_node_id(rng)
        self.server_id = self.node_id if raft_protocol >= 3 else self.address
        self.running = False
        self.paused = False
        self._resumed = trio.Event()
        self._resumed.set()
        self.core: RaftCore | None = None
        self.fsm = StateMachine()
        # raft_send_failed: Raft messages the network refused (not encodable, over the frame
        # limit, ...); each is logged and reported to the core, which sends it again.
        self.counters: dict[str, int] = {
            "rpc_malformed": 0,
            "raft_malformed": 0,
            "raft_unaddressable": 0,  # Raft messages to a server whose address nobody knows
            "raft_send_failed": 0,
            "internal_errors": 0,  # contained failures (see contained_error / _fail_server)
        }
        # Why this incarnation stopped, when an internal error stopped it (see _fail_server).
        self.failure: str | None = None
        self._run_scope: trio.CancelScope | None = None
        self.started_at = 0.0
        self.incarnation = 0
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
        self.gossip_scale = gossip_scale
        # consim check turns this on: DEBUG events for every applied entry and each new leader's
        # log terms, for the Raft invariant checkers. Off, the trace is unchanged.
        self.record_applies = False
        self._reset_volatile()

    # ---- identity and files ------------------------------------------------------------------
    @property
    def node_dir(self) -> Path | None:
        return None if self.data_dir is None else self.data_dir / self.name

    # ---- lifecycle ---------------------------------------------------------------------------
    def _reset_volatile(self) -> None:
        self.core = None
        self.fsm = StateMachine()
        # Notifies handed to the network as awaitables (while paused) and not yet handled; later
        # ones queue behind them so Raft messages keep their order. One counter per incarnation.
        self._held_notifies = [0]
        self._apply_waiters: dict[int, tuple[int, trio.Event, list[Any]]] = {}
        self._verify_waiters: dict[int, tuple[trio.Event, list[bool]]] = {}
        self._fsm_changed = trio.Event()
        self._consistent_ready = False
        self._barrier_index: int | None = None
        self._last_role: Role | None = None
        self._last_leader: str | None = None
        self._reconcile_kick = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """One incarnation of the server: runs until cancelled (crash) or stopped."""
        from consim.raft.recovery import RecoveryError

        self._reset_volatile()
        self.incarnation += 1
        self.failure = None
        incarnation = self.incarnation
        # The Raft timer lives on the network (a heap entry in virtual time, not a task).
        timer = self._raft_timer = self.net.timer(
            functools.partial(self._on_raft_timer, incarnation), self.address
        )
        storage = self._storage_factory()
        self.storage = storage
        try:
            state = self._start_state()
        except RecoveryError as exc:  # a bad peers.json: refuse to start, keep the file
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
        self.core = RaftCore(
            server_id=self.server_id,
            address=self.address,
            state=state,
            config=self.raft_config,
            rng=self.rng,
            now=now,
        )
        self._restore_fsm(state)
        if self.record_applies:
            self._record("fsm_restored", {"index": self.fsm.last_applied})
        if _is_empty(state):
            self.core.bootstrap(self._bootstrap_configuration())
        self.running = True
        self.events.emit(
            self.name,
            "server_started",
            {"id": self.server_id, "address": self.address, "incarnation": self.incarnation},
            subsystem="agent.server",
            message="consul server starting",
        )
        try:
            # _fail_server cancels this scope: the incarnation ends like a crash.
            with trio.CancelScope() as self._run_scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(
                        functools.partial(self.net.serve_rpc, notify_handler=self._on_notify),
                        self.address,
                        self._handle_rpc,
                    )
                    self._handle_ready()  # arms the timer
                    if self.lan_pool is not None and self.wan_pool is not None:
                        directory = self._directory()
                        lan_join = [
                            s.serf_lan_address for s in directory if s.datacenter == self.datacenter
                        ]
                        wan_join = [s.serf_wan_address for s in directory]
                        await nursery.start(self.lan_pool.run, lan_join)
                        await nursery.start(self.wan_pool.run, wan_join)
                        nursery.start_soon(self._leader_reconcile)
                    task_status.started()
            if self.failure is not None and self.incarnation == incarnation:
                # Tell the cluster (it tears down this server's HTTP listener too).
                raise ServerFailed(self.failure)
        finally:
            # Only this incarnation's own state: a restart may already have begun the next one.
            timer.disarm()
            storage.close()
            if self.incarnation == incarnation:
                self.running = False

    def _start_state(self) -> PersistentState:
        assert self.storage is not None
        state = self.storage.load()
        if self.node_dir is None:
            return state
        raft_dir = self.node_dir / "raft"
        raft_dir.mkdir(parents=True, exist_ok=True)
        peers_info = raft_dir / "peers.info"
        peers_json = raft_dir / "peers.json"
        if not peers_info.exists():
            # Written on first start so an old peers.json is never ingested by accident.
            peers_info.write_text(_PEERS_INFO)
            if peers_json.exists():
                return state
        if peers_json.exists():
            state = self._recover_from_peers_json(peers_json, state)
        return state

    def _recover_from_peers_json(self, path: Path, state: PersistentState) -> PersistentState:
        self._emit_raft(
            "peers_json_found",
            {},
            "found peers.json file, recovering Raft configuration...",
            subsystem="agent.server",
        )
        from consim.raft.recovery import parse_peers_json, recover_state

        configuration = parse_peers_json(path.read_bytes(), self.raft_protocol)

        def fsm_snapshot(s: PersistentState) -> bytes:
            fsm = (
                StateMachine.restore(s.snapshot.data) if s.snapshot is not None else StateMachine()
            )
            for entry in s.entries:
                if entry.type is EntryType.COMMAND:
                    fsm.apply(entry.index, entry.data)
            return fsm.snapshot()

        new_state = recover_state(state, configuration, fsm_snapshot)
        assert self.storage is not None
        if new_state.snapshot is not None:
            self.storage.save_snapshot(new_state.snapshot)
        if state.entries:
            self.storage.compact_prefix(state.entries[-1].index)
        self.storage.save_hard_state(new_state.hard_state)
        path.unlink()
        self._emit_raft(
            "peers_json_deleted",
            {},
            "deleted peers.json file after successful recovery",
            subsystem="agent.server",
        )
        return self.storage.load()

    def _bootstrap_configuration(self) -> Configuration:
        servers = [s for s in self._directory() if s.datacenter == self.datacenter]
        return Configuration(tuple(Server(self._id_for(s), s.rpc_address) for s in servers))

    def _id_for(self, spec: ServerSpec) -> str:
        return spec.node_id if self.raft_protocol >= 3 and spec.node_id else spec.rpc_address

    def _restore_fsm(self, state: PersistentState) -> None:
        self.fsm = (
            StateMachine.restore(state.snapshot.data)
            if state.snapshot is not None
            else StateMachine()
        )

    # ---- pause / resume ----------------------------------------------------------------------
    def pause(self) -> None:
        """Like SIGSTOP: nothing is processed until resume; incoming work queues up."""
        if not self.paused:
            self.paused = True
            self._resumed = trio.Event()

    def resume(self) -> None:
        """Like SIGCONT. The notifies and datagrams held while paused are handled first, in order;
        the Raft and gossip ticks held meanwhile run once that is done (a timer armed for "now"),
        so a follower paused past its election timeout sees the leader's queued heartbeats before
        it decides the leader is gone."""
        if self.paused:
            self.paused = False
            self._resumed.set()
            if self.running and self.core is not None:
                self._raft_timer.arm(trio.current_time())  # the tick held while paused
            for pool in (self.lan_pool, self.wan_pool):
                if pool is not None:
                    pool.resume()

    # ---- the Raft driver ---------------------------------------------------------------------
    def _on_raft_timer(self, incarnation: int) -> None:
        core = self.core
        if core is None or not self.running or incarnation != self.incarnation:
            return
        if self.paused:
            return  # resume() re-arms it
        try:
            core.tick(trio.current_time())
            self._drain_ready()
        except Exception as exc:
            self._fail_server("raft timer", exc)

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

    def _fail_server(self, where: str, exc: BaseException) -> None:
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
        self._raft_timer.disarm()
        if self._run_scope is not None:
            self._run_scope.cancel()

    def _handle_ready(self) -> None:
        """Drain the core's Ready batches (see _drain_ready); a failure stops this server."""
        try:
            self._drain_ready()
        except Exception as exc:
            self._fail_server("raft", exc)

    def _drain_ready(self) -> None:
        """Persist, apply, then send: the order that keeps votes and answers durable."""
        core = self.core
        storage = self.storage
        assert core is not None and storage is not None
        notify = self.net.notify
        for _ in range(1000):
            ready = core.ready()
            if ready.hard_state is not None:
                storage.save_hard_state(ready.hard_state)
            if ready.truncate_from is not None:
                storage.truncate_suffix(ready.truncate_from)
            if ready.entries:
                storage.append(ready.entries)  # each Ready's lists are fresh: no copy needed
            if ready.snapshot is not None:
                storage.save_snapshot(ready.snapshot)
                self.fsm = StateMachine.restore(ready.snapshot.data)
                if self.record_applies:
                    self._record("fsm_restored", {"index": self.fsm.last_applied})
                self._notify_fsm()
            if ready.local_snapshot is not None:
                storage.save_snapshot(ready.local_snapshot)
            if ready.compact_through is not None:
                storage.compact_prefix(ready.compact_through)
            for event in ready.events:
                self._emit_raft(event.kind, dict(event.fields), event.message, level=event.level)
            for entry in ready.committed:
                self._apply(entry)
            for request, ok in ready.verifications:
                waiter = self._verify_waiters.pop(request, None)
                if waiter is not None:
                    waiter[1].append(ok)
                    waiter[0].set()
            if ready.messages:
                address, server_id = self.address, self.server_id
                for out in ready.messages:
                    if not out.to_address:
                        # A reply to a sender in no configuration we hold (a server left out of
                        # a peers.json recovery, say): nowhere to send it. The core warns.
                        self.counters["raft_unaddressable"] += 1
                        continue
                    try:
                        notify(
                            address,
                            out.to_address,
                            "Raft.Message",
                            {"from": server_id, "msg": message_to_wire(out.message)},
                        )
                    except Exception as exc:
                        # One message that cannot leave must not take the rest of the batch
                        # (or this server) with it: log it, count it, let Raft send it again.
                        self._send_failed(core, out, exc)
            if core.role is not self._last_role:
                self._observe_role()
            if core.should_snapshot():
                core.snapshot_taken(self.fsm.last_applied, self.fsm.snapshot())
                continue
            if not core.has_ready():
                break
        # Only ever moves the timer earlier (hot path: most messages leave the deadline alone or
        # move it later, which the timer checks when it fires).
        self._raft_timer.arm(core.next_deadline())

    def _send_failed(self, core: RaftCore, out: Outbound, exc: Exception) -> None:
        self.counters["raft_send_failed"] += 1
        message = out.message
        if isinstance(message, AppendEntries):
            text, level = "failed to appendEntries to", "ERROR"
        elif isinstance(message, InstallSnapshot):
            text, level = "failed to send snapshot to", "ERROR"
        else:
            text, level = f"failed to send {type(message).__name__} to", "WARN"
        server = core.latest_configuration.get(out.to_id)
        suffrage = server.suffrage.value if server is not None else "Voter"
        self._emit_raft(
            "raft_send_failed",
            {
                # hashicorp/raft's peer="{Voter id address}"
                "peer": f"{{{suffrage} {out.to_id} {out.to_address}}}",
                "type": type(message).__name__,
                "error": f"{type(exc).__name__}: {exc}",
            },
            text,
            level=level,
        )
        core.send_failed(out.to_id, message, trio.current_time())

    def _apply(self, entry: Any) -> None:
        result: Any = None
        if entry.type is EntryType.COMMAND:
            result = self.fsm.apply(entry.index, entry.data)
        else:
            self.fsm.last_applied = entry.index
        if self.record_applies:
            self._record_applied(entry, result)
        if self._barrier_index is not None and entry.index >= self._barrier_index:
            # Consul's establishLeadership: consistent reads wait for this barrier.
            self._barrier_index = None
            if self.core is not None and self.core.role is Role.LEADER:
                self._consistent_ready = True
                # establishLeadership goes on with the reconcile (autopilot defaults, peers).
                self._reconcile_kick.set()
        waiter = self._apply_waiters.pop(entry.index, None)
        if waiter is not None:
            term, done, box = waiter
            if entry.term == term or _testing_faults.apply_waiter_ignores_term:
                box.append(("ok", result))
            else:
                box.append(("error", ERR_LEADERSHIP_LOST))
            done.set()
        self._notify_fsm()

    # ---- what consim check records (record_applies) ------------------------------------------
    def _record(self, kind: str, fields: dict[str, Any]) -> None:
        fields["incarnation"] = self.incarnation
        self.events.emit(self.name, kind, fields, level="DEBUG", subsystem="agent.server.fsm")

    def _record_applied(self, entry: Any, result: Any) -> None:
        data = entry.data or b""
        fields: dict[str, Any] = {
            "index": entry.index,
            "term": entry.term,
            "type": entry.type.name.lower(),
            "hash": hashlib.sha256(bytes([entry.type.value]) + data).hexdigest()[:16],
            "commit": self.core.commit_index if self.core is not None else 0,
        }
        if entry.type is EntryType.COMMAND:
            try:
                command = msgpack.unpackb(data, raw=False)
                dirent = command.get("DirEnt") or {}
                value = dirent.get("Value")
                fields.update(
                    op=command.get("Op"),
                    key=dirent.get("Key"),
                    value=value.decode("utf-8", "replace") if isinstance(value, bytes) else value,
                    cas=dirent.get("ModifyIndex", 0),
                    result=result if isinstance(result, bool) else None,
                )
            except Exception:  # a malformed command is applied as an error: record that much
                fields["op"] = None
        self._record("applied", fields)

    def _record_leader_log(self) -> None:
        core = self.core
        assert core is not None
        runs: list[list[int]] = []  # [first index, last index, term] runs of the log
        for index in range(core.first_index, core.last_index + 1):
            term = core.term_at(index)
            if term is None:
                continue
            if runs and runs[-1][2] == term and runs[-1][1] == index - 1:
                runs[-1][1] = index
            else:
                runs.append([index, index, term])
        # Entries up to first_index - 1 are compacted into the snapshot (applied, so committed).
        self._record(
            "leader_log",
            {"term": core.term, "snapshot_index": core.first_index - 1, "runs": runs},
        )

    def _notify_fsm(self) -> None:
        self._fsm_changed.set()
        self._fsm_changed = trio.Event()

    def _observe_role(self) -> None:
        core = self.core
        assert core is not None
        role = core.role
        if role is not self._last_role:
            if role is Role.LEADER:
                self._consistent_ready = _testing_faults.skip_consistent_barrier
                try:
                    self._barrier_index = core.barrier(trio.current_time())
                except RaftError:
                    self._barrier_index = None
                if self.record_applies:
                    self._record_leader_log()
            elif self._last_role is Role.LEADER:
                self._consistent_ready = False
                self._barrier_index = None
                self._fail_waiters(ERR_LEADERSHIP_LOST)
            self._last_role = role

    def _fail_waiters(self, message: str) -> None:
        if not _testing_faults.keep_waiters_on_step_down:  # test-only switch, normally off
            for _index, (_term, done, box) in list(self._apply_waiters.items()):
                box.append(("error", message))
                done.set()
            self._apply_waiters.clear()
        for _request, (done, box) in list(self._verify_waiters.items()):
            box.append(False)
            done.set()
        self._verify_waiters.clear()

    def _emit_raft(
        self,
        kind: str,
        fields: dict[str, Any],
        message: str,
        *,
        level: str = "INFO",
        subsystem: str = "agent.server.raft",
    ) -> None:
        self.events.emit(self.name, kind, fields, level=level, subsystem=subsystem, message=message)

    # ---- Raft helpers used by endpoints ------------------------------------------------------
    async def apply_command(self, data: bytes) -> Any:
        """Propose a command on the leader and wait until it is applied here."""
        return await self._wait_for_index(lambda now: self._core().propose(data, now))

    async def _wait_for_index(self, propose: Callable[[float], int]) -> Any:
        core = self._core()
        try:
            index = propose(trio.current_time())
        except NotLeader:
            raise RpcError(ERR_NOT_LEADER) from None
        except RaftError as exc:
            raise RpcError(str(exc)) from None
        done = trio.Event()
        box: list[Any] = []
        self._apply_waiters[index] = (core.term, done, box)
        # Group commit: no AppendEntries per proposal. The raft timer fires "now", which is after
        # every task made runnable in this scheduler pass had its turn (in virtual time: once the
        # whole run is quiescent), so proposals made together leave together: one AppendEntries
        # per follower (hashicorp's leader loop drains its applyCh the same way).
        self._raft_timer.arm(trio.current_time())
        await done.wait()
        status, value = box[0]
        if status == "error":
            raise RpcError(value)
        return value

    async def verify_leader(self) -> bool:
        core = self._core()
        if core.role is not Role.LEADER:
            return False
        request = core.verify_leader(trio.current_time())
        done = trio.Event()
        box: list[bool] = []
        self._verify_waiters[request] = (done, box)
        self._handle_ready()
        await done.wait()
        return box[0]

    def _core(self) -> RaftCore:
        if self.core is None or not self.running:
            raise RpcError("server is not running")
        return self.core

    def is_leader(self) -> bool:
        return self.running and self.core is not None and self.core.role is Role.LEADER

    def leader_address(self) -> str:
        if self.core is None or not self.running:
            return ""
        return self.core.leader_address or ""

    def has_heard_from_leader(self) -> bool:
        core = self.core
        return core is not None and (core.role is Role.LEADER or core.last_contact is not None)

    def last_contact_seconds(self) -> float:
        core = self.core
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

    # ---- RPC entry points --------------------------------------------------------------------
    async def _handle_rpc(self, method: str, args: Any, src: str) -> Any:
        if self.paused:
            await self._resumed.wait()
        if method == "Raft.Message":
            self._on_raft_message(args)
            return None
        if not isinstance(args, dict):
            self.counters["rpc_malformed"] += 1
            raise RpcError(f"rpc error: malformed arguments for {method}")
        return await self.rpc(method, args)

    def _on_notify(self, method: str, args: Any, src: str) -> Awaitable[None] | None:
        """One-way messages, called synchronously by the network (its fast path): Raft messages
        are stepped right away; while paused (or behind held ones) they wait, in order."""
        held = self._held_notifies
        if method == "Raft.Message" and not self.paused and not held[0]:
            self._on_raft_message(args)
            return None
        held[0] += 1
        return self._held_notify(held, method, args, src)

    async def _held_notify(self, held: list[int], method: str, args: Any, src: str) -> None:
        try:
            await self._handle_rpc(method, args, src)
        except RpcError:
            pass  # a one-way message has nobody to answer
        finally:
            held[0] -= 1

    def _on_raft_message(self, args: Any) -> None:
        core = self.core
        if core is None or not self.running:
            return
        try:
            if not isinstance(args, dict) or not isinstance(args.get("from"), str):
                raise MalformedMessage("Raft.Message needs 'from' and 'msg'")
            message = message_from_wire(args.get("msg"))
        except MalformedMessage:
            self.counters["raft_malformed"] += 1
            return
        try:
            core.step(args["from"], message, trio.current_time())
            self._drain_ready()
        except Exception as exc:
            self._fail_server("raft message handler", exc)

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        """Consul's ``Server.RPC``: forward to another datacenter or to the leader, or serve."""
        handler = endpoints.HANDLERS.get(method) or autopilot.HANDLERS.get(method)
        if handler is None:
            raise RpcError(f"rpc: can't find method {method}")
        datacenter = args.get("Datacenter") or self.datacenter
        if datacenter != self.datacenter:
            return await self._forward_dc(method, args, datacenter)
        if method in LOCAL_METHODS:
            return await handler(self, args)
        is_read = method in READ_METHODS
        if is_read and args.get("AllowStale") and self.has_heard_from_leader():
            max_stale = float(args.get("MaxStaleDuration") or 0)
            if max_stale > 0 and self.last_contact_seconds() > max_stale:
                # Too far behind for this caller: re-run as a default read on the leader.
                args = {**args, "AllowStale": False, "MaxStaleDuration": 0}
            else:
                return await handler(self, args)
        return await self._forward_to_leader(method, args, handler, is_read)

    async def _forward_to_leader(
        self,
        method: str,
        args: dict[str, Any],
        handler: Callable[[ServerNode, dict[str, Any]], Awaitable[Any]],
        is_read: bool,
    ) -> Any:
        deadline = trio.current_time() + self.rpc_hold_timeout
        while True:
            if self.is_leader():
                return await handler(self, args)
            leader = self.leader_address()
            if leader and leader != self.address:
                try:
                    return await self.net.call(
                        self.address, leader, method, args, timeout=_rpc_timeout(args)
                    )
                except ConnectionLost:
                    # The leader died while handling it: a write may be committed anyway (the
                    # next leader has it), so retrying would apply it twice. Consul answers so.
                    if not is_read:
                        raise RpcError(ERR_RPC_EOF) from None
                except Unreachable:
                    pass  # never delivered: safe to retry for reads and writes alike
                except RpcTimeout:
                    if not is_read:
                        raise RpcError("rpc error: timeout waiting for the leader") from None
                except RpcError as exc:
                    if exc.message != ERR_NOT_LEADER:
                        raise
            now = trio.current_time()
            if now >= deadline:
                raise RpcError(ERR_NO_LEADER)
            stagger = self.rng.random() * (self.rpc_hold_timeout / JITTER_FRACTION)
            await trio.sleep(min(stagger, max(0.0, deadline - now)) or 0.001)

    def datacenter_routes(self, datacenter: str) -> tuple[bool, list[str]]:
        """(is the datacenter known, RPC addresses of its servers believed alive), from the WAN pool
        as Consul's router does; from the static directory when gossip is off."""
        if self.wan_pool is not None:
            members = [m for m in self.wan_pool.members() if m.tags.get("dc") == datacenter]
            alive = [
                f"{m.addr}:{m.tags.get('port', '8300')}"
                for m in members
                if m.status == STATUS_ALIVE
            ]
            return bool(members), alive
        specs = [s.rpc_address for s in self._directory() if s.datacenter == datacenter]
        return bool(specs), specs

    def known_datacenters(self) -> list[str]:
        if self.wan_pool is not None:
            names = {m.tags.get("dc", "") for m in self.wan_pool.members()}
            names.add(self.datacenter)
            return sorted(n for n in names if n)
        return sorted({s.datacenter for s in self._directory()})

    async def _forward_dc(self, method: str, args: dict[str, Any], datacenter: str) -> Any:
        known, servers = self.datacenter_routes(datacenter)
        if not known:
            raise RpcError(ERR_NO_PATH)
        order = list(servers)
        self.rng.shuffle(order)
        # A server behind a WAN partition stays "alive" until WAN gossip notices (tens of
        # seconds), so bound each non-blocking attempt by the hold timeout and try the next one.
        timeout = _rpc_timeout(args)
        if int(args.get("MinQueryIndex") or 0) == 0:
            timeout = min(timeout, self.rpc_hold_timeout)
        for address in order:
            try:
                return await self.net.call(self.address, address, method, args, timeout=timeout)
            except ConnectionLost:
                # That server may have handled it: another one would apply a write again. Reads,
                # status and keyring operations (idempotent) may go to the next server.
                if method not in READ_METHODS and method not in LOCAL_METHODS:
                    raise RpcError(ERR_RPC_EOF) from None
            except (Unreachable, RpcTimeout):
                continue
        raise RpcError(ERR_NO_DC_SERVER)

    # ---- gossip-driven leader duties (Consul's leader reconcile + autopilot) -------------------
    def _on_gossip_event(self, pool: GossipPool, event: Any) -> None:
        if event.kind in {"member_left", "member_failed", "member_reap"} and self.is_leader():
            self._reconcile_kick.set()

    async def _leader_reconcile(self) -> None:
        from consim.server.autopilot import reconcile

        interval = 2.0 * self.gossip_scale
        while True:
            with trio.move_on_after(interval):
                await self._reconcile_kick.wait()
            self._reconcile_kick = trio.Event()
            if self.is_leader() and not self.paused:
                try:
                    await reconcile(self)
                except Exception as exc:  # the next round tries again
                    self.contained_error("leader reconcile", exc, "agent.server")

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


def _rpc_timeout(args: dict[str, Any]) -> float:
    # Only blocking queries (MinQueryIndex > 0) may legitimately take MaxQueryTime; give them
    # headroom like Consul does. Everything else gets the plain RPC timeout.
    if int(args.get("MinQueryIndex") or 0) > 0:
        return max(10.0, float(args.get("MaxQueryTime") or 0) * 1.1 + 1.0)
    return 10.0


def _has_port(address: str) -> bool:
    """memberlist's hasPort: ``host:port``, ``[v6]:port``; a bare IPv6 host has no port."""
    if address.startswith("["):
        return "]:" in address
    return address.count(":") == 1


def _is_empty(state: PersistentState) -> bool:
    return state.hard_state.current_term == 0 and not state.entries and state.snapshot is None


_PEERS_INFO = json.dumps(
    "As of Consul 0.7.0, the peers.json file is only used for recovery after an outage. "
    "See the outage recovery guide: place a peers.json next to this file and start the server."
)[1:-1]


class ServerAgent:
    """The HTTP layer's view of a server (``consim.http.agent.Agent``), Consul's agent endpoints.

    ``leave`` is what ``PUT /v1/agent/leave`` does after its ACL check: a graceful leave and then
    the agent's shutdown (the cluster provides it); without one only the gossip pools leave."""

    def __init__(
        self,
        node: ServerNode,
        *,
        known_datacenters: Callable[[], int],
        leave: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.node = node
        self.node_name = node.name
        self.datacenter = node.datacenter
        self._known_datacenters = known_datacenters
        self._leave = leave

    @property
    def default_acl_policy(self) -> str:
        """acl.default_policy, which Consul sends on every answer (X-Consul-Default-ACL-Policy)."""
        return self.node.acl.default_policy

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        if not self.node.running:
            raise RpcError("server is not running")
        if self.node.paused:
            await self.node._resumed.wait()
        return await self.node.rpc(method, args)

    def agent_self(self, token: str = "") -> dict[str, Any]:
        # Consul's AgentSelf: agent:read on this agent's node name.
        self._require(token, "agent", "read", self.node_name)
        node = self.node
        spec = node.spec
        core = node.core
        stats_raft: dict[str, Any] = {}
        if core is not None and node.running:
            stats_raft = {k: str(v) for k, v in core.stats(trio.current_time()).items()}
            stats_raft["applied_index"] = str(node.fsm.last_applied)
        leader = node.leader_address()
        return {
            "Config": {
                "Datacenter": spec.datacenter,
                "NodeName": spec.name,
                "NodeID": node.node_id,
                "Server": True,
                "Revision": "consim",
                "Version": CONSUL_VERSION,
                "PrimaryDatacenter": self._primary(),
            },
            "Member": self.member(),
            "Stats": {
                "consul": {
                    "leader": "true" if node.is_leader() else "false",
                    "leader_addr": leader,
                    "known_datacenters": str(self._known_datacenters()),
                    "server": "true",
                    "bootstrap": "false",
                },
                "raft": stats_raft,
            },
        }

    def _primary(self) -> str:
        return self.node.datacenter

    def member(self) -> dict[str, Any]:
        """This agent's LAN member, exactly as its own ``/v1/agent/members`` lists it (Consul's
        ``LocalMember``); a static stand-in when gossip is off or the server is down."""
        pool = self.node.lan_pool
        if pool is not None and pool.core is not None and self.node.running:
            for m in pool.members():
                if m.name == self.node_name:
                    return m.to_api()
        spec = self.node.spec
        from consim.gossip import consul_server_tags
        from consim.gossip.types import Member

        tags = consul_server_tags(
            dc=spec.datacenter,
            node_id=self.node.node_id,
            extra={"raft_vsn": str(self.node.raft_protocol)},
        )
        return Member(spec.name, spec.host, 8301, tags, 1, 0).to_api()

    def members(self, wan: bool, token: str = "") -> tuple[list[dict[str, Any]], bool]:
        """The members this token may see (node:read on each name, Consul's filterMembers), and
        whether any were left out."""
        authorizer = self._authorizer(token)
        pool = self._pool(wan)
        every = pool.members()
        shown = [m for m in every if authorizer.allowed("node", "read", m.name)]
        return [m.to_api() for m in shown], len(shown) != len(every)

    def _pool(self, wan: bool) -> GossipPool:
        pool = self.node.wan_pool if wan else self.node.lan_pool
        if pool is None or not self.node.running:
            raise RpcError("server is not running")
        return pool

    def _authorizer(self, token: str) -> Any:
        return endpoints.authorize(self.node, {"Token": token})

    def _require(self, token: str, resource: str, level: str, segment: str | None = None) -> None:
        endpoints.require(self.node, {"Token": token}, resource, level, segment)

    async def force_leave(self, node: str, prune: bool, token: str) -> None:
        self._require(token, "operator", "write")
        lan = self._pool(False)
        wan = self._pool(True)
        found = False
        for pool, name in (
            (lan, node),
            (wan, node if "." in node else f"{node}.{self.datacenter}"),
        ):
            if any(m.name == name for m in pool.members()):
                pool.force_leave(name, prune)
                found = True
        if not found:
            raise RpcError(f"agent: No node found with name '{node}'")

    async def join(self, address: str, wan: bool, token: str) -> None:
        self._require(token, "agent", "write", self.node_name)
        port = 8302 if wan else 8301
        # memberlist's ensurePort: a bare host gets the pool's port.
        target = address
        if not _has_port(address):
            host = address.strip("[]")
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._pool(wan).join(target, given=address)

    async def leave(self, token: str) -> None:
        # Consul's AgentLeave: agent:write, then Leave() (out of the Raft configuration and both
        # gossip pools) and ShutdownAgent(): the server stops serving.
        self._require(token, "agent", "write", self.node_name)
        if self._leave is not None:
            await self._leave()
            return
        self._pool(False).leave()
        self._pool(True).leave()

    async def keyring_operation(
        self, op: str, key: str | None, relay_factor: int, local_only: bool, token: str
    ) -> list[dict[str, Any]]:
        args = {
            "Op": op,
            "Key": key,
            "LocalOnly": local_only,
            "RelayFactor": relay_factor,
            "Token": token,
            "Forwarded": False,
        }
        return await self.rpc("Internal.KeyringOperation", args)

    def report_internal_error(self, where: str, exc: BaseException) -> None:
        self.node.events.emit(
            self.node.name,
            "http_internal_error",
            {"where": where, "error": f"{type(exc).__name__}: {exc}"},
            level="ERROR",
            subsystem="agent.http",
            message="unexpected error serving request",
        )
