"""The RPC wire protocol, shared by both networks.

Dialer's first frame: ``{"consim": 1, "src": "<dialer address>"}`` (the receiver applies one-way
faults by that source and hands it to handlers). Then every frame is ``[kind, request_id, method,
body]`` with kind 0=request, 1=reply, 2=error (body is the message text), 3=notify (request_id 0).
Request ids are per connection. Replies carry method "".

Like Consul's net-rpc pool, a :class:`ConnectionPool` keeps one multiplexed connection per
(src, dst) and dials again after it fails.

Robustness at the edge: a frame of the wrong shape is dropped and counted
(``frames_dropped_malformed``) and the connection stays up; bytes that are not frames (garbage,
oversized prefix, a frame stalled past the read timeout) close that one connection and are counted
(``connections_dropped_garbage`` / ``connections_timed_out``). Other connections are unaffected.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from consim.address import valid_address
from consim.net.faults import FaultModel
from consim.net.framing import (
    DEFAULT_READ_TIMEOUT,
    MAX_FRAME,
    FrameError,
    FrameReader,
    FrameTimeout,
    FrameWriter,
    encode_frame,
    pack,
)
from consim.net.network import (
    INTERNAL_ERROR,
    ConnectionLost,
    NotifyHandler,
    RpcError,
    RpcHandler,
    Unreachable,
)

PROTOCOL_VERSION = 1
KIND_REQUEST = 0
KIND_REPLY = 1
KIND_ERROR = 2
KIND_NOTIFY = 3
_KINDS = (KIND_REQUEST, KIND_REPLY, KIND_ERROR, KIND_NOTIFY)


@dataclass(frozen=True)
class Frame:
    kind: int
    request_id: int
    method: str
    body: Any

    def to_wire(self) -> list[Any]:
        return [self.kind, self.request_id, self.method, self.body]


def hello(src: str) -> dict[str, Any]:
    return {"consim": PROTOCOL_VERSION, "src": src}


def parse_hello(obj: Any) -> str | None:
    """The dialer's declared source address, or None (not a hello, or not a valid IP:port: it
    reaches handlers and fault rules, so it is checked here, at the edge)."""
    if isinstance(obj, dict) and obj.get("consim") == PROTOCOL_VERSION:
        src = obj.get("src")
        if valid_address(src):
            return src
    return None


Contain = Callable[[str, str, BaseException, str], None]
"""``Network.contain``: (address, where, exception, counter)."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_frame(obj: Any) -> Frame | None:
    """A validated frame, or None for anything not of the protocol's shape."""
    if not isinstance(obj, list) or len(obj) != 4:
        return None
    kind, rid, method, body = obj
    if not _is_int(kind) or kind not in _KINDS:
        return None
    if not _is_int(rid) or rid < 0 or not isinstance(method, str):
        return None
    if kind in (KIND_REQUEST, KIND_NOTIFY) and not method:
        return None
    if kind == KIND_ERROR and not isinstance(body, str):
        return None
    return Frame(kind, rid, method, body)


async def run_handler(
    handler: RpcHandler,
    method: str,
    args: Any,
    src: str,
    stats: Counter[str],
    *,
    check: bool = True,
    on_error: Callable[[BaseException], None] | None = None,
) -> tuple[int, Any]:
    """Run one request; returns (KIND_REPLY, reply) or (KIND_ERROR, message).

    The reply is test-encoded here (unless ``check`` is False: the caller encodes it and handles
    the failure itself) so an unserialisable value becomes an internal error at the server (as
    Go's codec would fail there), not a crash in the transport.
    """
    try:
        reply = await handler(method, args, src)
        if check:
            pack(reply)
    except RpcError as exc:
        return KIND_ERROR, exc.message
    except Exception as exc:
        stats["handler_errors"] += 1
        if on_error is not None:
            on_error(exc)
        return KIND_ERROR, INTERNAL_ERROR
    return KIND_REPLY, reply


_MAX_IDLE_WORKERS = 16  # parked request workers kept per accepted connection


class _Worker:
    __slots__ = ("task", "job")

    def __init__(self) -> None:
        self.task: Any = None
        self.job: Any = None


class CallTimedOut(Exception):
    """The call's deadline passed before its reply came (SocketNetwork makes it RpcTimeout)."""


_TIMED_OUT = -1  # _Pending.kind set by the connection's timer


