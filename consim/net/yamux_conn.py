"""A yamux session over a trio stream: each yamux stream as a trio ``Stream``.

``serve_yamux(transport, on_stream, stats)`` runs the server side of a session (Consul's
``yamux.Server(conn)`` + ``Accept`` loop): every stream the peer opens is handed to
``on_stream`` in its own task; the session ends at EOF, on a protocol error (counted in
``stats`` by :class:`consim.net.yamux.Session`) or when cancelled, and then every stream's task
is cancelled. ``client_session`` is the dialing side, for consim's own clients and tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from consim.net.yamux import (
    DEFAULT_MAX_STREAMS,
    Session,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowOpened,
    YamuxError,
)

_RECV = 64 * 1024


class YamuxStream(trio.abc.Stream):
    """One yamux stream; reads and writes go through the session's flow control."""

    def __init__(self, conn: _Connection, stream_id: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self._chunks: list[bytes] = []
        self._eof = False
        self._reset = False
        self._closed = False
        self._readable = trio.Event()
        self._writable = trio.Event()

    def _wake(self) -> None:
        self._readable.set()
        self._writable.set()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._chunks:
            if self._closed:
                raise trio.ClosedResourceError("stream closed")
            if self._reset:
                raise trio.BrokenResourceError("connection reset")
            if self._eof:
                return b""
            self._readable = trio.Event()
            await self._readable.wait()
        data = self._chunks.pop(0)
        if max_bytes is not None and len(data) > max_bytes:
            data, rest = data[:max_bytes], data[max_bytes:]
            self._chunks.insert(0, rest)
        self._conn.session.consumed(self.stream_id, len(data))
        await self._conn.flush()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if self._reset or self._conn.dead:
            raise trio.BrokenResourceError("connection reset")
        session = self._conn.session
        try:
            session.send(self.stream_id, bytes(data))
        except YamuxError as exc:
            raise trio.BrokenResourceError(str(exc)) from None
        await self._conn.flush()
        # Wait until the peer's window took all of it (yamux's Write blocks the same way).
        while session.pending(self.stream_id):
            if self._reset or self._conn.dead:
                raise trio.BrokenResourceError("connection reset")
            self._writable = trio.Event()
            await self._writable.wait()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if not self._reset and not self._conn.dead:
                self._conn.session.close_stream(self.stream_id)
                with trio.CancelScope(shield=True):
                    await self._conn.flush()
            self._conn.streams.pop(self.stream_id, None)
        await trio.lowlevel.checkpoint()


class _Connection:
    def __init__(self, transport: trio.abc.Stream, session: Session) -> None:
        self.transport = transport
        self.session = session
        self.streams: dict[int, YamuxStream] = {}
        self.dead = False
        self._send_lock = trio.Lock()

    async def flush(self) -> None:
        async with self._send_lock:
            data = self.session.data_to_send()
            if data and not self.dead:
                try:
                    await self.transport.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    self.kill()

    def kill(self) -> None:
        self.dead = True
        for s in self.streams.values():
            s._reset = True
            s._wake()

    def dispatch(self, events: list, on_open: Callable[[YamuxStream], None] | None) -> None:
        for ev in events:
            if isinstance(ev, StreamOpened):
                s = self.streams[ev.stream_id] = YamuxStream(self, ev.stream_id)
                if on_open is not None:
                    on_open(s)
                continue
            s = self.streams.get(getattr(ev, "stream_id", -1))
            if s is None:
                continue
            if isinstance(ev, StreamData):
                s._chunks.append(ev.data)
            elif isinstance(ev, StreamEnded):
                s._eof = True
            elif isinstance(ev, StreamReset):
                s._reset = True
                self.streams.pop(ev.stream_id, None)
            elif isinstance(ev, WindowOpened):
                pass
            s._wake()

    async def read_loop(
        self, initial: bytes, on_open: Callable[[YamuxStream], None] | None
    ) -> None:
        data = initial
        try:
            while True:
                if data:
                    try:
                        events = self.session.receive_data(data)
                    except YamuxError:
                        await self.flush()  # a go-away, when yamux sends one
                        return
                    self.dispatch(events, on_open)
                    await self.flush()
                data = await self.transport.receive_some(_RECV)
                if not data:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.kill()


async def serve_yamux(
    transport: trio.abc.Stream,
    on_stream: Callable[[YamuxStream], Awaitable[None]],
    stats: Counter[str],
    *,
    initial: bytes = b"",
    max_streams: int = DEFAULT_MAX_STREAMS,
) -> None:
    """Serve the peer's streams until the session ends; closes ``transport``."""
    stats["yamux_sessions"] += 1
    conn = _Connection(transport, Session(client=False, max_streams=max_streams, stats=stats))
    try:
        async with trio.open_nursery() as nursery:

            async def run(s: YamuxStream) -> None:
                try:
                    await on_stream(s)
                finally:
                    await s.aclose()

            await conn.read_loop(initial, lambda s: nursery.start_soon(run, s))
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(transport)


@asynccontextmanager
async def client_session(
    transport: trio.abc.Stream,
) -> AsyncIterator[Callable[[], Awaitable[YamuxStream]]]:
    """The dialing side: yields ``open()`` for new streams; the session ends on exit."""
    conn = _Connection(transport, Session(client=True))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.read_loop, b"", None)

        async def open_stream() -> YamuxStream:
            stream_id = conn.session.open_stream()
            s = conn.streams[stream_id] = YamuxStream(conn, stream_id)
            await conn.flush()
            return s

        try:
            yield open_stream
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(transport)
