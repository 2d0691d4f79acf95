"""Live network: TCP for the server port (its connections told apart by first byte), UDP for datagrams.

Addresses are Consul's strings. Server k of dc1 listens on ``127.0.0.k:8300`` (Linux routes all of
127/8 to lo). Where a platform lacks the range (macOS without aliases), :func:`resolve_listen_address`
maps ``127.a.b.c:port`` to ``127.0.0.1:port + 10 * index`` with ``index = a*65536 + b*256 + c - 1``
(127.0.0.1 keeps its ports; 127.0.0.2:8300 becomes 127.0.0.1:8310). Both serve and dial use that one
function, so callers keep using the Consul address strings. Port 0 (ephemeral) is never offset.

Faults are applied at the sender and at the receiver (one-way blocks, by the peer's address). A
cut closes a port connection (its handlers see it lost and redial) and drops a datagram; random
loss drops a datagram but only delays a TCP write by the retransmission timeouts it would cost
(``FaultModel.stream_delay``, as the simulator does: TCP never loses bytes, it resends them late,
and a link lossy enough that TCP gives up closes the connection); a delay holds the bytes back,
in order. Datagrams are raw UDP sent from the socket bound to the
sender's address, so their source is the packet's own (what memberlist peers such as a real serf
agent expect); only where addresses are port-mapped (no 127/8 range) do they carry an envelope
``[src, payload]`` naming the Consul-style source. Stream exchanges (gossip push-pull) are TCP on
the same port as the datagrams, one exchange per connection, as memberlist does.

With a network model (``model=``, ``consim.net.model``) a push-pull exchange waits its link's
round trip before it is sent and a datagram its one-way latency.

A killed server (its serve task cancelled, or :meth:`close_address`) closes its listener and every
connection it held: their handlers see them lost, new dials are refused.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import random
import select
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from consim.address import AddressError, parse_address, valid_address
from consim.net.faults import FaultModel, host_of
from consim.net.framing import DEFAULT_READ_TIMEOUT, MAX_FRAME, FrameError, pack, unpack
from consim.net.model import LinkDelays, NetworkModel
from consim.net.network import (
    MAX_DATAGRAM,
    STREAM_TIMEOUT,
    DatagramHandler,
    FrameLength,
    Network,
    StreamError,
    StreamHandler,
    StreamReply,
    TaskStatus,
    Unreachable,
    deliver_datagram,
    stream_key,
)
from consim.net.portmux import MAX_PENDING, Accept, ConnHandler, MuxConn, PortMux, QueuedConn

PORT_STRIDE = 10
DEFAULT_CONNECT_TIMEOUT = 5.0


@functools.cache
def loopback_range_available() -> bool:
    """True if this host can bind addresses of 127/8 other than 127.0.0.1 (Linux: yes)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.2", 0))
    except OSError:
        return False
    finally:
        s.close()
    return True


def resolve_listen_address(address: str, *, loopback_range: bool | None = None) -> tuple[str, int]:
    """The (host, port) to bind or dial for a Consul-style address string."""
    host, port = parse_address(address)
    if loopback_range is None:
        loopback_range = loopback_range_available()
    if loopback_range:
        return host, port
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        return host, port
    if not ip.is_loopback:
        return host, port
    if port == 0:
        return "127.0.0.1", 0  # ephemeral: nothing to offset
    index = int(ip) - int(ipaddress.IPv4Address("127.0.0.1"))
    mapped = port + PORT_STRIDE * index
    if not 0 < mapped < 65536:
        raise ValueError(f"{address}: no port-offset fallback possible (port {mapped})")
    return "127.0.0.1", mapped