class SendFailed(Unreachable):
    """The request never fully left (the connection was already dead, or the write failed): the
    peer cannot have decoded it, so it is safe to retry, even a write. Once every byte is written
    a lost connection is :class:`~consim.net.network.ConnectionLost` instead."""


class _Pending:
    """One call awaiting its reply: the reader fills kind/body and reschedules the waiting task
    (no Event, no parking lot: exactly one waiter, known up front)."""

    __slots__ = ("task", "kind", "body")

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.kind: int | None = None
        self.body: Any = None

    def wake(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        self.task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


def _request_fields(obj: Any) -> tuple[int, int, str, Any] | None:
    """(kind, request id, method, body) of a well-formed request or notify frame, else None (what
    ``parse_frame`` accepts with a request/notify kind, without building a Frame)."""
    if type(obj) is not list or len(obj) != 4:
        return None
    kind, rid, method, body = obj
    if type(kind) is not int or type(rid) is not int or rid < 0 or type(method) is not str:
        return None
    if kind in (KIND_REQUEST, KIND_NOTIFY) and method:
        return kind, rid, method, body
    return None


def _reply_fields(obj: Any) -> tuple[int, int, Any] | None:
    """(kind, request id, body) of a well-formed reply or error frame, else None (what
    ``parse_frame`` accepts with a reply/error kind, without building a Frame)."""
    if type(obj) is not list or len(obj) != 4:
        return None
    kind, rid, method, body = obj
    if type(kind) is not int or type(rid) is not int or rid < 0 or type(method) is not str:
        return None
    if kind == KIND_REPLY or (kind == KIND_ERROR and type(body) is str):
        return kind, rid, body
    return None


class RpcConnection:
    """Client end of one multiplexed connection (src -> dst)."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        src: str,
        dst: str,
        stats: Counter[str],
        *,
        max_frame: int = MAX_FRAME,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        contain: Contain | None = None,
    ) -> None:
        self.src, self.dst = src, dst
        self._contain = contain
        self._stream = stream
        self._stats = stats
        self._max_frame = max_frame
        self._reader = FrameReader(stream, max_frame=max_frame, read_timeout=read_timeout)
        self._writer = FrameWriter(stream)
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        # Deadlines of calls made with one: a heap of (deadline, request id), entries of finished
        # calls left in place until they reach the top. The timer task sleeps in _timer (its
        # deadline = the earliest armed one) instead of every call opening a cancel scope.
        self._deadlines: list[tuple[float, int]] = []
        self._timer: trio.CancelScope | None = None
        self.closed = False
        self.calls = 0

    async def start(self, nursery: trio.Nursery) -> None:
        await self._send(hello(self.src))
        nursery.start_soon(self._read_loop)
        nursery.start_soon(self._timer_loop)

    async def call(self, method: str, args: Any, deadline: float = math.inf) -> Any:
        """Send a request and wait for its reply. With a ``deadline`` (trio time) the connection
        enforces it (``CallTimedOut``); without one the caller applies its own timeout."""
        rid = next(self._ids)
        data = encode_frame([KIND_REQUEST, rid, method, args], self._max_frame)
        slot = _Pending()
        pending = self._pending
        pending[rid] = slot
        self.calls += 1
        if deadline < math.inf:
            heapq.heappush(self._deadlines, (deadline, rid))
            timer = self._timer
            if timer is not None and deadline < timer.deadline:
                timer.deadline = deadline
        try:
            await self._send_bytes(data, deadline)
            if slot.kind is None and not self.closed:
                await slot.wait()
        finally:
            pending.pop(rid, None)
        if slot.kind == KIND_REPLY:
            return slot.body
        if slot.kind == KIND_ERROR:
            raise RpcError(slot.body)
        if slot.kind == _TIMED_OUT:
            raise CallTimedOut(f"rpc {method} to {self.dst} timed out")
        # The whole request was written (a connection found dead before or during the write
        # raised SendFailed above), so the peer may have handled it: Consul's client sees EOF.
        raise ConnectionLost(f"connection to {self.dst} lost")

    async def _timer_loop(self) -> None:
        """Time out calls whose deadline passed; sleeps until the earliest live deadline."""
        heap, pending = self._deadlines, self._pending
        while not self.closed:
            now = trio.current_time()
            while heap:
                deadline, rid = heap[0]
                slot = pending.get(rid)
                if slot is not None and slot.kind is None:
                    if deadline > now:
                        break
                    slot.kind = _TIMED_OUT
                    slot.wake()
                heapq.heappop(heap)
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as self._timer:
                await trio.sleep_forever()
            self._timer = None

    async def notify(self, method: str, args: Any) -> None:
        await self._send([KIND_NOTIFY, 0, method, args])

    async def send_encoded(self, data: bytes) -> None:
        """Send an already framed message (a notify encoded by the caller)."""
        await self._send_bytes(data)

    async def _send(self, obj: Any) -> None:
        await self._send_bytes(encode_frame(obj, self._max_frame))

    async def _send_bytes(self, data: bytes, deadline: float = math.inf) -> None:
        if self.closed:
            raise SendFailed(f"connection to {self.dst} closed")
        try:
            await self._writer.send(data, deadline)
        except BaseException as exc:
            # A partial write (cancelled, timed out or failed) leaves the stream unusable; a call
            # that gave up while queued behind another frame wrote nothing and leaves it alone.
            if self._writer.torn or not isinstance(exc, trio.Cancelled | trio.TooSlowError):
                self._fail()
            if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError):
                raise SendFailed(f"connection to {self.dst} failed: {exc}") from None
            if isinstance(exc, trio.TooSlowError):
                raise CallTimedOut(f"rpc to {self.dst}: send timed out") from None
            raise

    async def _read_loop(self) -> None:
        receive, pending, stats = self._reader.receive, self._pending, self._stats
        try:
            while True:
                fields = _reply_fields(await receive())
                if fields is None:
                    stats["frames_dropped_malformed"] += 1
                    continue
                kind, rid, body = fields
                slot = pending.get(rid)
                if slot is None or slot.kind is not None:
                    stats["late_replies"] += 1  # the caller already timed out
                    continue
                slot.kind, slot.body = kind, body
                slot.wake()
        except (trio.EndOfChannel, FrameError, trio.BrokenResourceError, OSError):
            pass
        except trio.ClosedResourceError:
            pass
        except Exception as exc:
            # This task lives in the network's nursery: whatever it hits ends this connection
            # only (its callers see "connection lost" and may redial).
            if self._contain is not None:
                self._contain(self.src, "rpc connection reader", exc, "connection_errors")
        finally:
            self._fail()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self._stream)

    def _fail(self) -> None:
        """Mark closed and wake every waiter with 'connection lost'."""
        if self.closed:
            return
        self.closed = True
        for slot in self._pending.values():
            slot.wake()  # kind None -> ConnectionLost
        if self._timer is not None:
            self._timer.cancel()

    async def aclose(self) -> None:
        self._fail()
        await trio.aclose_forcefully(self._stream)


Dialer = Callable[[str, str], Awaitable[trio.abc.Stream]]


class ConnectionPool:
    """One live connection per (src, dst), dialed on first use and again after a failure."""

    def __init__(
        self,
        dial: Dialer,
        stats: Callable[[str], Counter[str]],
        *,
        max_frame: int = MAX_FRAME,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        contain: Contain | None = None,
    ) -> None:
        self._dial = dial
        self._contain = contain
        self._stats = stats
        self._max_frame = max_frame
        self._read_timeout = read_timeout
        self._conns: dict[tuple[str, str], RpcConnection] = {}
        self._locks: dict[tuple[str, str], trio.Lock] = {}

    def connections(self) -> list[RpcConnection]:
        return [c for c in self._conns.values() if not c.closed]

    def live(self, src: str, dst: str) -> RpcConnection | None:
        """The open pooled connection for (src, dst), if there is one (no dialing)."""
        conn = self._conns.get((src, dst))
        return conn if conn is not None and not conn.closed else None

    async def get(self, src: str, dst: str, nursery: trio.Nursery) -> RpcConnection:
        key = (src, dst)
        conn = self._conns.get(key)
        if conn is not None and not conn.closed:
            return conn
        lock = self._locks.setdefault(key, trio.Lock())
        async with lock:
            conn = self._conns.get(key)
            if conn is not None and not conn.closed:
                return conn
            try:
                stream = await self._dial(src, dst)
            except OSError as exc:
                raise Unreachable(f"cannot connect to {dst}: {exc}") from None
            conn = RpcConnection(
                stream,
                src,
                dst,
                self._stats(src),
                max_frame=self._max_frame,
                read_timeout=self._read_timeout,
                contain=self._contain,
            )
            await conn.start(nursery)
            self._stats(src)["connections_dialed"] += 1
            self._conns[key] = conn
            return conn

    async def aclose(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        for c in conns:
            await c.aclose()


async def serve_connection(
    stream: trio.abc.Stream,
    local: str,
    handler: RpcHandler,
    faults: FaultModel,
    stats: Counter[str],
    *,
    max_frame: int = MAX_FRAME,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    notify_handler: NotifyHandler | None = None,
    contain: Contain | None = None,
) -> None:
    """Serve one accepted connection until EOF, garbage or cancellation (the stream is closed).

    Requests run concurrently (each in its own task, like Consul's per-request goroutines);
    notifies run in arrival order on the reader, so keep notify handlers short. With a
    ``notify_handler`` notifies are handed to it directly (and any awaitable it returns awaited).
    A handler's exception is the caller's internal error; anything else this connection's tasks
    raise closes this connection only (``contain`` is told, as ``connection_errors``).
    """

    def on_error(exc: BaseException) -> None:
        if contain is not None:
            contain(local, "rpc handler", exc, "")  # run_handler counted it

    reader = FrameReader(stream, max_frame=max_frame, read_timeout=read_timeout)
    writer = FrameWriter(stream)
    stats["connections_accepted"] += 1
    stats["connections_open"] += 1
    idle: list[_Worker] = []  # request workers parked between requests

    async def reply(src: str, rid: int, method: str, args: Any) -> None:
        kind, body = await run_handler(
            handler, method, args, src, stats, check=False, on_error=on_error
        )
        if not (faults.clear() or faults.allowed(local, src)):
            stats["dropped_by_fault"] += 1
            return
        try:
            data = encode_frame([kind, rid, "", body], max_frame)
        except Exception:
            # Unserialisable (or oversized) reply: an internal error at the server, as Go's
            # codec would fail there.
            stats["handler_errors"] += 1
            data = encode_frame([KIND_ERROR, rid, "", INTERNAL_ERROR], max_frame)
        try:
            await writer.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        stats["replies_out"] += 1

    async def work(job: tuple[str, int, str, Any]) -> None:
        """Serve requests one after another: the first one given, then each handed over while
        parked (a reschedule instead of a new task per request). Up to _MAX_IDLE_WORKERS park;
        concurrent requests beyond the parked workers get a worker of their own."""
        me = _Worker()

        def abort(_: Any) -> trio.lowlevel.Abort:
            idle.remove(me)
            return trio.lowlevel.Abort.SUCCEEDED

        while True:
            await reply(*job)
            if len(idle) >= _MAX_IDLE_WORKERS:
                return
            me.task = trio.lowlevel.current_task()
            idle.append(me)
            await trio.lowlevel.wait_task_rescheduled(abort)
            job, me.job = me.job, None

    try:
        async with trio.open_nursery() as nursery:
            try:
                src = parse_hello(await reader.receive())
                if src is None:
                    stats["frames_dropped_malformed"] += 1
                    stats["connections_dropped_garbage"] += 1
                    return
                receive = reader.receive
                while True:
                    obj = await receive()
                    stats["frames_in"] += 1
                    fields = _request_fields(obj)
                    if fields is None:
                        stats["frames_dropped_malformed"] += 1
                        continue
                    if not (faults.clear() or faults.allowed(src, local)):
                        # One-way blocks are enforced here, by the dialer's declared source.
                        stats["dropped_by_fault"] += 1
                        continue
                    kind, rid, method, body = fields
                    if kind == KIND_REQUEST:
                        stats["requests_in"] += 1
                        if idle:
                            worker = idle.pop()
                            worker.job = (src, rid, method, body)
                            trio.lowlevel.reschedule(worker.task)
                        else:
                            nursery.start_soon(work, (src, rid, method, body))
                    elif notify_handler is not None:
                        stats["notifies_in"] += 1
                        try:
                            result = notify_handler(method, body, src)
                            if result is not None:
                                await result
                        except Exception as exc:
                            stats["handler_errors"] += 1
                            on_error(exc)
                    else:
                        stats["notifies_in"] += 1
                        await run_handler(handler, method, body, src, stats, on_error=on_error)
            except trio.EndOfChannel:
                pass
            except FrameTimeout:
                stats["connections_timed_out"] += 1
            except FrameError:
                stats["connections_dropped_garbage"] += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            # The peer is gone or misbehaved: abandon its in-flight requests too.
            nursery.cancel_scope.cancel()
    except Exception as exc:
        # Not the handler's doing (run_handler catches that): a bug on this connection's path.
        # It ends this connection, never the listener or the server.
        if contain is not None:
            contain(local, "rpc connection", exc, "connection_errors")
    finally:
        stats["connections_open"] -= 1
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)
