"""An in-memory discrete-event world for GossipCores: tests and the convergence benchmark.

No trio and no clock: a heap of (time, seq, ...) entries, one seeded ``random.Random`` for the
network (latency, loss) and one derived per member, so the same seed gives the same trace.
Faults: per-message loss, partitions (groups of member names), crashes and restarts.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable

from consim.gossip.config import GossipConfig
from consim.gossip.core import GossipCore
from consim.gossip.keyring import Keyring
from consim.gossip.types import GossipEvent, KeyringResponse, Member, QueryResponse

_WAKE, _DELIVER, _STREAM, _STREAM_REPLY, _STREAM_REFUSED = 0, 1, 2, 3, 4
TraceEntry = tuple[float, str, str, str]


class Harness:
    def __init__(
        self,
        seed: int,
        *,
        latency: tuple[float, float] = (0.001, 0.005),
        loss: float = 0.0,
        record_trace: bool = True,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.latency = latency
        self.loss = loss
        self.now = 0.0
        self.cores: dict[str, GossipCore] = {}  # by member name
        self._by_address: dict[str, str] = {}
        self.crashed: set[str] = set()
        # Pairs of members whose datagrams are dropped while their TCP streams still pass
        # (a firewall that blocks UDP only).
        self.udp_blocked: set[frozenset[str]] = set()
        self._group: dict[str, int] | None = None
        self._heap: list[tuple[float, int, int, str, str, bytes]] = []
        self._seq = 0
        self._wake: dict[str, float] = {}
        self.record_trace = record_trace
        self.trace: list[TraceEntry] = []
        self.results: dict[tuple[str, int], KeyringResponse | QueryResponse] = {}
        self.result_times: dict[tuple[str, int], float] = {}
        # (member, join id) -> (when, None or memberlist's error): ``join_once`` outcomes.
        self.join_results: dict[tuple[str, int], tuple[float, str | None]] = {}
        self.listeners: list[Callable[[float, str, GossipEvent], None]] = []
        self.delivered = 0
        self._hosts = 0

    # ---------------------------------------------------------------- building the world

    def add_member(
        self,
        name: str,
        address: str,
        *,
        config: GossipConfig | None = None,
        keyring: Keyring | None = None,
        tags: dict[str, str] | None = None,
    ) -> GossipCore:
        core = GossipCore(
            name,
            address,
            tags=tags or {},
            config=config,
            rng=random.Random(self.rng.getrandbits(64)),
            now=self.now,
            keyring=keyring,
        )
        self.cores[name] = core
        self._by_address[address] = name
        self.crashed.discard(name)
        self._after(name)
        return core

    def add_pool(
        self,
        n: int,
        *,
        prefix: str = "dc1-s",
        config: GossipConfig | None = None,
        keys: list[bytes] | None = None,
        preseeded: bool = False,
        port: int = 8301,
        hosts: list[str] | None = None,
    ) -> list[GossipCore]:
        """``n`` members named ``prefix1..n``; ``preseeded`` skips joins (big pools).

        Hosts default to fresh 10.x.y.z addresses; pass ``hosts`` to put a second pool (WAN,
        port 8302) on the same machines. Without ``preseeded`` every member joins the first.
        """
        cores = []
        for i in range(1, n + 1):
            if hosts is not None:
                host = hosts[i - 1]
            else:
                self._hosts += 1
                h = self._hosts
                host = f"10.{(h >> 16) & 255}.{(h >> 8) & 255}.{h & 255}"
            keyring = Keyring(list(keys)) if keys is not None else None
            cores.append(
                self.add_member(f"{prefix}{i}", f"{host}:{port}", config=config, keyring=keyring)
            )
        if preseeded:
            roster = [(c.name, c.address, c.local_member.tags, c.incarnation) for c in cores]
            for core in cores:
                core.seed_members(roster, self.now)
                self._after(core.name)
        else:
            for core in cores[1:]:
                self.join(core.name, cores[0].name)
        return cores

    # ---------------------------------------------------------------- operations

    def join(self, name: str, target: str) -> None:
        self.cores[name].join(self.cores[target].address, self.now)
        self._after(name)

    def join_once(self, name: str, address: str) -> int:
        """memberlist Join of ``address`` from ``name``; its outcome lands in ``join_results``."""
        jid = self.cores[name].join(address, self.now, once=True)
        self._after(name)
        return jid

    def leave(self, name: str) -> None:
        self.cores[name].leave(self.now)
        self._after(name)

    def force_leave(self, name: str, member: str, prune: bool = False) -> None:
        self.cores[name].force_leave(member, prune, self.now)
        self._after(name)

    def keyring_query(self, name: str, op: str, key_b64: str | None, relay_factor: int = 0) -> int:
        qid = self.cores[name].start_keyring_query(op, key_b64, self.now, relay_factor)
        self._after(name)
        return qid

    def crash(self, name: str) -> None:
        """The member stops dead: no ticks, nothing in or out. Its core stays for inspection."""
        self.crashed.add(name)

    def restart(
        self, name: str, *, keyring: Keyring | None = None, join: str | None = None
    ) -> GossipCore:
        """A fresh core (incarnation 1, empty member list) at the same address, like a reboot."""
        old = self.cores[name]
        core = self.add_member(
            name, old.address, config=old.config, keyring=keyring, tags=old.local_member.tags
        )
        if join is not None:
            self.join(name, join)
        return core

    def partition(self, groups: list[list[str]]) -> None:
        """Members in different groups cannot talk; members in no group reach everyone."""
        self._group = {name: i for i, group in enumerate(groups) for name in group}

    def heal(self) -> None:
        self._group = None

    # ---------------------------------------------------------------- running

    def run_until(self, t_end: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= t_end:
            time, _, kind, name, src, payload = heapq.heappop(heap)
            self.now = time
            if name in self.crashed:
                continue
            core = self.cores.get(name)
            if core is None:
                continue
            if kind == _WAKE:
                if self._wake.get(name) != time:
                    continue  # superseded
                del self._wake[name]
                core.tick(time)
            elif kind == _DELIVER:
                self.delivered += 1
                core.receive(src, payload, time)
            elif kind == _STREAM_REFUSED:
                core.stream_failed(src, f"dial tcp {src}: connect: connection refused", time)
            elif kind == _STREAM:
                # A TCP push-pull: the answer goes back on the same "connection" (no loss).
                self.delivered += 1
                reply = core.receive_stream(src, payload, time)
                src_name = self._by_address.get(src)
                if reply is not None and src_name is not None and self._reachable(name, src_name):
                    delay = self.rng.uniform(*self.latency)
                    self._push(time + delay, _STREAM_REPLY, src_name, core.address, reply)
            else:
                self.delivered += 1
                core.receive_stream_reply(src, payload, time)
            self._after(name)
        self.now = max(self.now, t_end)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until_true(
        self, predicate: Callable[[], bool], timeout: float, step: float = 0.05
    ) -> bool:
        """Advance in ``step`` slices until ``predicate()``; False if ``timeout`` passes first."""
        deadline = self.now + timeout
        while self.now < deadline:
            if predicate():
                return True
            self.run_until(min(deadline, self.now + step))
        return predicate()

    def wait_result(
        self, name: str, qid: int, timeout: float = 120.0
    ) -> KeyringResponse | QueryResponse:
        assert self.run_until_true(lambda: (name, qid) in self.results, timeout), (
            f"query {qid} from {name} never finished (seed={self.seed})"
        )
        return self.results[(name, qid)]

    # ---------------------------------------------------------------- views

    def members(self, name: str) -> dict[str, int]:
        """name -> Consul status number, as ``name`` sees the pool."""
        return {m.name: m.status for m in self.cores[name].members()}

    def member(self, viewer: str, name: str) -> Member | None:
        for m in self.cores[viewer].members():
            if m.name == name:
                return m
        return None

    def live(self) -> list[str]:
        return [n for n in self.cores if n not in self.crashed]

    def trace_hash(self) -> str:
        digest = hashlib.sha256()
        for entry in self.trace:
            digest.update(repr(entry).encode())
        return digest.hexdigest()

    # ---------------------------------------------------------------- internals

    def _after(self, name: str) -> None:
        """Drain a core's Ready: schedule its datagrams, record events/results, re-arm its timer."""
        core = self.cores[name]
        ready = core.ready()
        now = self.now
        for dst, payload in ready.datagrams:
            dst_name = self._by_address.get(dst)
            if dst_name is None or not self._reachable(name, dst_name):
                continue
            if self.udp_blocked and frozenset((name, dst_name)) in self.udp_blocked:
                continue
            if self.loss and self.rng.random() < self.loss:
                continue
            self._push(
                now + self.rng.uniform(*self.latency), _DELIVER, dst_name, core.address, payload
            )
        for dst, payload in ready.streams:
            dst_name = self._by_address.get(dst)
            if dst_name is None:
                # Nobody at that address: the host answers the dial with a reset, after one
                # round trip (the fixed minimum latency: no random draw, so traces stay put).
                self._push(now + 2 * self.latency[0], _STREAM_REFUSED, name, dst, b"")
                continue
            if not self._reachable(name, dst_name):
                continue
            self._push(
                now + self.rng.uniform(*self.latency), _STREAM, dst_name, core.address, payload
            )
        for event in ready.events:
            if self.record_trace:
                self.trace.append((round(now, 6), name, event.kind, event.message))
            for listener in self.listeners:
                listener(now, name, event)
        for jid, error in ready.join_results:
            self.join_results[(name, jid)] = (now, error)
        for qid, result in ready.query_results:
            self.results[(name, qid)] = result
            self.result_times[(name, qid)] = now
        deadline = max(core.next_deadline(), now)
        if deadline != float("inf") and self._wake.get(name) != deadline:
            self._wake[name] = deadline
            self._push(deadline, _WAKE, name, "", b"")

    def _reachable(self, src: str, dst: str) -> bool:
        if dst in self.crashed:
            return False
        if self._group is None:
            return True
        a, b = self._group.get(src), self._group.get(dst)
        return a is None or b is None or a == b

    def _push(self, time: float, kind: int, name: str, src: str, payload: bytes) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, self._seq, kind, name, src, payload))


def trace_lines(trace: list[TraceEntry]) -> list[str]:
    return [f"{t:10.3f} {node:>12} {kind:<16} {msg}" for t, node, kind, msg in trace]
