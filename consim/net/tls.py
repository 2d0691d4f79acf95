"""TLS on the server port (Consul's ``RPCTLS``, first byte 3), for both ends.

Dialing: :class:`TlsClientConn` wraps one port connection sans-IO (``ssl.MemoryBIO``): the
network writes byte 3, the handshake runs over the raw connection, then the inner first byte
(4 for yamux, 1 for Raft...) and everything after it travel inside TLS. It is both the raw
connection's handler and the inner handler's connection, so whatever dials with
``Network.dial`` gets TLS without knowing it (``Network.outgoing_tls``). ``wrap_stream`` does the
same for a task-style stream.

Accepting: :func:`serve_tls` is the byte-3 handler: the handshake (within the read timeout),
then the inner first byte picks the handler of the same port mux, TLS or not (a sans-IO one is
run over the TLS stream by :class:`_StreamConn`). Counters under the listener's address:
``tls_accepted``, ``tls_handshake_failed``, ``tls_plaintext_refused`` (a connection other than
TLS while ``verify_incoming`` is on); under the dialer's: ``tls_dial_handshake_failed``.
"""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import Callable

import trio

from consim.net.portmux import RPC_TLS, Accept, ConnHandler, MuxConn, PortMux, QueuedConn

HANDSHAKE_TIMEOUT = 10.0


class TlsClientConn:
    """Client-side TLS between a raw port connection and an inner handler (see above)."""

    def __init__(
        self,
        ctx: ssl.SSLContext,
        server_hostname: str | None,
        inner_byte: int,
        factory: Accept,
        stats: Counter[str],
    ) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._ssl = ctx.wrap_bio(
            self._in, self._out, server_side=False, server_hostname=server_hostname
        )
        self._factory = factory
        self._stats = stats
        self._plain = bytearray([inner_byte])  # written once the handshake is done
        self._shaken = False
        self._closed = False
        self.raw: MuxConn | None = None
        self.inner: ConnHandler | None = None
        self.local = ""
        self.peer = ""

    def attach(self, raw: MuxConn) -> TlsClientConn:
        """The raw connection's factory: returns self as its handler."""
        self.raw = raw
        self.local, self.peer = raw.local, raw.peer
        self.inner = self._factory(self)
        self._step()
        return self

    # ---- MuxConn face for the inner handler ----------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed or self.raw is None or self.raw.closed

    @property
    def pending(self) -> int:
        return len(self._plain) + (self.raw.pending if self.raw is not None else 0)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self._plain += data
        self._step()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.raw is not None:
                self.raw.close()

    # ---- ConnHandler face for the raw connection -----------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._in.write(data)
        self._step()

    def connection_lost(self) -> None:
        self._closed = True
        if self.inner is not None:
            self.inner.connection_lost()

    def _flush(self) -> None:
        out = self._out.read()
        if out and self.raw is not None:
            self.raw.write(out)

    def _step(self) -> None:
        try:
            if not self._shaken:
                try:
                    self._ssl.do_handshake()
                    self._shaken = True
                except ssl.SSLWantReadError:
                    self._flush()
                    return
            if self._plain:
                data, self._plain = bytes(self._plain), bytearray()
                self._ssl.write(data)
            self._flush()
            chunks = []
            while True:
                try:
                    chunk = self._ssl.read(65536)
                except ssl.SSLWantReadError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        except (ssl.SSLError, ValueError):
            if not self._shaken:
                self._stats["tls_dial_handshake_failed"] += 1
            self._flush()
            self.close()
            return
        for chunk in chunks:
            if self.inner is not None and not self._closed:
                self.inner.data_received(chunk)


ContextFor = Callable[[str], tuple[ssl.SSLContext, str | None]]