class SocketNetwork(Network):
    def __init__(
        self,
        rng: random.Random | None = None,
        *,
        faults: FaultModel | None = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        model: NetworkModel | None = None,
        datacenter_of: dict[str, str] | None = None,
    ) -> None:
        rng = rng if rng is not None else random.Random()
        if faults is None and model is not None and model.loss:
            faults = FaultModel(rng, base_loss=model.loss)
        super().__init__(faults, rng)
        self._delays = (
            LinkDelays(model, datacenter_of or {}, random.Random(rng.getrandbits(64)))
            if model is not None
            else None
        )
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self._udp: socket.socket | None = None
        # The bound socket of every address serving datagrams (they also send from it), and
        # per-host send sockets for sources that serve none.
        self._dgram_socks: dict[str, socket.socket] = {}
        self._host_socks: dict[str, socket.socket] = {}
        self._raw = loopback_range_available()
        # Dialed and accepted mux connections by local address (closed when it stops serving).
        self._conns_of: dict[str, set[_LiveConn]] = {}

    async def _shutdown(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        for sock in self._host_socks.values():
            sock.close()
        self._host_socks.clear()

    def _stream_wait(self, src: str, dst: str, trips: int) -> float | None:
        """Seconds a TCP message from src waits before it is sent: ``trips`` one-way latencies
        of the model, the fault delay and any retransmissions; None: a cut (or TCP giving up)
        drops it."""
        faults = self.faults
        wait = 0.0
        if not faults.clear():
            late = faults.stream_delay(src, dst)
            if late is None:
                return None
            if late:
                self.stats[src]["retransmitted"] += 1
            wait = late + faults.extra_delay(src, dst)
        if self._delays is not None:
            s, d = host_of(src), host_of(dst)
            for _ in range(trips):
                wait += self._delays.draw(s, d)
        return wait

    # -- the server port --------------------------------------------------------------------------

    async def _listen_tcp(
        self, address: str, what: str, key: Callable[[str], str], scope: trio.CancelScope
    ) -> tuple[list[trio.SocketListener], str]:
        """Bind ``address`` for TCP and claim ``key(bound address)`` for ``scope``: the
        listeners and the address actually bound (a ":0" port is chosen by the system)."""
        host, port = resolve_listen_address(address)
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot listen for {what} on {address} ({host}:{port}): {exc.strerror}"
            ) from None
        actual = address if port != 0 else f"{host}:{listeners[0].socket.getsockname()[1]}"
        try:
            self._claim(key(actual), scope)
        except OSError:
            await _close_all(listeners)
            raise
        return listeners, actual

    async def serve_port(
        self, address: str, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.CancelScope() as scope:
            listeners, actual = await self._listen_tcp(address, "RPC", str, scope)
            try:
                stats = self.stats[actual]
                mux = self.port_mux(actual)
                if address != actual:
                    # An ephemeral port: handlers registered under the asked-for address apply.
                    mux = self._muxes[actual] = self.port_mux(address)

                async def on_connection(stream: trio.SocketStream) -> None:
                    await self._accept(stream, actual, mux, stats)

                async with trio.open_nursery() as nursery:
                    await nursery.start(trio.serve_listeners, on_connection, listeners)
                    task_status.started(actual)
            finally:
                self._release(actual, scope)
                for conn in list(self._conns_of.pop(actual, ())):
                    conn.close()
                await _close_all(listeners)

    async def _accept(
        self, stream: trio.SocketStream, local: str, mux: PortMux, stats: Any
    ) -> None:
        """One accepted connection: its first byte picks the handler (``consim.net.portmux``)."""
        try:
            peer_name = stream.socket.getpeername()
            peer = f"{peer_name[0]}:{peer_name[1]}"
            with trio.move_on_after(self.read_timeout) as scope:
                first = await stream.receive_some(1)
            if scope.cancelled_caught:
                stats["port_first_byte_timeouts"] += 1
                return
            if not first:
                return
            entry = mux.lookup(first[0])
            if entry is None:
                stats["port_unknown_first_byte"] += 1
                return
            stats[f"port_accepted_{first[0]}"] += 1
            if entry.serve is not None:
                await entry.serve(stream, peer, local)
                return
            assert entry.accept is not None
            if not (self.faults.clear() or self.faults.allowed(peer, local)):
                stats["dropped_by_fault"] += 1
                return
            conn = _LiveConn(self, local, peer)
            await self._run_conn(conn, stream, entry.accept)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception as exc:
            self.contain(local, "port connection", exc, "connection_errors")
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _run_conn(self, conn: _LiveConn, stream: trio.SocketStream, accept: Accept) -> None:
        conns = self._conns_of.setdefault(conn.local, set())
        conns.add(conn)
        try:
            conn.handler = accept(conn)
            await conn.run(stream)
        finally:
            conns.discard(conn)
            conn.lost()

    def dial(self, src: str, dst: str, first_byte: int, factory: Accept) -> MuxConn:
        nursery = self._require_nursery()
        tls = self.outgoing_tls.get(src)
        wrapped = None
        if tls is not None:
            # TLS (consim.net.tls): the dialer gets the TLS end, the network the raw one.
            first_byte, factory, wrapped = tls(dst, first_byte, factory)
        conn = _LiveConn(self, src, dst)
        conn.queue += bytes([first_byte])  # ahead of whatever the handler writes (TLS: its hello)
        conn.handler = factory(conn)
        stats = self.stats[src]
        if not valid_address(dst):
            stats["invalid_address"] += 1
            conn.close()
        elif not self.faults.clear() and not self.faults.allowed(src, dst):  # loss: in write
            stats["dropped_by_fault"] += 1
            conn.close()
        # The handler learns of a refused dial from the task, never inside this call.
        nursery.start_soon(self._dial_conn, conn)
        return conn if wrapped is None else wrapped

    async def _dial_conn(self, conn: _LiveConn) -> None:
        src, dst = conn.local, conn.peer
        stats = self.stats[src]
        conns = self._conns_of.setdefault(src, set())
        conns.add(conn)
        stream: trio.SocketStream | None = None
        try:
            if conn.closed:
                return
            host, port = resolve_listen_address(dst)
            local = host_of(src) if self._raw else None
            with trio.move_on_after(self.connect_timeout):
                stream = await trio.open_tcp_stream(host, port, local_address=local)
            if stream is None:
                stats["unreachable"] += 1
                return
            stats["connections_dialed"] += 1
            await conn.run(stream)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            stats["unreachable"] += 1
        except Exception as exc:
            self.contain(src, f"connection to {dst}", exc, "connection_errors")
        finally:
            conns.discard(conn)
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
            conn.lost()

    async def open_stream(self, src: str, dst: str, first_byte: int) -> trio.abc.Stream:
        if not valid_address(dst):
            self.stats[src]["invalid_address"] += 1
            raise Unreachable(f"cannot connect to {dst!r}: {_why_invalid(dst)}")
        host, port = resolve_listen_address(dst)
        local = host_of(src) if self._raw else None
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await trio.open_tcp_stream(host, port, local_address=local)
        except (OSError, trio.TooSlowError) as exc:
            raise Unreachable(f"cannot connect to {dst}: {exc}") from None
        tls = self.outgoing_tls.get(src)
        if tls is not None:
            try:
                return await tls.wrap_stream(stream, dst, first_byte)
            except (trio.BrokenResourceError, trio.TooSlowError) as exc:
                await trio.aclose_forcefully(stream)
                raise Unreachable(f"TLS handshake with {dst} failed: {exc}") from None
        await stream.send_all(bytes([first_byte]))
        return stream

    # -- datagrams -------------------------------------------------------------------------------

    async def _serve_datagrams(
        self, address: str, handler: DatagramHandler, task_status: TaskStatus
    ) -> None:
        host, port = resolve_listen_address(address)
        plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        plain.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        plain.setblocking(False)
        try:
            plain.bind((host, port))
        except OSError as exc:
            plain.close()
            raise OSError(
                exc.errno,
                f"cannot listen for datagrams on {address} ({host}:{port}): {exc.strerror}",
            ) from None
        actual = address if port != 0 else f"{host}:{plain.getsockname()[1]}"
        sock = trio.socket.from_stdlib_socket(plain)
        with sock, trio.CancelScope() as scope:
            self._claim(actual, scope)
            self._dgram_socks[actual] = plain
            try:
                stats = self.stats[actual]
                report = self.reporter(actual, "datagram handler")
                task_status.started(actual)
                while True:
                    data, peer = await sock.recvfrom(65536)
                    if self._raw:
                        src, payload = f"{peer[0]}:{peer[1]}", data
                    else:
                        src_payload = _parse_datagram(data)
                        if src_payload is None:
                            stats["datagrams_dropped_malformed"] += 1
                            continue
                        src, payload = src_payload
                    if not self.faults.allowed(src, actual):
                        stats["dropped_by_fault"] += 1
                        continue
                    await deliver_datagram(handler, src, payload, stats, report)
            finally:
                self._release(actual, scope)
                if self._dgram_socks.get(actual) is plain:
                    del self._dgram_socks[actual]

    def send_datagram(self, src: str, dst: str, payload: bytes) -> None:
        nursery = self._require_nursery()
        if len(payload) > MAX_DATAGRAM:
            raise ValueError(f"datagram of {len(payload)} bytes exceeds {MAX_DATAGRAM}")
        stats = self.stats[src]
        if not valid_address(dst):
            stats["invalid_address"] += 1
            return
        data = bytes(payload) if self._raw else pack([src, bytes(payload)])
        stats["datagrams_out"] += 1
        if self.faults.drops(src, dst):
            stats["dropped_by_fault"] += 1
            return
        try:
            target = resolve_listen_address(dst)
        except ValueError:  # no port-offset fallback for it on this host
            stats["invalid_address"] += 1
            return
        delay = self.faults.extra_delay(src, dst)
        if self._delays is not None:
            delay += self._delays.draw(host_of(src), host_of(dst))
        if delay > 0:
            nursery.start_soon(
                self._send_later, delay, src, lambda: self._sendto(src, data, target)
            )
        else:
            self._sendto(src, data, target)

    async def _send_later(self, delay: float, src: str, send: Callable[[], None]) -> None:
        await trio.sleep(delay)
        try:
            send()
        except Exception as exc:  # in the network's nursery: contain it to this datagram
            self.contain(src, "delayed datagram", exc, "datagram_errors")

    def _sendto(self, src: str, data: bytes, target: tuple[str, int]) -> None:
        try:
            self._send_socket(src).sendto(data, target)
        except (OSError, OverflowError):
            # Best effort, like UDP itself (a full buffer or an unroutable target).
            self.stats[src]["datagrams_send_failed"] += 1

    def _send_socket(self, src: str) -> socket.socket:
        """The socket bound to ``src`` (so the packet's source is ``src``), else one bound to
        its host, else any."""
        sock = self._dgram_socks.get(src)
        if sock is not None or not self._raw:
            return sock or self._any_socket()
        host = host_of(src)
        sock = self._host_socks.get(host)
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.bind((host, 0))
            except OSError:
                sock.close()
                return self._any_socket()
            self._host_socks[host] = sock
        return sock

    def _any_socket(self) -> socket.socket:
        if self._udp is None:
            self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._udp.setblocking(False)
        return self._udp

    # -- streams ---------------------------------------------------------------------------------

    async def _serve_streams(
        self, address: str, handler: StreamHandler, frame_length: FrameLength, status: TaskStatus
    ) -> None:
        with trio.CancelScope() as scope:
            listeners, address = await self._listen_tcp(address, "streams", stream_key, scope)
            key = stream_key(address)
            stats = self.stats[address]

            async def on_connection(stream: trio.SocketStream) -> None:
                peer = stream.socket.getpeername()
                src = f"{peer[0]}:{peer[1]}"
                try:
                    if not self.faults.allowed(src, address):
                        stats["dropped_by_fault"] += 1
                        return
                    with trio.move_on_after(STREAM_TIMEOUT):
                        data = await _read_message(stream, frame_length)
                        if data is None:
                            return
                        stats["streams_in"] += 1
                        reply = handler(src, data)
                        if reply is not None:
                            await stream.send_all(reply)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    stats["stream_errors"] += 1
                except Exception as exc:
                    stats["stream_handler_errors"] += 1
                    self.contain(address, "stream handler", exc, "")
                finally:
                    await stream.aclose()

            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(trio.serve_listeners, on_connection, listeners)
                    status.started(address)
            finally:
                self._release(key, scope)
                await _close_all(listeners)

    def send_stream(
        self,
        src: str,
        dst: str,
        data: bytes,
        frame_length: FrameLength,
        on_reply: StreamReply,
        on_error: StreamError | None = None,
    ) -> None:
        nursery = self._require_nursery()
        stats = self.stats[src]
        if not valid_address(dst):
            stats["invalid_address"] += 1
            return
        stats["streams_out"] += 1
        wait = self._stream_wait(src, dst, trips=2)
        if wait is None:
            stats["dropped_by_fault"] += 1
            return
        nursery.start_soon(
            self._exchange, src, dst, bytes(data), frame_length, on_reply, wait, on_error
        )

    async def _exchange(
        self,
        src: str,
        dst: str,
        data: bytes,
        frame_length: FrameLength,
        on_reply: StreamReply,
        wait: float = 0.0,
        on_error: StreamError | None = None,
    ) -> None:
        stats = self.stats[src]
        error: str | None = None
        try:
            if wait > 0:
                await trio.sleep(wait)
            with trio.move_on_after(STREAM_TIMEOUT):
                host, port = resolve_listen_address(dst)
                # From the source's host, so the listener's faults see who is dialing.
                local = host_of(src) if self._raw else None
                try:
                    stream = await trio.open_tcp_stream(host, port, local_address=local)
                except OSError as exc:
                    error = f"dial tcp {dst}: connect: {_go_errno_text(exc)}"
                    raise
                async with stream:
                    await stream.send_all(data)
                    reply = await _read_message(stream, frame_length)
                if reply is not None:
                    on_reply(reply)
                    return
                error = "EOF"  # closed (or garbage) before a whole answer: Go's io.EOF
                stats["stream_errors"] += 1
            if error is None:
                stats["stream_timeouts"] += 1
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            stats["stream_errors"] += 1
        except Exception as exc:
            self.contain(src, "stream exchange", exc, "stream_errors")
        if error is not None and on_error is not None:
            on_error(error)


def _go_errno_text(exc: OSError) -> str:
    """An OS error as Go's syscall.Errno prints it (strerror, lower-case: "connection refused")."""
    # trio's open_tcp_stream wraps the per-address failures of its happy-eyeballs dial.
    cause: BaseException | None = exc
    while isinstance(cause, BaseException) and getattr(cause, "errno", None) is None:
        if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            cause = cause.exceptions[0]
        else:
            cause = cause.__cause__
    if isinstance(cause, OSError) and cause.errno is not None:
        text = os.strerror(cause.errno)
        return text[:1].lower() + text[1:]
    return str(exc)


_RECV = 256 * 1024


async def _close_all(listeners: list[trio.SocketListener]) -> None:
    with trio.CancelScope(shield=True):
        for listener in listeners:
            await listener.aclose()


class _LiveConn(QueuedConn):
    """A port connection over TCP (``consim.net.portmux.MuxConn``): writes go straight to the
    socket when nothing is queued, else to a queue a writer task drains."""

    def __init__(self, net: SocketNetwork, local: str, peer: str) -> None:
        super().__init__(local, peer)
        self.net = net
        self.handler: ConnHandler | None = None
        self._fd = -1
        self._lost = False
        self._scope: trio.CancelScope | None = None
        self._busy = False  # the writer task is in send_all: writes must queue behind it
        self._delayed: deque[tuple[float, bytes]] = deque()  # (when, bytes) on a delayed link

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        faults = self.net.faults
        if self._delayed and faults.clear():
            # Healed while bytes still wait for their delay: these go after them, in order.
            self._delayed.append((self._delayed[-1][0], data))
            self._wake.set()
            return
        if not faults.clear():
            # A cut, or loss so heavy that every retransmission is lost: TCP gives up and the
            # connection dies (the peer redials). Lighter loss costs retransmission timeouts.
            late = faults.stream_delay(self.local, self.peer)
            if late is None:
                self.net.stats[self.local]["dropped_by_fault"] += 1
                self.close()
                return
            if late:
                self.net.stats[self.local]["retransmitted"] += 1
            delay = late + faults.extra_delay(self.local, self.peer)
            if delay > 0 or self._delayed:
                # A slow link: the bytes leave after the delay, in order.
                at = max(trio.current_time() + delay, self._delayed[-1][0] if self._delayed else 0)
                self._delayed.append((at, data))
                self._wake.set()
                return
        if not self.queue and self._fd >= 0 and not self._busy:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.close()
                return
            if sent == len(data):
                return
            data = data[sent:]
        self.queue += data
        if len(self.queue) > MAX_PENDING:
            self.net.stats[self.local]["port_send_overflow"] += 1
            self.close()
            return
        self._wake.set()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._scope is not None:
            self._scope.cancel()

    def lost(self) -> None:
        """Tell the handler once, whoever ended the connection."""
        self._closed = True
        self._fd = -1
        if self._lost:
            return
        self._lost = True
        self.net.tell_lost(self.local, self.handler)

    async def run(self, stream: trio.SocketStream) -> None:
        with trio.CancelScope() as self._scope:
            if self._closed:
                return
            self._fd = stream.socket.fileno()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, stream)
                await self._reader(stream)
                nursery.cancel_scope.cancel()

    async def _reader(self, stream: trio.SocketStream) -> None:
        sock = stream.socket
        faults = self.net.faults
        ready = select.poll()  # "more bytes already here?" without reading them
        ready.register(sock.fileno(), select.POLLIN)
        while not self._closed:
            fd = sock.fileno()
            if fd < 0:
                return
            try:
                chunk = os.read(fd, _RECV)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                continue
            except OSError:
                return
            if not chunk:
                return
            if not faults.clear() and not faults.allowed(self.peer, self.local):
                self.net.stats[self.local]["dropped_by_fault"] += 1
                return
            handler = self.handler
            assert handler is not None
            try:
                handler.data_received(chunk)
            except Exception as exc:
                self.net.contain(self.local, "connection handler", exc, "connection_errors")
                return
            if ready.poll(0):
                # More bytes are here: let the other tasks run first (no connection starves the
                # rest), then read all that came meanwhile in one chunk.
                await trio.lowlevel.checkpoint()
            elif not self._closed:
                # Nothing more: park now. (Not a checkpoint and a read that finds nothing: a
                # Raft answer would wait a scheduler trip for that.)
                await trio.lowlevel.wait_readable(fd)

    async def _writer(self, stream: trio.SocketStream) -> None:
        while True:
            delayed = self._delayed
            if delayed and delayed[0][0] <= trio.current_time():
                self.queue += delayed.popleft()[1]
            if self.queue:
                data = bytes(self.queue)
                self.queue.clear()
                self._busy = True
                try:
                    await stream.send_all(data)
                finally:
                    self._busy = False
                continue
            if self._closed:
                return
            self._wake = trio.Event()
            with trio.move_on_at(delayed[0][0] if delayed else math.inf):
                await self._wake.wait()


async def _read_message(stream: trio.SocketStream, frame_length: FrameLength) -> bytes | None:
    """Read one whole message; None if the peer closes first or sends garbage."""
    buf = bytearray()
    while True:
        try:
            n = frame_length(bytes(buf)) if buf else None
        except ValueError:
            return None
        if n is not None:
            return bytes(buf[:n])
        if len(buf) > MAX_FRAME * 4:
            return None
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        buf += chunk


def _parse_datagram(data: bytes) -> tuple[str, bytes] | None:
    try:
        obj = unpack(data)
    except FrameError:
        return None
    # The declared source is where answers go: an invalid one is a malformed datagram.
    if (
        isinstance(obj, list)
        and len(obj) == 2
        and valid_address(obj[0])
        and isinstance(obj[1], bytes)
    ):
        return obj[0], obj[1]
    return None


def _why_invalid(address: Any) -> str:
    try:
        parse_address(address)
    except AddressError as exc:
        return str(exc)
    return "not usable here"


__all__ = [
    "SocketNetwork",
    "loopback_range_available",
    "resolve_listen_address",
    "parse_address",
    "host_of",
    "Unreachable",
]
