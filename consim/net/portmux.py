"""Consul's server port: one listener, its connections told apart by their first byte.

Consul's server port (8300) carries several protocols; the dialer's first byte says which
(Consul's ``pool.RPCType``): 0 ``RPC_CONSUL`` (net/rpc with Consul's msgpack codec), 1 ``RPC_RAFT``
(hashicorp/raft's NetworkTransport), 2 old muxado (refused), 3 ``RPC_TLS``, 4 ``RPC_MULTIPLEX_V2``
(yamux; what client agents dial), 5 snapshot, 6 gossip (inside yamux), 7 ``RPC_TLS_INSECURE``.
A :class:`PortMux` is the registry of one served address: first byte -> handler. Both networks
consult it for every accepted connection, so a handler written once runs live (TCP) and in
virtual time (the simulator carries the same bytes over its virtual links).

API (both :class:`~consim.net.sockets.SocketNetwork` and :class:`~consim.net.sim.SimNetwork`)::

    mux = net.port_mux(address)                # the registry of a server port (made on first use)
    mux.register(RPC_RAFT, accept)             # sans-IO style: accept(conn) -> ConnHandler, per
                                               #   connection; the handler's data_received(bytes)
                                               #   and connection_lost() are called synchronously
    mux.register_stream(RPC_CONSUL, serve)     # task style: await serve(stream, peer, local) per
                                               #   connection; stream is a trio.abc.Stream whose
                                               #   first byte has been consumed
    mux.unregister(RPC_CONSUL)
    conn = net.dial(src, dst, RPC_RAFT, factory)   # never blocks: factory(conn) -> ConnHandler;
                                               #   the first byte is written for you; a refused
                                               #   or broken connection calls connection_lost()
    stream = await net.open_stream(src, dst, RPC_CONSUL)  # task style dial (first byte written)

A :class:`MuxConn` (either end) has ``local``, ``peer`` (live: the remote socket's ``ip:port``;
in the simulator, the dialer's ``src``), ``write(data)`` (queued, never blocks; a connection
whose unsent bytes pass ``MAX_PENDING`` is closed), ``close()``, ``closed`` and ``pending``
(unsent bytes). Handlers must not block; their exceptions close that connection only (counted
``connection_errors``).

The address must be served (``net.serve_port(address)``) for connections to be accepted; handlers registered
at any time apply to connections accepted afterwards. A connection whose first byte has no
handler is closed and counted (``port_unknown_first_byte`` under the listener's address); one
that sends no first byte within the read timeout is counted ``port_first_byte_timeouts``.
Accepted connections count ``port_accepted_<byte>``. The network serves nothing of its own
here: a consim server registers Consul's RPC (0, 4, and 3 with TLS) and hashicorp/raft (1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio

RPC_CONSUL = 0
RPC_RAFT = 1
RPC_MULTIPLEX = 2
RPC_TLS = 3
RPC_MULTIPLEX_V2 = 4
RPC_SNAPSHOT = 5
RPC_GOSSIP = 6
RPC_TLS_INSECURE = 7

MAX_PENDING = 64 * 1024 * 1024  # unsent bytes one connection may queue before it is closed


class MuxConn(Protocol):
    """One connection on a server port, either end (see the module docstring)."""

    local: str
    peer: str

    @property
    def closed(self) -> bool: ...

    @property
    def pending(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class QueuedConn:
    """What both live kinds of :class:`MuxConn` keep (a TCP connection, a connection inside
    TLS): the bytes not sent yet, whether it is closed, and the event that wakes its writer."""

    def __init__(self, local: str, peer: str) -> None:
        self.local, self.peer = local, peer
        self.queue = bytearray()
        self._closed = False
        self._wake = trio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        return len(self.queue)


class ConnHandler(Protocol):
    """What a sans-IO handler gives the network for one connection."""

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self) -> None: ...


Accept = Callable[[MuxConn], ConnHandler]
StreamServe = Callable[[trio.abc.Stream, str, str], Awaitable[None]]
"""async serve(stream, peer, local) -> None"""


@dataclass(frozen=True)
class PortHandler:
    first_byte: int
    accept: Accept | None = None
    serve: StreamServe | None = None


class PortMux:
    """First byte -> handler, for one served address."""

    def __init__(self) -> None:
        self._handlers: dict[int, PortHandler] = {}
        # verify_incoming (consim.net.tls): every first byte but TLS's gets this handler.
        self._plaintext_gate: PortHandler | None = None

    def register(self, first_byte: int, accept: Accept) -> None:
        self._handlers[_byte(first_byte)] = PortHandler(first_byte, accept=accept)

    def register_stream(self, first_byte: int, serve: StreamServe) -> None:
        self._handlers[_byte(first_byte)] = PortHandler(first_byte, serve=serve)

    def unregister(self, first_byte: int) -> None:
        self._handlers.pop(first_byte, None)

    def lookup(self, first_byte: int) -> PortHandler | None:
        gate = self._plaintext_gate
        if gate is not None and first_byte != RPC_TLS:
            return gate
        return self._handlers.get(first_byte)

    def lookup_inner(self, first_byte: int) -> PortHandler | None:
        """The handler for a first byte read inside TLS (no plaintext gate)."""
        return self._handlers.get(first_byte)

    def refuse_plaintext(self, serve: StreamServe | None) -> None:
        """With ``serve`` set, every connection not opened with RPC_TLS goes to it (Consul's
        verify_incoming: it counts and closes); None lifts the gate."""
        self._plaintext_gate = None if serve is None else PortHandler(-1, serve=serve)

    def __contains__(self, first_byte: object) -> bool:
        return first_byte in self._handlers


def _byte(value: int) -> int:
    if not 0 <= value <= 255:
        raise ValueError(f"first byte must be 0..255, got {value}")
    return value


class StreamOverConn(trio.abc.Stream):
    """A ``trio.abc.Stream`` over a :class:`MuxConn` (the simulator's stream-style handlers),
    fed by the :class:`ConnHandler` half of the same object."""

    def __init__(self) -> None:
        self.conn: MuxConn | None = None
        self._buf = bytearray()
        self._eof = False
        self._wake = trio.Event()

    # ConnHandler half
    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._wake.set()

    def connection_lost(self) -> None:
        self._eof = True
        self._wake.set()

    # Stream half
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._buf and not self._eof:
            self._wake = trio.Event()
            await self._wake.wait()
        await trio.lowlevel.checkpoint()
        n = len(self._buf) if max_bytes is None else min(max_bytes, len(self._buf))
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self.conn is None or self.conn.closed:
            raise trio.BrokenResourceError("connection closed")
        self.conn.write(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self._eof = True
        await trio.lowlevel.checkpoint()
