"""In-memory network for virtual time: no sockets, seeded latency, deterministic delivery.

Run it under ``trio.testing.MockClock(autojump_threshold=0)`` (real time works too, just slower).
One background task (started by :meth:`Network.run` / ``async with``) owns a heap of deliveries
ordered by (time, sequence number) and performs them in that order; nothing relies on trio's
ordering of timers with equal deadlines, which is not deterministic.

Latency: each host pair gets a base latency drawn once from ``rng`` (uniform in ``latency``), and
each message adds jitter drawn from ``rng`` (uniform in [0, (max-min)/4]) plus any fault delay.
Each (src address, dst address) link is FIFO: a message never overtakes an earlier one on its link.

Faults are checked when a message is sent (cut, random loss) and again when it arrives (a cut made
while it was in flight drops it). Every message is msgpack-encoded at send and decoded at arrival
exactly like the real wire, so unserialisable values fail here too (TypeError at the sender).

Dead addresses: a request that arrives where nothing serves, or whose server dies before replying,
gets a reset back over the reverse link, so the caller raises ``Unreachable`` one round trip later
(if faults drop the reset, the caller times out instead). Notifies and datagrams to a dead address
vanish.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from consim.net.faults import FaultModel, host_of
from consim.net.framing import pack, unpack
from consim.net.network import (
    MAX_DATAGRAM,
    DatagramHandler,
    Network,
    RpcError,
    RpcHandler,
    RpcTimeout,
    Unreachable,
    deliver_datagram,
)
from consim.net.rpc import (
    KIND_ERROR,
    KIND_NOTIFY,
    KIND_REPLY,
    KIND_REQUEST,
    Frame,
    parse_frame,
    run_handler,
)

_KIND_RESET = -1  # simulator-only: "connection reset", never on a real wire


@dataclass
class _RpcListener:
    address: str
    handler: RpcHandler
    requests: trio.MemorySendChannel[tuple[str, Frame]]
    notifies: trio.MemorySendChannel[tuple[str, Frame]]
    inflight: dict[tuple[str, int], None] = field(default_factory=dict)


@dataclass
class _DatagramListener:
    address: str
    inbox: trio.MemorySendChannel[tuple[str, bytes]]


class _Pending:
    __slots__ = ("event", "kind", "body")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.kind: int | None = None
        self.body: Any = None


class SimNetwork(Network):
    def __init__(
        self,
        rng: random.Random,
        latency: tuple[float, float] = (0.0005, 0.002),
        *,
        faults: FaultModel | None = None,
    ) -> None:
        lo, hi = latency
        if not 0 <= lo <= hi:
            raise ValueError(f"latency must be (min, max) with 0 <= min <= max, got {latency}")
        # Loss draws get their own stream so that adding loss does not shift latency draws.
        super().__init__(
            faults if faults is not None else FaultModel(random.Random(rng.getrandbits(64)))
        )
        self.rng = rng
        self.latency = (float(lo), float(hi))
        self._base_latency: dict[tuple[str, str], float] = {}
        self._link_floor: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._wake = trio.Event()
        self._rpc: dict[str, _RpcListener] = {}
        self._dgram: dict[str, _DatagramListener] = {}
        self._pending: dict[tuple[str, str, int], _Pending] = {}
        self._next_rid: dict[tuple[str, str], int] = {}
        self.delivered = 0  # messages handed to a listener or caller (for tests and reports)

    # -- background ------------------------------------------------------------------------------

    async def _start_background(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._deliver_loop)

    async def _deliver_loop(self) -> None:
        while True:
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, _, action = heapq.heappop(self._heap)
                action()
            deadline = self._heap[0][0] if self._heap else math.inf
            self._wake = trio.Event()
            with trio.move_on_at(deadline):
                await self._wake.wait()

    def _schedule(self, at: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), action))
        if self._heap[0][2] is action:
            self._wake.set()

    def _latency(self, src: str, dst: str) -> float:
        lo, hi = self.latency
        pair = (host_of(src), host_of(dst))
        base = self._base_latency.get(pair)
        if base is None:
            base = self._base_latency[pair] = self.rng.uniform(lo, hi)
        return base + self.rng.uniform(0.0, (hi - lo) / 4)

    def _send(self, src: str, dst: str, data: bytes, on_arrival: Callable[[bytes], None]) -> None:
        """Put one encoded message on the src->dst link, subject to faults."""
        self._require_nursery()
        if self.faults.drops(src, dst):
            self.stats[src]["dropped_by_fault"] += 1
            return
        link = (src, dst)
        at = trio.current_time() + self._latency(src, dst) + self.faults.extra_delay(src, dst)
        at = max(at, self._link_floor.get(link, 0.0))
        self._link_floor[link] = at

        def arrive() -> None:
            if not self.faults.allowed(src, dst):
                self.stats[dst]["dropped_by_fault"] += 1
                return
            self.delivered += 1
            on_arrival(data)

        self._schedule(at, arrive)

    # -- RPC -------------------------------------------------------------------------------------

    async def serve_rpc(
        self,
        address: str,
        handler: RpcHandler,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.CancelScope() as scope:
            self._claim(address, scope)
            req_send, req_recv = trio.open_memory_channel[tuple[str, Frame]](math.inf)
            not_send, not_recv = trio.open_memory_channel[tuple[str, Frame]](math.inf)
            listener = _RpcListener(address, handler, req_send, not_send)
            self._rpc[address] = listener
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._notify_loop, listener, not_recv)
                    task_status.started(address)
                    async for src, frame in req_recv:
                        nursery.start_soon(self._serve_request, listener, src, frame)
            finally:
                self._release(address, scope)
                if self._rpc.get(address) is listener:
                    del self._rpc[address]
                if self.running:
                    # The server vanished: its callers see their connections reset.
                    for src, rid in listener.inflight:
                        self._send_frame(address, src, Frame(_KIND_RESET, rid, "", None))
                listener.inflight.clear()

    async def _notify_loop(
        self, listener: _RpcListener, inbox: trio.MemoryReceiveChannel[tuple[str, Frame]]
    ) -> None:
        stats = self.stats[listener.address]
        async for src, frame in inbox:
            await run_handler(listener.handler, frame.method, frame.body, src, stats)

    async def _serve_request(self, listener: _RpcListener, src: str, frame: Frame) -> None:
        key = (src, frame.request_id)
        listener.inflight[key] = None
        # If cancelled here (server killed), the key stays in flight and serve_rpc resets it.
        kind, body = await run_handler(
            listener.handler, frame.method, frame.body, src, self.stats[listener.address]
        )
        del listener.inflight[key]
        self.stats[listener.address]["replies_out"] += 1
        self._send_frame(listener.address, src, Frame(kind, frame.request_id, "", body))

    def _send_frame(self, src: str, dst: str, frame: Frame) -> None:
        """Send a reply/error/reset frame from a server back to a caller."""
        data = pack(frame.to_wire())
        self._send(src, dst, data, lambda d: self._reply_arrived(src, dst, d))

    def _reply_arrived(self, server: str, caller: str, data: bytes) -> None:
        obj = unpack(data)
        kind, rid, _, body = obj
        slot = self._pending.get((caller, server, rid))
        if slot is None:
            self.stats[caller]["late_replies"] += 1
            return
        slot.kind, slot.body = kind, body
        slot.event.set()

    def _request_arrived(self, src: str, dst: str, data: bytes) -> None:
        frame = parse_frame(unpack(data))
        assert frame is not None  # we encoded it ourselves
        listener = self._rpc.get(dst)
        if listener is None:
            if frame.kind == KIND_REQUEST:
                self._send_frame(dst, src, Frame(_KIND_RESET, frame.request_id, "", None))
            return
        stats = self.stats[dst]
        stats["frames_in"] += 1
        if frame.kind == KIND_REQUEST:
            stats["requests_in"] += 1
            listener.requests.send_nowait((src, frame))
        else:
            stats["notifies_in"] += 1
            listener.notifies.send_nowait((src, frame))

    async def call(self, src: str, dst: str, method: str, args: Any, timeout: float) -> Any:
        link = (src, dst)
        rid = self._next_rid.get(link, 0) + 1
        self._next_rid[link] = rid
        data = pack([KIND_REQUEST, rid, method, args])  # TypeError here, like the real wire
        slot = _Pending()
        key = (src, dst, rid)
        self._pending[key] = slot
        stats = self.stats[src]
        stats["calls_out"] += 1
        try:
            self._send(src, dst, data, lambda d: self._request_arrived(src, dst, d))
            with trio.move_on_after(timeout):
                await slot.event.wait()
        finally:
            del self._pending[key]
        if slot.kind == KIND_REPLY:
            stats["calls_ok"] += 1
            return slot.body
        if slot.kind == KIND_ERROR:
            stats["rpc_errors"] += 1
            raise RpcError(slot.body)
        if slot.kind == _KIND_RESET:
            stats["unreachable"] += 1
            raise Unreachable(f"rpc {method} to {dst}: connection refused")
        stats["rpc_timeouts"] += 1
        raise RpcTimeout(f"rpc {method} to {dst} timed out after {timeout}s")

    def notify(self, src: str, dst: str, method: str, args: Any) -> None:
        data = pack([KIND_NOTIFY, 0, method, args])
        self.stats[src]["notifies_out"] += 1
        self._send(src, dst, data, lambda d: self._request_arrived(src, dst, d))

    # -- datagrams -------------------------------------------------------------------------------

    async def serve_datagrams(
        self,
        address: str,
        handler: DatagramHandler,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.CancelScope() as scope:
            self._claim(address, scope)
            send, recv = trio.open_memory_channel[tuple[str, bytes]](math.inf)
            listener = _DatagramListener(address, send)
            self._dgram[address] = listener
            try:
                task_status.started(address)
                stats = self.stats[address]
                async for src, payload in recv:
                    await deliver_datagram(handler, src, payload, stats)
            finally:
                self._release(address, scope)
                if self._dgram.get(address) is listener:
                    del self._dgram[address]

    def send_datagram(self, src: str, dst: str, payload: bytes) -> None:
        if len(payload) > MAX_DATAGRAM:
            raise ValueError(f"datagram of {len(payload)} bytes exceeds {MAX_DATAGRAM}")
        data = pack([src, bytes(payload)])
        self.stats[src]["datagrams_out"] += 1
        self._send(src, dst, data, lambda d: self._datagram_arrived(dst, d))

    def _datagram_arrived(self, dst: str, data: bytes) -> None:
        listener = self._dgram.get(dst)
        if listener is None:
            return
        src, payload = unpack(data)
        listener.inbox.send_nowait((src, payload))


__all__ = ["SimNetwork", "RpcError", "RpcTimeout", "Unreachable"]
