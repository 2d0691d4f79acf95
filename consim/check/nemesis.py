"""The fault side of ``consim check``: every ``interval`` a fault starts, one ``interval`` later it
stops, then the next one, chosen at random (seeded) among the enabled kinds:

- ``partition``: random halves, the current leader isolated, a bridge (two halves that only one
  server hears both of), a majority ring (every server sees a majority, no two the same one), or
  one-way blocks (a server's messages out, or in, are dropped);
- ``kill``: a server (the leader half the time; ``kill:leader``: always) crashes and restarts
  from its storage;
- ``pause``: a server (the leader half the time; ``pause:leader``: always) is paused (SIGSTOP)
  for the interval, longer than the leader lease, then resumed;
- ``loss``: every message to or from a server is lost with a probability of 10-50% (a gossip
  datagram is gone; an RPC or Raft message over TCP arrives after retransmission timeouts);
- ``delay``: every message from a server is delayed 50-500 ms;
- ``membership``: a server is removed with ``DELETE /v1/operator/raft/peer`` (through another
  server), then restarted, and joins again (the leader adds alive servers back).

Every fault is an event in the cluster's event log (``nemesis_start``/``nemesis_stop``, plus the
fault model's own events) and in the history (process ``"nemesis"``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import trio

from consim.check.history import History
from consim.cluster import Cluster, ClusterError

KINDS = ("partition", "kill", "pause", "loss", "delay", "membership")
PARTITIONS = ("halves", "isolate-leader", "bridge", "majority-ring", "one-way")


def parse_nemesis(text: str) -> tuple[str, ...]:
    """``"partition,kill"`` -> ("partition", "kill"); ``""`` or ``"none"`` -> no faults.
    ``partition:SHAPE`` (e.g. ``partition:isolate-leader``) limits partitions to one shape;
    ``kill:leader`` and ``pause:leader`` always hit the leader."""
    if text.strip() in ("", "none"):
        return ()
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS and not _is_shape(k)]
    if unknown:
        raise ValueError(
            f"unknown nemesis {', '.join(unknown)}; choose from {', '.join(KINDS)} "
            f"(comma-separated; partition:SHAPE with SHAPE one of {', '.join(PARTITIONS)}; "
            "kill:leader, pause:leader)"
        )
    return kinds


def _is_shape(kind: str) -> bool:
    head, _, shape = kind.partition(":")
    if head == "partition":
        return shape in PARTITIONS
    return head in ("kill", "pause") and shape == "leader"


class Nemesis:
    def __init__(
        self,
        cluster: Cluster,
        history: History,
        *,
        kinds: tuple[str, ...],
        interval: float,
        rng: random.Random,
        clock: Callable[[], float],
        datacenter: str = "dc1",
        token: str = "",
    ) -> None:
        self.cluster = cluster
        self.history = history
        self.kinds = kinds
        self.interval = interval
        self.rng = rng
        self._clock = clock
        self.servers = [n.name for n in cluster.datacenter_servers(datacenter)]
        self.datacenter = datacenter
        self.token = token
        self.faults = 0
        self._active: dict[str, Any] | None = None
        self._killed: set[str] = set()
        self._paused: set[str] = set()

    def now(self) -> float:
        return round(self._clock(), 6)

    # ---- the schedule ----------------------------------------------------------------------
    async def run(self, until: float) -> None:
        """Start and stop faults until ``until``; whatever is active then is left to ``heal``."""
        if not self.kinds:
            return
        while True:
            await trio.sleep(self.interval)
            if self._clock() >= until:
                return
            await self.start(self.rng.choice(self.kinds))
            await trio.sleep(min(self.interval, max(0.0, until - self._clock())))
            await self.stop()
            if self._clock() >= until:
                return

    def _record(self, f: str, value: dict[str, Any]) -> None:
        self.history.nemesis(f, value, self.now())
        self.cluster.events.emit(
            "cluster",
            f"nemesis_{f}",
            dict(value),
            level="WARN",
            subsystem="check.nemesis",
            message=f"nemesis {f}: {value.get('fault', '')}",
        )

    async def start(self, kind: str) -> None:
        head, _, shape = kind.partition(":")
        if head == "partition":
            fault = await self._start_partition(shape or None)
        elif head in ("kill", "pause"):
            fault = await getattr(self, "_start_" + head)(leader=shape == "leader")
        else:
            fault = await getattr(self, "_start_" + head)()
        if fault is None:
            return
        self.faults += 1
        self._active = fault
        self._record("start", fault)

    async def stop(self) -> None:
        fault = self._active
        if fault is None:
            return
        self._active = None
        await getattr(self, "_stop_" + fault["kind"])(fault)
        self._record("stop", {"fault": fault["fault"], "kind": fault["kind"]})

    async def heal(self) -> None:
        """End everything: the active fault, every partition, loss and delay, paused and dead
        servers. Recorded as one ``stop`` of fault ``heal``."""
        await self.stop()
        self.cluster.heal(all=True)
        for name in self.servers:
            node = self.cluster.node(name)
            if node.paused:
                self.cluster.resume(name)
        for name in self.servers:
            if not self.cluster.node(name).running:
                await self.cluster.restart(name)
        self._record("stop", {"fault": "heal", "kind": "heal"})

    # ---- choosing servers ------------------------------------------------------------------
    def _running(self) -> list[str]:
        return [n for n in self.servers if self.cluster.node(n).running]

    def _target(self, leader_only: bool = False) -> str | None:
        """The leader half the time (when there is one), otherwise any running server."""
        leader = self.cluster.leader(self.datacenter)
        running = [n for n in self._running() if not self.cluster.node(n).paused]
        if not running:
            return None
        if leader_only:
            return None if leader is None else leader.name
        if leader is not None and self.rng.random() < 0.5:
            return leader.name
        return self.rng.choice(running)

    # ---- partition ---------------------------------------------------------------------------
    async def _start_partition(self, shape: str | None = None) -> dict[str, Any] | None:
        shape = shape or self.rng.choice(PARTITIONS)
        servers = list(self.servers)
        self.rng.shuffle(servers)
        if shape == "isolate-leader":
            leader = self.cluster.leader(self.datacenter)
            if leader is None:
                shape = "halves"
            else:
                others = [n for n in self.servers if n != leader.name]
                self.cluster.partition([[leader.name], others])
                return {"kind": "partition", "fault": shape, "groups": [[leader.name], others]}
        if shape == "halves":
            cut = len(servers) // 2
            groups = [sorted(servers[:cut]), sorted(servers[cut:])]
            self.cluster.partition(groups)
            return {"kind": "partition", "fault": shape, "groups": groups}
        if shape == "bridge":
            # Two sides that cannot talk, and one server (the bridge) that hears both.
            bridge, rest = servers[0], servers[1:]
            half = len(rest) // 2
            left, right = sorted(rest[:half]), sorted(rest[half:])
            for a in left:
                for b in right:
                    self.cluster.block(a, b)
                    self.cluster.block(b, a)
            return {
                "kind": "partition",
                "fault": shape,
                "bridge": bridge,
                "sides": [left, right],
            }
        if shape == "majority-ring":
            cut = majority_ring_cuts(servers)
            for a, b in cut:
                self.cluster.block(a, b)
                self.cluster.block(b, a)
            return {"kind": "partition", "fault": shape, "ring": servers, "cut": cut}
        # one-way: a server's messages out (or in) are dropped; it still hears (or talks).
        target = self._target() or servers[0]
        outbound = self.rng.random() < 0.5
        for other in self.servers:
            if other != target:
                if outbound:
                    self.cluster.block(target, other)
                else:
                    self.cluster.block(other, target)
        return {
            "kind": "partition",
            "fault": shape,
            "server": target,
            "direction": "outbound" if outbound else "inbound",
        }

    async def _stop_partition(self, fault: dict[str, Any]) -> None:
        self.cluster.heal()

    # ---- kill / restart ----------------------------------------------------------------------
    async def _start_kill(self, leader: bool = False) -> dict[str, Any] | None:
        target = self._target(leader)
        if target is None:
            return None
        self.cluster.kill(target)
        return {"kind": "kill", "fault": "kill", "server": target}

    async def _stop_kill(self, fault: dict[str, Any]) -> None:
        name = fault["server"]
        if not self.cluster.node(name).running:
            await self.cluster.restart(name)

    # ---- pause / resume ----------------------------------------------------------------------
    async def _start_pause(self, leader: bool = False) -> dict[str, Any] | None:
        target = self._target(leader)
        if target is None:
            return None
        self.cluster.pause(target)
        return {"kind": "pause", "fault": "pause", "server": target}

    async def _stop_pause(self, fault: dict[str, Any]) -> None:
        self.cluster.resume(fault["server"])

    # ---- loss / delay ------------------------------------------------------------------------
    async def _start_loss(self) -> dict[str, Any] | None:
        target = self.rng.choice(self.servers)
        p = round(self.rng.uniform(0.1, 0.5), 3)
        self.cluster.set_loss(target, "*", p)
        self.cluster.set_loss("*", target, p)
        return {"kind": "loss", "fault": "loss", "server": target, "probability": p}

    async def _stop_loss(self, fault: dict[str, Any]) -> None:
        self.cluster.heal(all=True)

    async def _start_delay(self) -> dict[str, Any] | None:
        target = self.rng.choice(self.servers)
        seconds = round(self.rng.uniform(0.05, 0.5), 3)
        self.cluster.set_delay(target, "*", seconds)
        return {"kind": "delay", "fault": "delay", "server": target, "seconds": seconds}

    async def _stop_delay(self, fault: dict[str, Any]) -> None:
        self.cluster.heal(all=True)

    # ---- membership --------------------------------------------------------------------------
    async def _start_membership(self) -> dict[str, Any] | None:
        running = [n for n in self._running() if not self.cluster.node(n).paused]
        if len(running) < 2:
            return None
        target = self.rng.choice(running)
        via = self.rng.choice([n for n in running if n != target])
        address = self.cluster.node(target).address
        status: Any
        try:
            with trio.move_on_after(10.0) as scope:
                status, _, body = await self.cluster.http(
                    via,
                    "DELETE",
                    f"/v1/operator/raft/peer?address={address}",
                    headers={"X-Consul-Token": self.token} if self.token else None,
                )
            if scope.cancelled_caught:
                status, body = None, b"timeout"
        except ClusterError as exc:
            status, body = None, str(exc).encode()
        return {
            "kind": "membership",
            "fault": "remove-peer",
            "server": target,
            "via": via,
            "status": status,
            "answer": body.decode("utf-8", "replace").strip()[:120],
        }

    async def _stop_membership(self, fault: dict[str, Any]) -> None:
        # Consul's procedure for a removed server: restart it; it joins again and the leader's
        # reconcile adds it back as a voter.
        await self.cluster.restart(fault["server"])


def majority_ring_cuts(ring: list[str]) -> list[list[str]]:
    """Pairs to cut so that every server sees a majority (itself included) and no two servers see
    the same one: neighbours within distance k on the ring stay connected."""
    n = len(ring)
    if n < 3:
        return []
    if n == 3:
        # Symmetric links cannot make a 3-ring of distinct majorities; cutting one pair leaves
        # a and b each with a different majority ({a, c}, {b, c}) and c with all.
        return [[ring[0], ring[1]]]
    others_needed = n // 2  # a majority is n // 2 + 1, itself included
    k = (others_needed + 1) // 2
    cuts = []
    for i in range(n):
        for j in range(i + 1, n):
            distance = min(j - i, n - (j - i))
            if distance > k:
                cuts.append([ring[i], ring[j]])
    return cuts