class ClientWrapper:
    """A ``Network.outgoing_tls`` entry: every dial from that address goes over TLS;
    ``ctx_for(dst)`` gives the context and the server name to check (None: not checked).
    Called as ``(dst, first byte, factory) -> (byte to write, raw connection's factory, the
    connection to hand back to the dialer)``."""

    def __init__(self, ctx_for: ContextFor, stats: Counter[str]) -> None:
        self.ctx_for = ctx_for
        self.stats = stats

    def __call__(
        self, dst: str, first_byte: int, factory: Accept
    ) -> tuple[int, Accept, TlsClientConn]:
        ctx, hostname = self.ctx_for(dst)
        conn = TlsClientConn(ctx, hostname, first_byte, factory, self.stats)
        return RPC_TLS, conn.attach, conn

    async def wrap_stream(
        self, stream: trio.abc.Stream, dst: str, inner_byte: int
    ) -> trio.SSLStream:
        """Task style: write byte 3 on ``stream``, handshake, then the inner byte."""
        await stream.send_all(bytes([RPC_TLS]))
        ctx, hostname = self.ctx_for(dst)
        try:
            return await wrap_stream(stream, ctx, hostname, inner_byte)
        except (trio.BrokenResourceError, trio.TooSlowError):
            self.stats["tls_dial_handshake_failed"] += 1
            raise


async def wrap_stream(
    stream: trio.abc.Stream, ctx: ssl.SSLContext, hostname: str | None, inner_byte: int
) -> trio.SSLStream:
    """Task style: ``stream`` already carries byte 3; handshake, then the inner byte."""
    tls = trio.SSLStream(stream, ctx, server_hostname=hostname)
    with trio.fail_after(HANDSHAKE_TIMEOUT):
        await tls.do_handshake()
    await tls.send_all(bytes([inner_byte]))
    return tls


class _StreamConn(QueuedConn):
    """A MuxConn over a trio stream, for a sans-IO handler behind TLS."""

    def __init__(self, stream: trio.abc.Stream, local: str, peer: str) -> None:
        super().__init__(local, peer)
        self.stream = stream

    def write(self, data: bytes) -> None:
        if not self._closed:
            self.queue += data
            self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def run(self, handler: ConnHandler, first: bytes) -> None:
        gone = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

        async def writer() -> None:
            try:
                while True:
                    if self.queue:
                        data, self.queue = bytes(self.queue), bytearray()
                        await self.stream.send_all(data)
                        continue
                    if self._closed:
                        return
                    self._wake = trio.Event()
                    await self._wake.wait()
            except gone:
                self._closed = True

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                try:
                    if first:
                        handler.data_received(first)
                    while not self._closed:
                        data = await self.stream.receive_some(65536)
                        if not data:
                            break
                        handler.data_received(data)
                except gone:
                    pass  # the peer went away (a TLS close without close_notify included)
                self._closed = True
                self._wake.set()
        finally:
            self._closed = True
            handler.connection_lost()


async def serve_tls(
    stream: trio.abc.Stream,
    peer: str,
    local: str,
    mux: PortMux,
    ctx: ssl.SSLContext,
    stats: Counter[str],
) -> None:
    """The byte-3 handler: handshake, inner first byte, that byte's handler over TLS."""
    tls = trio.SSLStream(stream, ctx, server_side=True)
    try:
        with trio.move_on_after(HANDSHAKE_TIMEOUT) as scope:
            await tls.do_handshake()
            first = await tls.receive_some(1)
        if scope.cancelled_caught or not first:
            stats["tls_handshake_failed" if scope.cancelled_caught else "tls_closed_early"] += 1
            return
    except (trio.BrokenResourceError, ssl.SSLError):
        stats["tls_handshake_failed"] += 1
        return
    stats["tls_accepted"] += 1
    entry = mux.lookup_inner(first[0])
    if entry is None or first[0] == RPC_TLS:
        stats["port_unknown_first_byte"] += 1
        await trio.aclose_forcefully(tls)
        return
    if entry.serve is not None:
        await entry.serve(tls, peer, local)
        return
    assert entry.accept is not None
    conn = _StreamConn(tls, local, peer)
    await conn.run(entry.accept(conn), b"")
    with trio.CancelScope(shield=True):
        await trio.aclose_forcefully(tls)
