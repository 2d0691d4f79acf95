"""A seeded discrete-event simulator for N :class:`RaftCore` s, with a safety checker.

Plain ``heapq`` loop, no trio: the cores are sans-IO, so the harness is the whole world. It models
per-message delay (hence reordering), loss, duplication, partitions, crashes (volatile state is
dropped; the node restarts from what it persisted) and client proposals. One ``random.Random``
(seeded) drives everything, so the same seed gives the same trace, byte for byte.

Persistence follows the documented ``Ready`` order exactly, right after every event, before the
event's messages go on the wire (see ``consim.raft.core``).

After every event the checker verifies (raising ``AssertionError`` whose text includes ``seed=N``):

- election safety: at most one leader per term, ever;
- leader append-only: a leader never truncates or rewrites its log during its term;
- log matching: two entries with the same index and term hold the same data and follow the same
  previous term (checked incrementally on every append, which inductively gives the property);
- leader completeness: a new leader holds every entry committed before;
- state machine safety: no two servers apply different entries at the same index.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from consim.raft.config import RaftConfig
from consim.raft.core import NotLeader, RaftCore, RaftError, Ready
from consim.raft.messages import Message, message_to_wire
from consim.raft.types import (
    Configuration,
    EntryType,
    HardState,
    LogEntry,
    PersistentState,
    Role,
    Server,
    Snapshot,
)

CoreFactory = Callable[..., RaftCore]


class MemoryStorage:
    """Minimal in-memory Raft storage: survives a simulated crash because it outlives the core."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        self.entries: list[LogEntry] = []

    def load(self) -> PersistentState:
        return PersistentState(self.hard_state, self.snapshot, tuple(self.entries))

    def persist(self, r: Ready) -> None:
        """Apply a Ready's persistence in the documented order."""
        if r.hard_state is not None:
            self.hard_state = r.hard_state
        if r.truncate_from is not None:
            self.entries = [e for e in self.entries if e.index < r.truncate_from]
        if r.entries:
            if self.entries and r.entries[0].index != self.entries[-1].index + 1:
                raise AssertionError(
                    f"storage: append at {r.entries[0].index} after {self.entries[-1].index}"
                )
            self.entries.extend(r.entries)
        if r.snapshot is not None:
            self.snapshot = r.snapshot
            idx = r.snapshot.meta.index
            if not (
                self.entries and self.entries[0].index <= idx + 1 <= self.entries[-1].index + 1
            ):
                self.entries = [e for e in self.entries if e.index > idx]
        if r.local_snapshot is not None:
            self.snapshot = r.local_snapshot
        if r.compact_through is not None:
            self.entries = [e for e in self.entries if e.index > r.compact_through]


@dataclass
class SimNode:
    id: str
    address: str
    storage: MemoryStorage
    core: RaftCore | None
    fsm: list[bytes] = field(default_factory=list)  # applied COMMAND data, in order
    fsm_index: int = 0  # last applied index
    tick_gen: int = 0
    verifications: list[tuple[int, bool]] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.core is not None


def fsm_snapshot(commands: list[bytes]) -> bytes:
    return msgpack.packb(commands, use_bin_type=True)


def fsm_restore(data: bytes) -> list[bytes]:
    return list(msgpack.unpackb(data, raw=False)) if data else []


