"""The one network seam every server talks through; :class:`SimNetwork` and :class:`SocketNetwork`
implement it.

Ownership: a network owns a background nursery (connection readers and writers and the timer
task live; in the simulator, the task that surfaces a failed delivery: deliveries and timers run
from ``VirtualClock``). Run it for as long as servers use it, either ``await nursery.start(net.run)``
(it runs until cancelled) or ``async with net: ...``. ``dial``/``send_datagram``/``send_stream``
raise ``RuntimeError`` when the network is not running.

Listeners: ``serve_port`` (Consul's server port, its connections told apart by their first byte:
``consim.net.portmux``) / ``serve_datagrams`` / ``serve_streams`` run until cancelled (or
``close_address``). They call ``task_status.started(address)`` with the address actually bound
(different from the argument only for a live ":0" port). Stream-style connection handlers run
inside the serve task, so cancelling it (a killed server) also cancels them, and closes every
connection the address held. The network serves no protocol of its own on the server port:
what travels there is whatever the first-byte handlers speak (Consul's RPC, hashicorp/raft).

The errors of a call over the port (``consim.net.consul_pool``): a dead address (nothing serving
it) is :class:`Unreachable` quickly, like a refused TCP connection; a server that died with the
call in flight is :class:`ConnectionLost` (an ``Unreachable`` that may have been handled: not safe
to retry a write); a request or reply black-holed by a fault is :class:`RpcTimeout` at its timeout.

A datagram handler that is a plain function is called directly (:class:`SimNetwork` from
:class:`~consim.net.sim.VirtualClock`'s jumps, with no task per message; :class:`SocketNetwork`
from the socket's reader); if it returns an awaitable, the listener awaits it in order.

Containment: nothing one server's code raises may end the network (and with it every server).
A timer callback, datagram or stream handler, or per-connection handler that raises an unexpected
exception is counted (``timer_errors``, ``datagram_handler_errors``, ``stream_handler_errors``,
``connection_errors`` under the owner's address) and reported to ``net.on_error(address, where,
exc)`` if set (the cluster turns that into an ERROR event of the server owning the address); the
listener, timer heap or link goes on. A destination that is not a valid ``IP:port``
(``consim.address``) is refused before it reaches a socket (``invalid_address``).

``stats[address]`` is a ``Counter``; receive-side counters are kept under the listener's address,
send-side ones under the dialer's ``src``. The network's own: ``dropped_by_fault``,
``retransmitted``, ``connections_dialed``, ``unreachable``, ``port_accepted_<byte>``,
``port_unknown_first_byte``, ``port_first_byte_timeouts``, ``port_send_overflow``,
``datagrams_out``, ``datagrams_in``, ``datagrams_dropped_malformed``, ``datagram_handler_errors``,
``streams_out``, ``streams_in``, ``timer_errors``, ``connection_errors``, ``invalid_address``.
"""

from __future__ import annotations

import abc
import heapq
import inspect
import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Self

import trio

from consim.net.faults import FaultModel
from consim.net.portmux import Accept, ConnHandler, MuxConn, PortMux

INTERNAL_ERROR = "rpc error: internal error"
MAX_DATAGRAM = 65_000

DatagramHandler = Callable[[str, bytes], Awaitable[None] | None]
"""(src_address, payload) -> None; may also be async."""
# A stream exchange (memberlist's TCP push-pull): the handler gets one whole message from the
# dialer and returns what to write back (or None); ``FrameLength(buf)`` says how many bytes the
# message starting ``buf`` has (None: read more), raising ValueError on garbage.
StreamHandler = Callable[[str, bytes], bytes | None]
FrameLength = Callable[[bytes], int | None]
StreamReply = Callable[[bytes], None]
# Told why a stream exchange failed before any answer, in Go's words (memberlist returns the
# dial's error: ``dial tcp <addr>: connect: connection refused``). A timeout calls nothing.
StreamError = Callable[[str], None]
# memberlist's TCPTimeout: one stream exchange must be done within this.
STREAM_TIMEOUT = 10.0
MAX_STREAM = 20 * 1024 * 1024
TaskStatus = trio.TaskStatus[str]
"""What a listener reports the address it bound to."""
ErrorReporter = Callable[[str, str, BaseException], None]
"""(owner address, where, exception): told about every contained failure (see above)."""


