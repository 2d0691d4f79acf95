"""The Raft driver: runs one server's sans-IO ``RaftCore`` from trio (hashicorp/raft's run loops).

After every call into the core (a tick, a message, a proposal) the driver drains the core's
Ready batches: persist, apply to the state machine, then send, the order that keeps votes and
answers durable. A proposal's caller holds an :class:`ApplyFuture` (resolved when its entry is
applied here, or failed when leadership is lost); a leadership check holds a
:class:`VerifyFuture`. Leadership changes are reported to a :class:`LeadershipObserver`
(``leader.LeaderDuties``: the barrier and the reconcile).

One driver serves every incarnation of its server: ``reset`` drops the volatile state (core,
state machine, futures) and ``start`` builds it again from storage.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any, Protocol

import msgpack
import trio

from consim.events import EventLog
from consim.net.network import Network, RpcError, Timer
from consim.raft.config import RaftConfig
from consim.raft.core import NotLeader, Outbound, RaftCore, RaftError
from consim.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVoteResponse,
    TimeoutNowResponse,
)
from consim.raft.types import (
    Configuration,
    EntryType,
    LogEntry,
    PersistentState,
    Role,
)
from consim.server.fsm import StateMachine
from consim.storage.base import RaftStorage
from consim.testing import faults as _testing_faults

_RESPONSES = (
    AppendEntriesResponse,
    RequestVoteResponse,
    InstallSnapshotResponse,
    TimeoutNowResponse,
)

# hashicorp/raft's error texts.
ERR_NOT_LEADER = "node is not the leader"
ERR_LEADERSHIP_LOST = "leadership lost while committing log"
ERR_RAFT_SHUTDOWN = "raft is already shutdown"  # hashicorp's ErrRaftShutdown


class ApplyFuture:
    """A proposed entry (hashicorp/raft's ApplyFuture): ``await result()`` gives the state
    machine's answer once the entry at ``index`` is applied here, or raises ``RpcError`` when
    leadership was lost first or another term's entry took the index.

    One per write, so it is lean: the waiting task is parked and rescheduled directly (no
    ``trio.Event`` and its parking lot per write). Several tasks may wait on one future."""

    __slots__ = ("index", "term", "command", "_done", "_value", "_error", "_waiters")

    def __init__(self, index: int, term: int, command: dict[str, Any] | None = None) -> None:
        self.index = index
        self.term = term
        self.command = command  # the entry's data decoded, if the proposer had it
        self._done = False
        self._value: Any = None
        self._error: str | None = None
        self._waiters: list[trio.lowlevel.Task] | None = None

    def resolve(self, value: Any) -> None:
        if not self._done:  # settled once
            self._value = value
            self._wake()

    def fail(self, error: str) -> None:
        if not self._done:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        self._done = True
        waiters, self._waiters = self._waiters, None
        if waiters:
            for task in waiters:
                trio.lowlevel.reschedule(task)

    async def result(self) -> Any:
        if self._done:
            await trio.lowlevel.checkpoint()
        else:
            task = trio.lowlevel.current_task()
            if self._waiters is None:
                self._waiters = [task]
            else:
                self._waiters.append(task)

            def abort(_: Any) -> trio.lowlevel.Abort:  # cancelled while waiting
                if self._waiters is not None:
                    self._waiters.remove(task)
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        if self._error is not None:
            raise RpcError(self._error)
        return self._value


class VerifyFuture:
    """A leadership check (hashicorp/raft's VerifyLeader): True once a quorum confirmed it."""

    __slots__ = ("_done", "_ok")

    def __init__(self) -> None:
        self._done = trio.Event()
        self._ok = False

    def resolve(self, ok: bool) -> None:
        self._ok = ok
        self._done.set()

    async def result(self) -> bool:
        await self._done.wait()
        return self._ok


class RaftHost(Protocol):
    """The server a driver belongs to (``ServerNode``)."""

    name: str
    server_id: str
    address: str
    incarnation: int
    running: bool
    paused: bool
    record_applies: bool
    events: EventLog
    net: Network
    counters: dict[str, int]

    def fail_server(self, where: str, exc: BaseException) -> None:
        """Stop this incarnation: the driver's state may be half updated."""


class LeadershipObserver(Protocol):
    """Told of leadership changes, inside the driver's Ready loop."""

    def leadership_established(self, core: RaftCore) -> int | None:
        """This server became the leader; returns the index of the barrier entry it proposed
        (``barrier_applied`` follows once that entry is applied here), or None."""

    def barrier_applied(self, core: RaftCore) -> None: ...

    def leadership_lost(self) -> None: ...


class RaftDriver:
    def __init__(self, host: RaftHost, raft_config: RaftConfig, rng: Any) -> None:
        self.host = host
        self.raft_config = raft_config
        self.rng = rng
        self.observer: LeadershipObserver | None = None
        self.storage: RaftStorage | None = None
        self.timer: Timer | None = None
        # Where Ready's messages go (consim.server.raft_transport.RaftTransport).
        self.transport: Any = None
        self.reset()

    # ---- incarnations ------------------------------------------------------------------------
    def reset(self) -> None:
        self.core: RaftCore | None = None
        self.fsm = StateMachine(clock=trio.current_time)
        self._applies: dict[int, ApplyFuture] = {}
        self._verifies: dict[int, VerifyFuture] = {}
        self._fsm_changed: trio.Event | None = None  # made by the first waiter
        self._last_role: Role | None = None
        self._barrier_index: int | None = None
        self._leader_term: int | None = None
        self._draining = False  # inside _drain_ready (a proposal made there waits for the loop)
        self._woken_last = 0  # waiters the last applied batch resolved: >1 means writers queue

    def new_timer(self, incarnation: int) -> Timer:
        # The Raft timer lives on the network (a heap entry in virtual time, not a task).
        host = self.host
        self.timer = host.net.timer(functools.partial(self._on_timer, incarnation), host.address)
        return self.timer

    def start(
        self,
        storage: RaftStorage,
        state: PersistentState,
        now: float,
        bootstrap: Callable[[], Configuration],
    ) -> None:
        """Build this incarnation's core and state machine from what storage holds; an empty
        server bootstraps with ``bootstrap()``."""
        host = self.host
        self.storage = storage
        self.core = RaftCore(
            server_id=host.server_id,
            address=host.address,
            state=state,
            config=self.raft_config,
            rng=self.rng,
            now=now,
        )
        self.fsm = (
            StateMachine.restore(state.snapshot.data, clock=trio.current_time)
            if state.snapshot is not None
            else StateMachine(clock=trio.current_time)
        )
        if host.record_applies:
            self._record("fsm_restored", {"index": self.fsm.last_applied})
        if _is_empty(state):
            configuration = bootstrap()
            # No servers: this one waits to be bootstrapped later (consim agent's
            # bootstrap_expect) or added by a leader.
            if configuration.servers:
                self.core.bootstrap(configuration)

    def _on_timer(self, incarnation: int) -> None:
        core = self.core
        host = self.host
        if core is None or not host.running or incarnation != host.incarnation:
            return
        if host.paused:
            return  # resume() re-arms it
        try:
            core.tick(trio.current_time())
            self._drain_ready()
        except Exception as exc:
            host.fail_server("raft timer", exc)

    # ---- into the core -----------------------------------------------------------------------
    def deliver(self, src_id: str, message: Message) -> None:
        """A message the Raft transport decoded: step it; a failure while handling it stops
        this server."""
        core = self.core
        host = self.host
        if core is None or not host.running:
            return
        try:
            core.step(src_id, message, trio.current_time())
            self._drain_ready()
        except Exception as exc:
            host.fail_server("raft message handler", exc)

    def connection_failed(self, to_id: str, message: Message) -> None:
        """The transport lost ``message`` with its connection (the peer died or restarted):
        counted, and the core sends it again (a refusal to send is ``raft_send_failed``)."""
        core = self.core
        if core is None or not self.host.running:
            return
        counters = self.host.counters
        counters["raft_connection_lost"] = counters.get("raft_connection_lost", 0) + 1
        try:
            core.send_failed(to_id, message, trio.current_time())
        except Exception as exc:
            self.host.fail_server("raft", exc)
            return
        self.flush()

    def flush(self) -> None:
        """Drain the core's Ready batches after a direct call into it; a failure stops this
        server."""
        try:
            self._drain_ready()
        except Exception as exc:
            self.host.fail_server("raft", exc)

    def running_core(self) -> RaftCore:
        if self.core is None or not self.host.running:
            raise RpcError("server is not running")
        return self.core

    def propose(self, propose: Callable[[float], int]) -> ApplyFuture:
        """Run ``propose(now)`` on the core (it returns the new entry's index) and give the
        future of that entry. Not the leader: ``RpcError``."""
        core = self.running_core()
        try:
            index = propose(trio.current_time())
        except NotLeader:
            raise RpcError(ERR_NOT_LEADER) from None
        except RaftError as exc:
            raise RpcError(str(exc)) from None
        return self._proposed(core, index)

    def propose_command(self, data: bytes, command: dict[str, Any] | None = None) -> ApplyFuture:
        """Propose a state machine command (every write: no closure per call). ``command``,
        what ``data`` decodes to, is applied here as it is when the entry commits in this
        term (the leader then skips decoding its own write; followers decode ``data``)."""
        core = self.core
        if core is None or not self.host.running:
            core = self.running_core()  # raises
        now = trio.current_time()
        try:
            index = core.propose(data, now)
        except NotLeader:
            raise RpcError(ERR_NOT_LEADER) from None
        except RaftError as exc:
            raise RpcError(str(exc)) from None
        return self._proposed(core, index, now, command)

    def _proposed(
        self,
        core: RaftCore,
        index: int,
        now: float | None = None,
        command: dict[str, Any] | None = None,
    ) -> ApplyFuture:
        future = self._applies[index] = ApplyFuture(index, core.term, command)
        if (
            not self._draining
            and not self.host.paused  # a paused (SIGSTOPped) server sends nothing until resumed
            and self._woken_last <= 1
            and core.replication_idle()
        ):
            # A lone write (the last applied batch woke at most one waiter) on an idle
            # pipeline: nothing to batch it with, so it leaves now, from the proposer's task,
            # instead of one scheduler trip later from the timer.
            self.flush()
            return future
        # Group commit: no AppendEntries per proposal. The raft timer fires "now", which is after
        # every task made runnable in this scheduler pass had its turn (in virtual time: once the
        # whole run is quiescent), so proposals made together leave together: one AppendEntries
        # per follower (hashicorp's leader loop drains its applyCh the same way).
        assert self.timer is not None
        self.timer.arm(trio.current_time() if now is None else now)
        return future

    def verify_leader(self) -> VerifyFuture | None:
        """Start a leadership check; None when this server is not the leader."""
        core = self.running_core()
        if core.role is not Role.LEADER:
            return None
        request = core.verify_leader(trio.current_time())
        future = self._verifies[request] = VerifyFuture()
        self.flush()
        return future

    async def wait_fsm_change(self) -> None:
        changed = self._fsm_changed
        if changed is None:
            changed = self._fsm_changed = trio.Event()
        await changed.wait()

    # ---- the Ready loop ----------------------------------------------------------------------
    def _drain_ready(self) -> None:
        """Persist, apply, then send: the order that keeps votes and answers durable."""
        outer, self._draining = self._draining, True
        try:
            self._drain_ready_loop()
        finally:
            self._draining = outer

    def _drain_ready_loop(self) -> None:
        core = self.core
        storage = self.storage
        host = self.host
        assert core is not None and storage is not None and self.timer is not None
        send = self.transport.send if self.transport is not None else None
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
                self.fsm = StateMachine.restore(ready.snapshot.data, clock=trio.current_time)
                if host.record_applies:
                    self._record("fsm_restored", {"index": self.fsm.last_applied})
                self._notify_fsm()
            if ready.local_snapshot is not None:
                storage.save_snapshot(ready.local_snapshot)
            if ready.compact_through is not None:
                storage.compact_prefix(ready.compact_through)
            for event in ready.events:
                self.emit(event.kind, dict(event.fields), event.message, level=event.level)
            # Deposed by a newer term: fail the waiters before applying what the new leader
            # committed at their indexes (hashicorp applies a follower's entries without the
            # leader's futures). A leader that steps down in its own term (its removal, a lost
            # lease) first applies what it committed itself.
            if (
                self._last_role is Role.LEADER
                and core.role is not Role.LEADER
                and core.term != self._leader_term
            ):
                self._observe_role()
            if ready.committed:
                self._apply(ready.committed)
            for request, ok in ready.verifications:
                verify = self._verifies.pop(request, None)
                if verify is not None:
                    verify.resolve(ok)
            if ready.messages:
                assert send is not None, "the driver has no transport"
                for out in ready.messages:
                    if not out.to_address and not isinstance(out.message, _RESPONSES):
                        # A request to a server in no configuration we hold: nowhere to send
                        # it. (Responses go back on the connection their request came in on.)
                        host.counters["raft_unaddressable"] += 1
                        continue
                    try:
                        send(out)
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
        self.timer.arm(core.next_deadline())

    def _send_failed(self, core: RaftCore, out: Outbound, exc: Exception) -> None:
        self.host.counters["raft_send_failed"] += 1
        message = out.message
        if isinstance(message, AppendEntries):
            text, level = "failed to appendEntries to", "ERROR"
        elif isinstance(message, InstallSnapshot):
            text, level = "failed to send snapshot to", "ERROR"
        else:
            text, level = f"failed to send {type(message).__name__} to", "WARN"
        server = core.latest_configuration.get(out.to_id)
        suffrage = server.suffrage.value if server is not None else "Voter"
        self.emit(
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

    def _apply(self, entries: list[LogEntry]) -> None:
        """Apply committed entries in order, resolve their futures, then wake what waits for
        the state machine once for the whole batch."""
        fsm = self.fsm
        applies = self._applies
        record = self.host.record_applies
        if not applies and not record and self._barrier_index is None:
            # Nothing waits on these entries (a follower's): the state machine's own loop.
            fsm.apply_entries(entries)
            self._woken_last = 0
            self._notify_fsm()
            return
        command = EntryType.COMMAND
        woken = 0
        for entry in entries:
            result: Any = None
            index = entry.index
            future = applies.pop(index, None) if applies else None
            if entry.type is command:
                # Our own proposal (same index, same term: the same entry) is applied from
                # the command it was encoded from; anything else from its bytes.
                decoded = (
                    future.command if future is not None and future.term == entry.term else None
                )
                result = fsm.apply(index, entry.data, decoded)
            else:
                fsm.last_applied = index
            if record:
                self._record_applied(entry, result)
            if self._barrier_index is not None and index >= self._barrier_index:
                self._barrier_index = None
                if self.observer is not None and self.core is not None:
                    self.observer.barrier_applied(self.core)
            if future is not None:
                woken += 1
                if entry.term == future.term or _testing_faults.apply_waiter_ignores_term:
                    future.resolve(result)
                else:
                    future.fail(ERR_LEADERSHIP_LOST)
        self._woken_last = woken
        self._notify_fsm()

    def _notify_fsm(self) -> None:
        # No event per applied batch unless something waits (blocking queries rarely do).
        changed = self._fsm_changed
        if changed is not None:
            self._fsm_changed = None
            changed.set()

    def _observe_role(self) -> None:
        core = self.core
        assert core is not None
        role = core.role
        if role is not self._last_role:
            if role is Role.LEADER:
                self._leader_term = core.term
                if self.observer is not None:
                    self._barrier_index = self.observer.leadership_established(core)
                if self.host.record_applies:
                    self._record_leader_log()
            elif self._last_role is Role.LEADER:
                self._barrier_index = None
                if self.observer is not None:
                    self.observer.leadership_lost()
                self._fail_futures(ERR_LEADERSHIP_LOST)
            self._last_role = role

    def shutdown(self) -> None:
        """This incarnation stops (an internal error): every write and verification still
        waiting gets hashicorp's ErrRaftShutdown instead of waiting for good."""
        self._fail_futures(ERR_RAFT_SHUTDOWN)

    def _fail_futures(self, message: str) -> None:
        if not _testing_faults.keep_waiters_on_step_down:  # test-only switch, normally off
            for future in list(self._applies.values()):
                future.fail(message)
            self._applies.clear()
        for verify in list(self._verifies.values()):
            verify.resolve(False)
        self._verifies.clear()

    def emit(
        self,
        kind: str,
        fields: dict[str, Any],
        message: str,
        *,
        level: str = "INFO",
        subsystem: str = "agent.server.raft",
    ) -> None:
        host = self.host
        host.events.emit(host.name, kind, fields, level=level, subsystem=subsystem, message=message)

    # ---- what consim check records (record_applies) ------------------------------------------
    def _record(self, kind: str, fields: dict[str, Any]) -> None:
        host = self.host
        fields["incarnation"] = host.incarnation
        host.events.emit(host.name, kind, fields, level="DEBUG", subsystem="agent.server.fsm")

    def _record_applied(self, entry: LogEntry, result: Any) -> None:
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


def _is_empty(state: PersistentState) -> bool:
    return state.hard_state.current_term == 0 and not state.entries and state.snapshot is None