class Harness:
    def __init__(
        self,
        n: int = 3,
        seed: int = 0,
        config: RaftConfig | None = None,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        delay: tuple[float, float] = (0.002, 0.02),
        core_factory: CoreFactory = RaftCore,
        wire: bool = True,
        check: bool = True,
        protocol_version: int = 3,
        trace: bool = True,
        max_message_bytes: int | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.cfg = config or RaftConfig.for_multiplier(1)
        self.loss = loss
        self.duplicate = duplicate
        self.delay = delay
        self.core_factory = core_factory
        self.wire = wire
        self.check = check
        self.protocol_version = protocol_version
        self.record_trace = trace
        # Like the network's frame limit: a message whose msgpack encoding is larger is not
        # delivered, and counted in ``oversized`` (the driver reports it with send_failed).
        self.max_message_bytes = max_message_bytes
        self.oversized = 0
        self.now = 0.0
        self._queue: list[tuple[float, int, str, str, Any]] = []
        self._seq = 0
        self.trace: list[str] = []
        self.groups: dict[str, int] | None = None
        self.events_processed = 0
        self.messages_delivered = 0
        # Checker state.
        self._leaders: dict[int, str] = {}
        self._entries: dict[tuple[int, int], tuple[int, bytes, int | None]] = {}
        self._applied: dict[int, tuple[int, int, bytes]] = {}
        self._was_leader: dict[str, int] = {}

        self.nodes: dict[str, SimNode] = {}
        self.ids: list[str] = []
        servers = []
        for i in range(n):
            address = f"127.0.0.{i + 1}:8300"
            sid = address if protocol_version < 3 else _node_id(self.rng)
            self.ids.append(sid)
            servers.append(Server(sid, address))
        self.configuration = Configuration(tuple(servers))
        for s in servers:
            node = SimNode(s.id, s.address, MemoryStorage(), None)
            self.nodes[s.id] = node
            node.core = self._new_core(node)
            node.core.bootstrap(self.configuration)
            self._after(node)

    # ------------------------------------------------------------------ plumbing

    def fail(self, what: str) -> None:
        raise AssertionError(f"seed={self.seed} t={self.now:.6f}: {what}")

    def _new_core(self, node: SimNode) -> RaftCore:
        rng = random.Random(self.rng.getrandbits(64))
        return self.core_factory(
            server_id=node.id,
            address=node.address,
            state=node.storage.load(),
            config=self.cfg,
            rng=rng,
            now=self.now,
            protocol_version=self.protocol_version,
        )

    def _push(self, t: float, kind: str, node: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (t, self._seq, kind, node, payload))

    def at(self, t: float, action: Callable[[], Any]) -> None:
        """Run ``action`` at virtual time ``t`` (scenario steps, client load)."""
        self._push(t, "call", "", action)

    def _log(self, line: str) -> None:
        if self.record_trace:
            self.trace.append(f"{self.now:.6f} {line}")

    def _schedule_tick(self, node: SimNode) -> None:
        assert node.core is not None
        node.tick_gen += 1
        t = max(node.core.next_deadline(), self.now + 1e-6)
        self._push(t, "tick", node.id, node.tick_gen)

    def _connected(self, a: str, b: str) -> bool:
        return self.groups is None or self.groups.get(a, -1) == self.groups.get(b, -2)

    def _after(self, node: SimNode) -> None:
        """Drain a node's Ready: persist, check, send, apply; then re-arm its timer."""
        core = node.core
        assert core is not None
        r = core.ready()
        was_leader_term = self._was_leader.get(node.id)
        if self.check:
            self._check_ready(node, r, was_leader_term)
        node.storage.persist(r)
        if r.snapshot is not None:
            node.fsm = fsm_restore(r.snapshot.data)
            node.fsm_index = r.snapshot.meta.index
        if self.max_message_bytes is None:
            for out in r.messages:
                self._send(node.id, out.to_id, out.message)
        else:
            for out in r.messages:
                if self._fits(out.message):
                    self._send(node.id, out.to_id, out.message)
                else:
                    core.send_failed(out.to_id, out.message, self.now)
        for e in r.committed:
            if e.index != node.fsm_index + 1:
                self.fail(f"{node.id} applied {e.index} after {node.fsm_index}")
            node.fsm_index = e.index
            if e.type is EntryType.COMMAND:
                node.fsm.append(e.data)
        node.verifications.extend(r.verifications)
        for ev in r.events:
            if ev.kind != "ignored_message":
                self._log(f"{node.id[:8]} {ev.kind} {ev.message} {ev.fields}")
        if core.role is Role.LEADER:
            self._was_leader[node.id] = core.term
        else:
            self._was_leader.pop(node.id, None)
        if core.should_snapshot():
            core.snapshot_taken(node.fsm_index, fsm_snapshot(node.fsm))
            sr = core.ready()
            node.storage.persist(sr)
            for out in sr.messages:
                if self._fits(out.message):
                    self._send(node.id, out.to_id, out.message)
                else:
                    core.send_failed(out.to_id, out.message, self.now)
            for ev in sr.events:
                self._log(f"{node.id[:8]} {ev.kind} {ev.message} {ev.fields}")
        self._schedule_tick(node)

    def _fits(self, msg: Message) -> bool:
        limit = self.max_message_bytes
        if limit is None:
            return True
        if len(msgpack.packb(message_to_wire(msg), use_bin_type=True)) <= limit:
            return True
        self.oversized += 1
        return False

    def _send(self, src: str, dst: str, msg: Message) -> None:
        if dst not in self.nodes or not self._connected(src, dst):
            return
        if self.loss and self.rng.random() < self.loss:
            return
        copies = 2 if self.duplicate and self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            lo, hi = self.delay
            self._push(self.now + lo + self.rng.random() * (hi - lo), "msg", dst, (src, msg))

    # ------------------------------------------------------------------ running

    def step_once(self) -> bool:
        if not self._queue:
            return False
        t, _, kind, nid, payload = heapq.heappop(self._queue)
        self.now = max(self.now, t)
        self.events_processed += 1
        if kind == "call":
            payload()
            return True
        node = self.nodes[nid]
        if node.core is None:
            return True
        try:
            if kind == "tick":
                if payload != node.tick_gen:
                    return True
                node.core.tick(self.now)
            else:
                src, msg = payload
                if not self._connected(src, nid):
                    return True
                self.messages_delivered += 1
                if self.wire:
                    node.core.step_wire(src, message_to_wire(msg), self.now)
                else:
                    node.core.step(src, msg, self.now)
            self._after(node)
        except AssertionError as exc:
            if f"seed={self.seed}" in str(exc):
                raise
            self.fail(f"core assertion on {nid}: {exc}")
        return True

    def run_until(self, t: float) -> None:
        while self._queue and self._queue[0][0] <= t:
            self.step_once()
        self.now = max(self.now, t)

    def run_for(self, d: float) -> None:
        self.run_until(self.now + d)

    # ------------------------------------------------------------------ faults and clients

    def live(self) -> list[SimNode]:
        return [self.nodes[i] for i in self.ids if self.nodes[i].core is not None]

    def leader(self) -> SimNode | None:
        best = None
        for n in self.live():
            assert n.core is not None
            if n.core.role is Role.LEADER and (best is None or n.core.term > best.core.term):  # type: ignore[union-attr]
                best = n
        return best

    def leaders(self) -> list[SimNode]:
        return [n for n in self.live() if n.core.role is Role.LEADER]  # type: ignore[union-attr]

    def crash(self, nid: str) -> None:
        node = self.nodes[nid]
        if node.core is None:
            return
        node.core = None
        node.fsm = []
        node.fsm_index = 0
        self._was_leader.pop(nid, None)
        self._log(f"{nid[:8]} crash")

    def restart(self, nid: str, wipe: bool = False) -> None:
        """Start a crashed node again; ``wipe`` first empties its storage (a deleted data dir),
        and it bootstraps with the original configuration as a fresh server does."""
        node = self.nodes[nid]
        if node.core is not None:
            return
        if wipe:
            node.storage = MemoryStorage()
        node.core = self._new_core(node)
        if wipe:
            node.core.bootstrap(self.configuration)
        snap = node.storage.snapshot
        node.fsm = fsm_restore(snap.data) if snap else []
        node.fsm_index = snap.meta.index if snap else 0
        self._log(f"{nid[:8]} restart")
        self._after(node)

    def partition(self, groups: list[list[str]]) -> None:
        self.groups = {}
        for g, members in enumerate(groups):
            for m in members:
                self.groups[m] = g
        self._log(f"partition {[[m[:8] for m in g] for g in groups]}")

    def heal(self) -> None:
        self.groups = None
        self.loss = 0.0
        self.duplicate = 0.0
        for nid in self.ids:
            self.restart(nid)
        self._log("heal")

    def propose(self, data: bytes) -> int | None:
        node = self.leader()
        if node is None or node.core is None:
            return None
        try:
            index = node.core.propose(data, self.now)
        except (NotLeader, RaftError):
            return None
        self._after(node)
        return index

    def call_leader(self, fn: Callable[[RaftCore], Any]) -> Any:
        """Call ``fn(core)`` on the current leader, then drain it; None when no leader/refused."""
        node = self.leader()
        if node is None or node.core is None:
            return None
        try:
            result = fn(node.core)
        except RaftError:
            result = None
        self._after(node)
        return result

    # ------------------------------------------------------------------ checker

    def _check_ready(self, node: SimNode, r: Ready, was_leader_term: int | None) -> None:
        core = node.core
        assert core is not None
        nid = node.id
        if core.role is Role.LEADER:
            holder = self._leaders.setdefault(core.term, nid)
            if holder != nid:
                self.fail(f"election safety: {holder} and {nid} both leader in term {core.term}")
            if was_leader_term != core.term:
                self._check_completeness(node)
        if was_leader_term == core.term and (r.truncate_from is not None or r.snapshot):
            self.fail(f"leader append-only: {nid} truncated its log in term {core.term}")
        for e in r.entries:
            prev_term = core.term_at(e.index - 1)
            key = (e.index, e.term)
            seen = self._entries.get(key)
            val = (int(e.type), e.data, prev_term)
            if seen is None:
                self._entries[key] = val
            elif (
                seen[0] != val[0]
                or seen[1] != val[1]
                or (seen[2] is not None and prev_term is not None and seen[2] != prev_term)
            ):
                self.fail(f"log matching: {nid} entry {key} differs from another server's")
        for e in r.committed:
            prev = self._applied.get(e.index)
            cur = (e.term, int(e.type), e.data)
            if prev is None:
                self._applied[e.index] = cur
            elif prev != cur:
                self.fail(
                    f"state machine safety: {nid} applied {cur[:2]} at {e.index}, another {prev[:2]}"
                )

    def _check_completeness(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        for index, (term, _, data) in self._applied.items():
            if index <= core.first_index - 1:
                continue
            t = core.term_at(index)
            e = core.entry(index)
            if t != term or e is None or e.data != data:
                self.fail(
                    f"leader completeness: new leader {node.id} (term {core.term}) lacks committed "
                    f"entry {index} (term {term}); has term {t}"
                )

    def check_converged(self) -> bool:
        live = self.live()
        leaders = self.leaders()
        if len(live) != len(self.ids) or len(leaders) != 1:
            return False
        lc = leaders[0].core
        assert lc is not None
        if lc.commit_index < lc.last_index:
            return False
        for n in live:
            c = n.core
            assert c is not None
            if n.fsm_index != lc.commit_index or c.leader_id != lc.leader_id or c.term != lc.term:
                return False
        return True

    def await_convergence(self, bound: float, step: float = 0.25) -> float:
        """Liveness: run until one leader and everything applied everywhere; returns time taken."""
        start = self.now
        while self.now - start <= bound:
            if self.check_converged():
                self._check_fsms_equal()
                return self.now - start
            self.run_for(step)
        states = {
            n.id[:8]: (n.core.role.value, n.core.term, n.core.commit_index, n.fsm_index)  # type: ignore[union-attr]
            for n in self.live()
        }
        self.fail(f"liveness: no convergence within {bound}s after healing: {states}")
        return -1.0

    def _check_fsms_equal(self) -> None:
        first = self.live()[0]
        for n in self.live()[1:]:
            if n.fsm != first.fsm:
                self.fail(f"state machines differ between {first.id} and {n.id}")

    def trace_hash(self) -> str:
        return hashlib.sha256("\n".join(self.trace).encode()).hexdigest()


def _node_id(rng: random.Random) -> str:
    from consim.raft.core import new_node_id

    return new_node_id(rng)


def random_run(
    seed: int,
    *,
    duration: float = 10.0,
    core_factory: CoreFactory = RaftCore,
    liveness_bound: float = 30.0,
    n: int | None = None,
    trace: bool = True,
    **config: Any,
) -> Harness:
    """One randomized fault schedule: faults for ``duration`` seconds, then heal and check liveness.
    ``config`` overrides RaftConfig fields (e.g. a tiny ``snapshot_chunk_size``)."""
    picker = random.Random(seed * 7919 + 1)
    size = n if n is not None else picker.choice([3, 3, 5])
    # Snapshots on hashicorp's interval timer (checked every random 0.5-1 s), so the schedules
    # also race snapshots against faults at times the log length does not decide.
    config = {"snapshot_threshold": 24, "trailing_logs": 8, "snapshot_interval": 0.5, **config}
    cfg = RaftConfig.for_multiplier(1, **config)
    h = Harness(
        size,
        seed,
        cfg,
        loss=picker.choice([0.0, 0.02, 0.1]),
        duplicate=picker.choice([0.0, 0.05]),
        delay=(0.001, picker.choice([0.01, 0.05, 0.3])),
        core_factory=core_factory,
        trace=trace,
    )
    ids = h.ids
    counter = [0]

    def client() -> None:
        counter[0] += 1
        h.propose(f"cmd-{seed}-{counter[0]}".encode())

    t = picker.expovariate(8.0)
    while t < duration:
        h.at(t, client)
        t += picker.expovariate(8.0)
    t = 1.0
    while True:
        t += picker.uniform(0.3, 2.5)
        if t >= duration:
            break
        action = picker.random()
        if action < 0.25:
            k = picker.randint(1, size // 2)
            shuffled = ids[:]
            picker.shuffle(shuffled)
            groups = [shuffled[:k], shuffled[k:]]
            h.at(t, lambda g=groups: h.partition(g))
        elif action < 0.4:
            h.at(t, lambda: h.partition([ids]))
        elif action < 0.6:
            victim = picker.choice(ids)
            h.at(t, lambda v=victim: h.crash(v))
        elif action < 0.75:
            victim = picker.choice(ids)
            h.at(t, lambda v=victim: h.restart(v))
        elif action < 0.85:
            h.at(t, lambda: h.call_leader(lambda c: c.transfer_leadership(None, h.now)))
        else:
            h.at(t, lambda: h.call_leader(lambda c: c.verify_leader(h.now)))
    h.run_until(duration)
    h.heal()
    h.await_convergence(liveness_bound)
    return h