class RpcError(Exception):
    """The remote handler refused the call; ``message`` is its exact text (Consul's errors)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RpcTimeout(Exception):
    """No reply within the timeout (request or reply lost, or the handler is slow)."""


class Unreachable(Exception):
    """Nothing serves the destination address (connection refused or reset)."""


class ConnectionLost(Unreachable):
    """The request was sent and the connection went away before the reply: the server may have
    handled it (Consul's ``rpc error making call: EOF``). Not safe to retry a write; a read may be
    retried. Plain ``Unreachable`` means the request never reached the peer (nothing listening,
    connection refused, or the connection failed before the request was fully written): safe to
    retry. Live, a request written just as the peer died is ConnectionLost even if the peer never
    read it: a socket cannot tell, and Consul's client answers EOF there too."""


class Timer:
    """A re-armable one-shot callback, kept by a network (see :meth:`Network.timer`).

    ``arm(when)`` only ever moves the firing time earlier: owners whose deadline keeps moving later
    (a follower's election timeout, re-armed by every heartbeat) let the timer fire at the old time
    and re-arm from there, which is cheaper than rescheduling on every message. ``disarm()``
    cancels it. The callback runs synchronously and must not block: in the simulator it runs at a
    quiescent point of the run (from :class:`~consim.net.sim.VirtualClock`, no task at all), live
    from the network's timer task.
    """

    __slots__ = ("callback", "when", "owner", "_network", "_token")

    def __init__(self, network: Network, callback: Callable[[], None], owner: str = "") -> None:
        self.callback = callback
        self.when = math.inf
        self.owner = owner
        self._network = network
        self._token = 0

    def arm(self, when: float) -> None:
        if when < self.when:
            self.when = when
            self._token += 1
            self._network._schedule_timer(self, when, self._token)

    def disarm(self) -> None:
        self.when = math.inf
        self._token += 1  # entries already scheduled go stale

    def _fire(self, token: int) -> None:
        if token == self._token:
            self.when = math.inf
            try:
                self.callback()
            except Exception as exc:
                # One server's timer must not stop the heap that every server's timers share.
                self._network.contain(self.owner, "timer", exc, "timer_errors")


class Network(abc.ABC):
    # False where the implementation keeps timers itself (the simulator's event heap).
    _timer_task = True

    def __init__(self, faults: FaultModel | None = None, rng: random.Random | None = None) -> None:
        self.faults = faults if faults is not None else FaultModel(rng)
        # defaultdict keeps insertion order, so iterating stats is deterministic too.
        self.stats: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._nursery: trio.Nursery | None = None
        self._listener_scopes: dict[str, trio.CancelScope] = {}
        self._timers: list[tuple[float, int, Timer, int]] = []
        self._timer_seq = itertools.count()
        self._timer_wake = trio.Event()
        self.on_error: ErrorReporter | None = None
        self._muxes: dict[str, PortMux] = {}
        # Dialing address -> TLS wrapper (consim.net.tls.client_wrapper): its dials go over TLS.
        self.outgoing_tls: dict[str, Any] = {}

    def port_mux(self, address: str) -> PortMux:
        """The first-byte registry of the server port ``address`` (``consim.net.portmux``)."""
        mux = self._muxes.get(address)
        if mux is None:
            mux = self._muxes[address] = PortMux()
        return mux

    def contain(self, address: str, where: str, exc: BaseException, counter: str) -> None:
        """Count a failure contained at ``address`` (unless ``counter`` is empty: the caller
        counted it already) and tell ``on_error``; never raises."""
        if counter:
            self.stats[address][counter] += 1
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]  # a nursery's wrapper: report what actually failed
        reporter = self.on_error
        if reporter is not None:
            try:
                reporter(address, where, exc)
            except Exception:
                self.stats[address]["error_reporter_errors"] += 1

    def tell_lost(self, local: str, handler: ConnHandler | None) -> None:
        """Tell a port connection's handler that the connection is gone (once: its caller
        checks); one that raises is counted under ``local``, never raised."""
        if handler is not None:
            try:
                handler.connection_lost()
            except Exception as exc:
                self.contain(local, "connection handler", exc, "connection_errors")

    def reporter(self, address: str, where: str) -> Callable[[BaseException], None]:
        """``contain`` bound to an address and a place, for callers that count themselves."""
        return lambda exc: self.contain(address, where, exc, "")

    # -- lifetime --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Self] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the background nursery until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self._timer_task:
                    nursery.start_soon(self._run_timers)
                await self._start_background(nursery)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._nursery = None
            await self._shutdown()

    async def __aenter__(self) -> Self:
        self._outer_cm = trio.open_nursery()
        self._outer = await self._outer_cm.__aenter__()
        await self._outer.start(self.run)
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        self._outer.cancel_scope.cancel()
        return await self._outer_cm.__aexit__(*exc)

    # -- timers ----------------------------------------------------------------------------------

    def timer(self, callback: Callable[[], None], owner: str = "") -> Timer:
        """A timer whose ``callback`` runs at the time given to :meth:`Timer.arm` (``trio``'s
        clock). Servers keep their Raft and gossip timers here, so that in virtual time a timer
        costs a heap entry instead of a task wake-up and a cancel scope. A callback that raises
        is counted as ``timer_errors`` under ``owner`` (an address) and reported; the timer
        stays disarmed (its owner decides whether to go on)."""
        return Timer(self, callback, owner)

    def _schedule_timer(self, timer: Timer, when: float, token: int) -> None:
        heap = self._timers
        heapq.heappush(heap, (when, next(self._timer_seq), timer, token))
        if heap[0][2] is timer:
            self._timer_wake.set()

    async def _run_timers(self) -> None:
        heap = self._timers
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, timer, token = heapq.heappop(heap)
                timer._fire(token)
            self._timer_wake = trio.Event()
            with trio.move_on_at(heap[0][0] if heap else math.inf):
                await self._timer_wake.wait()

    async def _start_background(self, nursery: trio.Nursery) -> None:  # noqa: B027 - optional hook
        """Hook: start the implementation's background tasks."""

    async def _shutdown(self) -> None:  # noqa: B027 - optional hook
        """Hook: release resources when run() ends."""

    @property
    def running(self) -> bool:
        return self._nursery is not None

    def _require_nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError(
                "network is not running: use `async with net:` or nursery.start(net.run)"
            )
        return self._nursery

    # -- listeners -------------------------------------------------------------------------------

    def close_address(self, address: str) -> None:
        """Stop serving ``address`` (its serve_* task returns); calls to it then fail Unreachable."""
        for key in (address, stream_key(address)):
            scope = self._listener_scopes.get(key)
            if scope is not None:
                scope.cancel()

    def serving(self, address: str) -> bool:
        return address in self._listener_scopes

    def _claim(self, address: str, scope: trio.CancelScope) -> None:
        if address in self._listener_scopes:
            raise OSError(98, f"address already in use: {address}")
        self._listener_scopes[address] = scope

    def _release(self, address: str, scope: trio.CancelScope) -> None:
        if self._listener_scopes.get(address) is scope:
            del self._listener_scopes[address]

    # -- the seam --------------------------------------------------------------------------------

    @abc.abstractmethod
    async def serve_port(
        self, address: str, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve the server port ``address``: every accepted connection goes to the handler its
        first byte names in ``port_mux(address)``; an unknown first byte is closed and counted."""

    @abc.abstractmethod
    def dial(self, src: str, dst: str, first_byte: int, factory: Accept) -> MuxConn:
        """Open a connection to the server port ``dst`` and write ``first_byte``; never blocks
        (see ``consim.net.portmux``)."""

    @abc.abstractmethod
    async def open_stream(self, src: str, dst: str, first_byte: int) -> trio.abc.Stream:
        """Task-style dial: a stream to ``dst`` whose first byte ``first_byte`` is written."""

    async def serve_datagrams(
        self,
        address: str,
        handler: DatagramHandler,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Receive datagrams on ``address`` (live: UDP) until cancelled."""
        await self._serve_datagrams(address, handler, task_status)

    @abc.abstractmethod
    async def _serve_datagrams(
        self, address: str, handler: DatagramHandler, task_status: TaskStatus
    ) -> None: ...

    @abc.abstractmethod
    def send_datagram(self, src: str, dst: str, payload: bytes) -> None: ...

    async def serve_streams(
        self,
        address: str,
        handler: StreamHandler,
        frame_length: FrameLength,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept stream exchanges on ``address`` (live: TCP on the same port as its datagrams)."""
        await self._serve_streams(address, handler, frame_length, task_status)

    @abc.abstractmethod
    async def _serve_streams(
        self, address: str, handler: StreamHandler, frame_length: FrameLength, status: TaskStatus
    ) -> None: ...

    @abc.abstractmethod
    def send_stream(
        self,
        src: str,
        dst: str,
        data: bytes,
        frame_length: FrameLength,
        on_reply: StreamReply,
        on_error: StreamError | None = None,
    ) -> None:
        """Write ``data`` to ``dst`` on a new stream, read one message back, ``on_reply(it)``;
        a refused connection calls ``on_error(reason)``; a cut or timed-out exchange calls
        nothing (the caller keeps its own deadline, as memberlist's TCPTimeout)."""


def stream_key(address: str) -> str:
    """The listener key of an address's stream listener (next to its datagram listener)."""
    return f"{address}/stream"


async def deliver_datagram(
    handler: DatagramHandler,
    src: str,
    payload: bytes,
    stats: Counter[str],
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Run a datagram handler; a failing handler is counted (and reported) and never stops the
    listener."""
    stats["datagrams_in"] += 1
    try:
        result = handler(src, payload)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        stats["datagram_handler_errors"] += 1
        if on_error is not None:
            on_error(exc)
