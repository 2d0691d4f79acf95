"""In-memory network for virtual time: no sockets, seeded latency, deterministic delivery.

Run it under :class:`VirtualClock` (real time works too, just slower). The network owns one heap
of deliveries and timers ordered by (time, sequence number) and performs them in that order;
nothing relies on trio's ordering of timers with equal deadlines, which is not deterministic.
Tasks that deliveries wake at the same instant run in trio's batch order, so a run is reproducible
once trio's scheduler is made deterministic too (``consim.net.trio_internals.make_trio_deterministic``,
which ``run_virtual`` calls).

Latency: each host pair gets a base latency drawn once from ``rng`` (uniform in ``latency``), and
each message adds jitter drawn from ``rng`` (uniform in [0, (max-min)/4]) plus any fault delay.
With a :class:`~consim.net.model.NetworkModel` (``model=``, and ``datacenter_of`` naming each
server host's datacenter) the base is the model's LAN or WAN one-way latency and the jitter its
bound instead. Each (src address, dst address) link is FIFO: a message never overtakes an earlier
one on its link (so a retransmitted message holds back the ones behind it, as on TCP).

Faults are checked when a message is sent (cut, random loss) and again when it arrives (a cut made
while it was in flight drops it). Random loss drops a datagram; the bytes of a port connection or
a push-pull exchange (TCP in the live network) are delayed by the retransmission timeouts they
cost instead (``FaultModel.stream_delay``), and a cut breaks a port connection at both ends.
Port connections carry exactly the bytes a socket would (``consim.net.portmux``), so the
handlers' codecs (Consul's RPC, hashicorp/raft) run on the same wire in virtual time and live.

Dead addresses: a connection whose first bytes arrive where nothing serves the port (or with an
unknown first byte) is closed back over the reverse link, so the dialer learns it one round trip
later, like a refused TCP connection. Datagrams to a dead address vanish.

Speed (virtual time): the network calls port connections' handlers and synchronous datagram
handlers directly, with no task, channel or cancel scope per message (see
:class:`~consim.net.network.Network`). Run it under :class:`VirtualClock` (what
``consim.runtime.run_virtual`` does): trio asks its clock how long to sleep only when no task is
runnable, and at that moment the clock performs every delivery due, jumps to the next one (or to
trio's next deadline, whichever comes first) and goes on until a delivery wakes a task. A chain of
Raft messages and gossip datagrams thus runs through many virtual instants without a single pass of
trio's scheduler, and nothing else in the run is constrained (``wait_all_tasks_blocked`` works).
Under any other clock a background task delivers each message at its time.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any

import trio

from consim.address import valid_address
from consim.net import network as seam  # the handler types every listener signature names
from consim.net.faults import FaultModel, host_of
from consim.net.framing import pack, unpack
from consim.net.model import LinkDelays, NetworkModel
from consim.net.network import (
    MAX_DATAGRAM,
    MAX_STREAM,
    STREAM_TIMEOUT,
    Network,
    Timer,
    Unreachable,
    deliver_datagram,
    stream_key,
)
from consim.net.portmux import (
    MAX_PENDING,
    Accept,
    ConnHandler,
    MuxConn,
    StreamOverConn,
)
from consim.net.trio_internals import Probes, scheduler_probes

# What a scheduled delivery is (the heap holds tuples, not closures: cheaper to build and order).
_TO_DATAGRAMS = 2  # a datagram envelope
_TO_STREAM = 3  # a stream exchange's request, for a stream listener
_STREAM_BACK = 4  # its answer, for the waiting dialer
_TIMER = 5  # a Timer firing: (at, seq, _TIMER, timer, token, None)
_TO_CONN = 6  # bytes (or the close, None) on a port connection: data = (conn id, bytes | None)
_CONN_LOST = 7  # a connection end learns it is gone: (at, seq, _CONN_LOST, conn, None, None)


class _SimConn:
    """One end of a virtual port connection (``consim.net.portmux.MuxConn``). Its bytes travel
    the simulated link like any message (FIFO per link, seeded latency; loss delays them as a
    retransmission would); a cut link breaks the connection at both ends, as a black-holed TCP
    connection dies."""

    __slots__ = (
        "net",
        "cid",
        "local",
        "peer",
        "dialer",
        "handler",
        "_closed",
        "_lost",
        "peer_end",
        "arrived",
    )

    def __init__(self, net: SimNetwork, cid: int, local: str, peer: str, dialer: bool) -> None:
        self.net = net
        self.cid = cid
        self.local, self.peer = local, peer
        self.dialer = dialer
        self.handler: ConnHandler | None = None
        self._closed = False
        self._lost = False
        self.peer_end: _SimConn | None = None
        self.arrived = False  # dialer end: its first chunk reached the listener

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        return 0  # bytes leave at once: the link holds them, not the sender

    def write(self, data: bytes) -> None:
        if self._closed or not data:
            return
        if len(data) > MAX_PENDING:
            self.net.stats[self.local]["port_send_overflow"] += 1
            self.close()
            return
        self.net._conn_send(self, bytes(data))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.net.running:
            return  # the network is gone (teardown): nobody is left to tell
        self.net._conn_send(self, None)
        self.net._conn_lost_later(self)

    def lost(self) -> None:
        self._closed = True
        if self._lost:
            return
        self._lost = True
        self.net._conns.pop((self.cid, self.dialer), None)
        self.net.tell_lost(self.local, self.handler)


# The channel names a :class:`MessageTap` sees for each kind of delivery.
TAP_CHANNELS = {
    _TO_DATAGRAMS: "datagram",
    _TO_STREAM: "stream",
    _STREAM_BACK: "stream-reply",
    _TO_CONN: "conn",
}


class MessageTap:
    """Sees every message the simulator carries, without touching it (the HTML report's message
    diagram). Only reads: it draws no randomness and schedules nothing, so a run with a tap has
    the same trace hash as one without. ``sent`` is called once per message put on a link
    (``due`` is None when a fault dropped it at once), ``dropped`` when a fault that arose while
    it travelled drops it on arrival (``seq`` as given to ``sent``), ``ran`` after a delivery
    to ``address`` or a timer it owns was handled (its state may have changed)."""

    def sent(
        self, seq: int, now: float, due: float | None, src: str, dst: str, channel: str, data: bytes
    ) -> None: ...

    def dropped(self, seq: int, now: float) -> None: ...

    def ran(self, address: str, now: float) -> None: ...


@dataclass
class _PortListener:
    address: str
    nursery: trio.Nursery  # stream-style connection handlers run here


@dataclass
class _DatagramListener:
    address: str
    inbox: trio.MemorySendChannel[Any]
    handler: seam.DatagramHandler | None = None
    is_async: bool = True


class VirtualClock(trio.abc.Clock):
    """Virtual time that jumps whenever every task is blocked, performing a :class:`SimNetwork`'s
    deliveries on the way: ``trio.testing.MockClock(autojump_threshold=0)`` with the simulator's
    event heap folded into the jump.

    trio calls :meth:`deadline_to_sleep_time` only when no task is runnable (and the clock checks
    that too, through ``consim.net.trio_internals``). The clock asks each network for its next due
    time (:meth:`SimNetwork.next_due`) and has it perform what is due (:meth:`SimNetwork.deliver_due`):
    it delivers, in (time, sequence) order, everything due no later than
    trio's next deadline, moving virtual time forward as it goes, and returns 0 as soon as a
    delivery made a task runnable or trio's next deadline has come; trio then runs those tasks or
    expires its deadlines. Ties go to the network first, as before. Deliveries therefore happen at
    exactly the points where the whole run is quiescent, which is what makes them deterministic.

    A delivery that raises is handed to the network's own task, which re-raises it there (an
    exception must not escape into trio's run loop).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._networks: list[SimNetwork] = []
        self._probes: Probes | None = None

    def start_clock(self) -> None:
        self._probes = None

    def current_time(self) -> float:
        return self._now

    def jump(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds`` (as ``MockClock.jump`` does)."""
        if seconds < 0:
            raise ValueError("time can't go backwards")
        self._now += seconds

    def attach(self, network: SimNetwork) -> None:
        self._networks.append(network)

    def detach(self, network: SimNetwork) -> None:
        if network in self._networks:
            self._networks.remove(network)

    def deadline_to_sleep_time(self, deadline: float) -> float:
        probes = self._probes
        if probes is None:
            probes = self._probes = scheduler_probes()
        runnable, next_deadline, idle_waiters = probes
        networks = self._networks
        while True:
            if runnable():
                return 0.0
            now = self._now
            trio_at = next_deadline()  # re-read: a delivery may have moved it
            if trio_at <= now:
                return 0.0
            network: SimNetwork | None = None
            at = math.inf
            for candidate in networks:
                due = candidate.next_due()
                if due < at:
                    at, network = due, candidate
            if network is None or at > now:
                # Time must move. Tasks in wait_all_tasks_blocked go first (as under MockClock's
                # autojump): a long sleep lets trio wake them after their cushion.
                if idle_waiters():
                    return 86400.0
                if network is None or at > trio_at:
                    if trio_at == math.inf:
                        return 86400.0  # nothing will ever happen: only I/O can wake the run
                    self._now = trio_at
                    return 0.0
                self._now = at
            try:
                network.deliver_due(self._now)
            except BaseException as exc:  # re-raised in the network's task, not in trio's loop
                network.fail(exc)
                return 0.0


def _size(data: Any) -> int:
    """Bytes a scheduled message carries (a port connection's are (id, flag, bytes | None))."""
    if isinstance(data, bytes | bytearray | memoryview):
        return len(data)
    if isinstance(data, tuple) and data and isinstance(data[-1], bytes | bytearray | memoryview):
        return len(data[-1])
    return 0


def _discard_queued(inbox: trio.MemoryReceiveChannel[Any]) -> None:
    """A listener died with work queued (say, notifies held while its server was paused): close
    the awaitables it will never run, so Python does not warn that they were never awaited."""
    while True:
        try:
            item = inbox.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return
        close = getattr(item, "close", None)
        if close is not None:
            close()


class SimNetwork(Network):
    _timer_task = False  # timers share the delivery heap

    def __init__(
        self,
        rng: random.Random,
        latency: tuple[float, float] = (0.0005, 0.002),
        *,
        faults: FaultModel | None = None,
        model: NetworkModel | None = None,
        datacenter_of: dict[str, str] | None = None,
    ) -> None:
        lo, hi = latency
        if not 0 <= lo <= hi:
            raise ValueError(f"latency must be (min, max) with 0 <= min <= max, got {latency}")
        # Loss draws get their own stream so that adding loss does not shift latency draws.
        base_loss = model.loss if model is not None else 0.0
        super().__init__(
            faults
            if faults is not None
            else FaultModel(random.Random(rng.getrandbits(64)), base_loss=base_loss)
        )
        self.model = model
        self._delays = LinkDelays(model, datacenter_of or {}, rng) if model is not None else None
        # With a bandwidth: when each link has sent what was put on it so far.
        self._bandwidth = model.bandwidth if model is not None else 0.0
        self._link_sent: dict[tuple[str, str], float] = {}
        self.rng = rng
        self.latency = (float(lo), float(hi))
        self._jitter = (self.latency[1] - self.latency[0]) / 4
        self._base_latency: dict[tuple[str, str], float] = {}  # per host pair
        self._link_base: dict[tuple[str, str], float] = {}  # the same, per address pair
        self._link_floor: dict[tuple[str, str], float] = {}
        # (time, seq, kind, src, dst, data); a timer entry is (time, seq, _TIMER, timer, token, None)
        self._heap: list[tuple[float, int, int, Any, Any, Any]] = []
        self._seq = itertools.count()
        self._wake = trio.Event()
        self._failed = trio.Event()
        self._failure: BaseException | None = None
        self._ports: dict[str, _PortListener] = {}
        self._dgram: dict[str, _DatagramListener] = {}
        self._streams: dict[str, seam.StreamHandler] = {}
        # Stream exchanges awaiting their answer: token -> (callback, give-up time).
        self._stream_waiters: dict[
            int, tuple[seam.StreamReply, seam.StreamError | None, float]
        ] = {}
        self._stream_tokens = itertools.count(1)
        self.delivered = 0  # messages handed to a listener or connection (tests and reports)
        # Port connections: (conn id, is the dialer's end) -> end.
        self._conns: dict[tuple[int, bool], _SimConn] = {}
        self._conn_ids = itertools.count(1)
        self.tap: MessageTap | None = None

    # -- background ------------------------------------------------------------------------------

    async def _start_background(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._deliver_loop)

    async def _deliver_loop(self) -> None:
        clock = trio.lowlevel.current_clock()
        if isinstance(clock, VirtualClock):
            clock.attach(self)
            try:
                await self._failed.wait()
                assert self._failure is not None
                raise self._failure
            finally:
                clock.detach(self)
        while True:
            now = trio.current_time()
            self.deliver_due(now)
            deadline = self.next_due()
            self._wake = trio.Event()
            with trio.move_on_at(deadline):
                await self._wake.wait()

    def next_due(self) -> float:
        """When the earliest scheduled delivery or timer is due (``math.inf`` when none is)."""
        heap = self._heap
        return heap[0][0] if heap else math.inf

    def fail(self, exc: BaseException) -> None:
        """A delivery made by the clock raised: surface it in this network's task."""
        if self._failure is None:
            self._failure = exc
        self._failed.set()

    def deliver_due(self, now: float) -> None:
        """Perform every delivery due at or before ``now``, in (time, sequence) order."""
        heap = self._heap
        faults = self.faults
        while heap and heap[0][0] <= now:
            _, seq, kind, src, dst, data = heapq.heappop(heap)
            if kind == _TIMER:
                src._fire(dst)  # type: ignore[attr-defined]
                if self.tap is not None and src.owner:
                    self.tap.ran(src.owner, now)
                continue
            if kind == _CONN_LOST:
                src.lost()  # type: ignore[attr-defined]
                if self.tap is not None:
                    self.tap.ran(src.local, now)  # type: ignore[attr-defined]
                continue
            if kind == _TO_CONN:
                if self._conn_arrived(src, dst, data):
                    self.delivered += 1
                    if self.tap is not None:
                        self.tap.ran(dst, now)
                elif self.tap is not None:
                    self.tap.dropped(seq, now)
                continue
            if not faults.clear() and not faults.allowed(src, dst):
                self.stats[dst]["dropped_by_fault"] += 1
                if self.tap is not None:
                    self.tap.dropped(seq, now)
                continue
            self.delivered += 1
            if kind == _TO_DATAGRAMS:
                self._datagram_arrived(dst, data)
            elif kind == _TO_STREAM:
                self._stream_arrived(src, dst, data)
            else:
                self._stream_answered(src, dst, data)
            if self.tap is not None:
                self.tap.ran(dst, now)

    def _schedule(self, at: float, kind: int, src: str, dst: str, data: bytes) -> int:
        seq = next(self._seq)
        item = (at, seq, kind, src, dst, data)
        heapq.heappush(self._heap, item)
        if self._heap[0] is item:
            self._wake.set()
        return seq

    def _schedule_timer(self, timer: Timer, when: float, token: int) -> None:
        self._schedule(when, _TIMER, timer, token, None)  # type: ignore[arg-type]

    def _host_latency(self, src: str, dst: str) -> float:
        """The base latency between two hosts, drawn on first use (the model's, with one)."""
        if self._delays is not None:
            return self._delays.pair(host_of(src), host_of(dst))[0]
        pair = (host_of(src), host_of(dst))
        base = self._base_latency.get(pair)
        if base is None:
            base = self._base_latency[pair] = self.rng.uniform(*self.latency)
        return base

    def _send(self, src: str, dst: str, data: bytes, kind: int) -> bool:
        """Put one encoded message on the src->dst link, subject to faults; False when they
        dropped it (for a port connection's bytes: TCP gave up, every retransmission lost)."""
        if self._nursery is None:
            self._require_nursery()
        faults = self.faults
        clear = faults.clear()
        late = 0.0
        if not clear:
            if kind == _TO_DATAGRAMS:
                if faults.drops(src, dst):
                    self.stats[src]["dropped_by_fault"] += 1
                    if self.tap is not None:
                        self.tap.sent(
                            -1, trio.current_time(), None, src, dst, TAP_CHANNELS[kind], data
                        )
                    return False
            else:
                retransmitted = faults.stream_delay(src, dst)
                if retransmitted is None:
                    self.stats[src]["dropped_by_fault"] += 1
                    if self.tap is not None:
                        self.tap.sent(
                            -1, trio.current_time(), None, src, dst, TAP_CHANNELS[kind], data
                        )
                    return False
                if retransmitted:
                    self.stats[src]["retransmitted"] += 1
                    late = retransmitted + faults.extra_delay(src, dst)
                else:
                    late = faults.extra_delay(src, dst)
        link = (src, dst)
        base = self._link_base.get(link)
        if base is None:
            base = self._link_base[link] = self._host_latency(src, dst)
        delays = self._delays
        if delays is None:
            at = trio.current_time() + base + self.rng.uniform(0.0, self._jitter) + late
        else:
            jitter = delays.pair(host_of(src), host_of(dst))[1]
            start = trio.current_time()
            if self._bandwidth:
                # Sent once the link has sent what is ahead of it, at the link's rate.
                start = max(start, self._link_sent.get(link, 0.0)) + _size(data) / self._bandwidth
                self._link_sent[link] = start
            at = start + base + late
            if jitter:
                at += self.rng.uniform(0.0, jitter)
        floor = self._link_floor.get(link, 0.0)
        if at < floor:
            at = floor
        self._link_floor[link] = at
        seq = self._schedule(at, kind, src, dst, data)
        if self.tap is not None:
            self.tap.sent(seq, trio.current_time(), at, src, dst, TAP_CHANNELS[kind], data)
        return True

    # -- the server port --------------------------------------------------------------------------

    async def serve_port(
        self, address: str, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.CancelScope() as scope:
            self._claim(address, scope)
            listener: _PortListener | None = None
            try:
                async with trio.open_nursery() as nursery:
                    listener = _PortListener(address, nursery)
                    self._ports[address] = listener
                    task_status.started(address)
                    await trio.sleep_forever()
            finally:
                self._release(address, scope)
                if listener is not None:
                    if self._ports.get(address) is listener:
                        del self._ports[address]
                    self._close_conns_of(address)

    # -- port connections ------------------------------------------------------------------------

    def dial(self, src: str, dst: str, first_byte: int, factory: Accept) -> MuxConn:
        self._require_nursery()
        cid = next(self._conn_ids)
        tls = self.outgoing_tls.get(src)
        wrapped = None
        if tls is not None:
            # TLS (consim.net.tls): the dialer gets the TLS end, the network the raw one.
            first_byte, factory, wrapped = tls(dst, first_byte, factory)
        conn = _SimConn(self, cid, src, dst, True)
        self._conns[(cid, True)] = conn
        valid = valid_address(dst)
        if valid:
            # The first byte leads, whatever the handler writes while it is made (TLS: its hello).
            self.stats[src]["connections_dialed"] += 1
            conn.write(bytes([first_byte]))
        conn.handler = factory(conn)
        if not valid:
            self.stats[src]["invalid_address"] += 1
            conn.close()
        return conn if wrapped is None else wrapped

    async def open_stream(self, src: str, dst: str, first_byte: int) -> trio.abc.Stream:
        if not valid_address(dst):
            self.stats[src]["invalid_address"] += 1
            raise Unreachable(f"cannot connect to {dst!r}: not a valid IP:port")
        stream = StreamOverConn()

        def factory(conn: MuxConn) -> ConnHandler:
            stream.conn = conn
            return stream

        self.dial(src, dst, first_byte, factory)
        await trio.lowlevel.checkpoint()
        return stream

    def _conn_send(self, conn: _SimConn, data: bytes | None) -> None:
        faults = self.faults
        if data is not None and not faults.clear() and not faults.allowed(conn.local, conn.peer):
            # A cut link breaks the connection; loss only delays its bytes (retransmission,
            # in ``_send``), as TCP would, unless every retransmission is lost: TCP gives up.
            self.stats[conn.local]["dropped_by_fault"] += 1
            self._break(conn)
            return
        if not self._send(conn.local, conn.peer, (conn.cid, not conn.dialer, data), _TO_CONN):  # type: ignore[arg-type]
            self._break(conn)

    def _conn_lost_later(self, conn: _SimConn) -> None:
        """The end learns of the loss from the heap, never inside the call that caused it."""
        self._schedule(trio.current_time(), _CONN_LOST, conn, None, None)  # type: ignore[arg-type]

    def _break(self, conn: _SimConn) -> None:
        conn._closed = True
        self._conn_lost_later(conn)
        other = conn.peer_end
        if other is not None and not other._closed:
            other._closed = True
            self._conn_lost_later(other)

    def _conn_arrived(self, src: str, dst: str, data: tuple[int, bool, bytes | None]) -> bool:
        """Deliver one chunk (or close); False when a fault dropped it (and broke the
        connection)."""
        cid, to_dialer, payload = data
        if not self.faults.clear() and not self.faults.allowed(src, dst):
            self.stats[dst]["dropped_by_fault"] += 1
            end = self._conns.get((cid, not to_dialer))
            if end is not None:
                self._break(end)
            end = self._conns.get((cid, to_dialer))
            if end is not None:
                self._break(end)
            return False
        end = self._conns.get((cid, to_dialer))
        if end is None:
            if to_dialer or payload is None:
                return True  # a late chunk or close for an end already gone
            end = self._accept_conn(cid, src, dst, payload)
            if end is None:
                return True
            payload = payload[1:]
            if not payload:
                return True
        if payload is None:
            end.lost()
            return True
        if end._closed:
            return True
        handler = end.handler
        assert handler is not None
        try:
            handler.data_received(payload)
        except Exception as exc:
            self.contain(dst, "connection handler", exc, "connection_errors")
            end.close()
        return True

    def _accept_conn(self, cid: int, src: str, dst: str, payload: bytes) -> _SimConn | None:
        """A new connection's first bytes reached ``dst``: its first byte picks the handler."""
        dialer = self._conns.get((cid, True))
        if dialer is not None:
            if dialer.arrived:
                # A later chunk of a connection whose listening end is gone (closed, or a
                # restarted server's old connection): TCP would reset it, never open a new one.
                return None
            dialer.arrived = True
        listener = self._ports.get(dst)
        stats = self.stats[dst]
        entry = self.port_mux(dst).lookup(payload[0]) if listener is not None else None
        if listener is not None and entry is None:
            stats["port_unknown_first_byte"] += 1
        if entry is None:
            # Refused (nothing serves dst) or an unknown first byte: the dialer sees it close.
            if dialer is not None:
                self._send(dst, src, (cid, True, None), _TO_CONN)  # type: ignore[arg-type]
            return None
        stats[f"port_accepted_{payload[0]}"] += 1
        end = _SimConn(self, cid, dst, src, False)
        end.peer_end = dialer
        if dialer is not None:
            dialer.peer_end = end
        self._conns[(cid, False)] = end
        if entry.accept is not None:
            end.handler = entry.accept(end)
        else:
            assert entry.serve is not None
            stream = StreamOverConn()
            stream.conn = end
            end.handler = stream
            listener.nursery.start_soon(entry.serve, stream, src, dst)
        return end

    def _close_conns_of(self, address: str) -> None:
        """A server went away: every connection end it held dies (its peers see the close)."""
        for end in [e for e in self._conns.values() if e.local == address]:
            if not end._closed and self.running:
                end._closed = True
                if not self.running:
                    end.lost()  # teardown: the network is gone, nobody is left to tell
                    continue
                self._send(end.local, end.peer, (end.cid, not end.dialer, None), _TO_CONN)  # type: ignore[arg-type]
            end.lost()

    # -- datagrams -------------------------------------------------------------------------------

    async def _serve_datagrams(
        self, address: str, handler: seam.DatagramHandler, task_status: seam.TaskStatus
    ) -> None:
        with trio.CancelScope() as scope:
            self._claim(address, scope)
            send, recv = trio.open_memory_channel[Any](math.inf)
            is_async = inspect.iscoroutinefunction(handler)
            listener = _DatagramListener(address, send, handler, is_async)
            self._dgram[address] = listener
            try:
                task_status.started(address)
                stats = self.stats[address]
                report = self.reporter(address, "datagram handler")
                async for item in recv:
                    if isinstance(item, tuple):
                        src, payload = item
                        await deliver_datagram(handler, src, payload, stats, report)
                    else:  # an awaitable a synchronous handler handed back
                        try:
                            await item
                        except Exception as exc:
                            stats["datagram_handler_errors"] += 1
                            report(exc)
            finally:
                self._release(address, scope)
                if self._dgram.get(address) is listener:
                    del self._dgram[address]
                _discard_queued(recv)

    def send_datagram(self, src: str, dst: str, payload: bytes) -> None:
        if len(payload) > MAX_DATAGRAM:
            raise ValueError(f"datagram of {len(payload)} bytes exceeds {MAX_DATAGRAM}")
        if not valid_address(dst):  # as SocketNetwork does
            self.stats[src]["invalid_address"] += 1
            return
        data = pack([src, bytes(payload)])
        self.stats[src]["datagrams_out"] += 1
        self._send(src, dst, data, _TO_DATAGRAMS)

    def _datagram_arrived(self, dst: str, data: bytes) -> None:
        listener = self._dgram.get(dst)
        if listener is None:
            return
        src, payload = unpack(data)
        if listener.is_async or listener.handler is None:
            listener.inbox.send_nowait((src, payload))
            return
        # A synchronous handler runs right here, in the delivery loop.
        stats = self.stats[dst]
        stats["datagrams_in"] += 1
        try:
            result = listener.handler(src, payload)
        except Exception as exc:
            stats["datagram_handler_errors"] += 1
            self.contain(dst, "datagram handler", exc, "")
            return
        if result is not None:
            listener.inbox.send_nowait(result)  # awaited in order by the listener task

    # -- streams ---------------------------------------------------------------------------------
    # One request and one answer on a virtual link carry exactly the bytes TCP would (no loss
    # beyond faults: TCP retransmits), so virtual and live runs exchange the same messages.

    async def _serve_streams(
        self,
        address: str,
        handler: seam.StreamHandler,
        frame_length: seam.FrameLength,
        status: seam.TaskStatus,
    ) -> None:
        key = stream_key(address)
        with trio.CancelScope() as scope:
            self._claim(key, scope)
            self._streams[address] = handler
            try:
                status.started(address)
                await trio.sleep_forever()
            finally:
                self._release(key, scope)
                if self._streams.get(address) is handler:
                    del self._streams[address]

    def send_stream(
        self,
        src: str,
        dst: str,
        data: bytes,
        frame_length: seam.FrameLength,
        on_reply: seam.StreamReply,
        on_error: seam.StreamError | None = None,
    ) -> None:
        if not valid_address(dst) or len(data) > MAX_STREAM:
            self.stats[src]["invalid_address"] += 1
            return
        now = trio.current_time()
        for token in [t for t, w in self._stream_waiters.items() if w[2] <= now]:
            del self._stream_waiters[token]  # never answered: cut or lost
        token = next(self._stream_tokens)
        self._stream_waiters[token] = (on_reply, on_error, now + STREAM_TIMEOUT)
        self.stats[src]["streams_out"] += 1
        self._send(src, dst, pack([src, token, bytes(data)]), _TO_STREAM)

    def _stream_arrived(self, src: str, dst: str, data: bytes) -> None:
        handler = self._streams.get(dst)
        origin, token, payload = unpack(data)
        if handler is None:
            # Connection refused: the RST travels back on the link the SYN took (its latency
            # is known; drawing a new one would move every later random draw of the run).
            at = trio.current_time() + self._link_base.get((src, dst), 0.0)
            self._schedule(at, _STREAM_BACK, dst, origin, pack([token, None]))
            return
        self.stats[dst]["streams_in"] += 1
        try:
            reply = handler(origin, payload)
        except Exception as exc:
            self.stats[dst]["stream_handler_errors"] += 1
            self.contain(dst, "stream handler", exc, "")
            return
        if reply is not None:
            self._send(dst, origin, pack([token, bytes(reply)]), _STREAM_BACK)

    def _stream_answered(self, src: str, dst: str, data: bytes) -> None:
        token, reply = unpack(data)
        waiter = self._stream_waiters.pop(token, None)
        if waiter is None:
            return
        try:
            if reply is None:
                if waiter[1] is not None:
                    waiter[1](f"dial tcp {src}: connect: connection refused")
                return
            waiter[0](reply)
        except Exception as exc:
            self.contain(dst, "stream reply handler", exc, "")


__all__ = [
    "MessageTap",
    "SimNetwork",
    "TAP_CHANNELS",
    "VirtualClock",
    "Unreachable",
]
