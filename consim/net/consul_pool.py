"""Consul's RPC connection pool (``agent/pool``): how one server calls another.

As Consul's ``ConnPool`` does, a server keeps one connection per destination, opened with first
byte 4 (``RPCMultiplexV2``) and a yamux session on it, and makes every call on a stream of its
own: the net/rpc request (Consul's msgpack codec) goes out, the stream is closed after the
response. The connection is the port mux's sans-IO kind (``Network.dial``), so the same bytes
travel live and over the simulator's virtual links, with no task per connection or per call.

Failures map to the network seam's errors (``consim.net.network``): a connection that never
heard from the peer and whose address nothing serves any more (refused), or a stream the peer
reset before acknowledging it -> ``Unreachable`` (never handled: safe to retry, even a write); a connection
to a listening peer lost with the request sent -> ``ConnectionLost`` (it may have been handled;
a read on a pooled session found dead is dialed again once); no response within the timeout ->
``RpcTimeout`` (the stream is reset); the response's ``Error`` -> ``RpcError`` with its text. A
link that a fault black-holes is found out by timeout, as a dropped packet would be; loss and
delay are not applied here but on the connection's bytes (a lost TCP segment is retransmitted
late, never lost), by the network.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import trio

from consim.net.msgpackrpc import ClientCodec, ProtocolError, Response
from consim.net.network import ConnectionLost, Network, RpcError, RpcTimeout, Unreachable
from consim.net.portmux import RPC_MULTIPLEX_V2, MuxConn
from consim.net.yamux import (
    Session,
    StreamAccepted,
    StreamData,
    StreamEnded,
    StreamReset,
    YamuxError,
)


class _Call:
    __slots__ = ("codec", "accepted", "response", "failure", "done")

    def __init__(self) -> None:
        self.codec = ClientCodec()
        self.accepted = False
        self.response: Response | None = None
        self.failure: Exception | None = None
        self.done = trio.Event()

    def fail(self, dst: str, unreached: bool = False) -> None:
        if not self.done.is_set():
            if self.accepted or not unreached:
                self.failure = ConnectionLost(f"connection to {dst} lost")
            else:
                self.failure = Unreachable(f"cannot reach {dst}")
            self.done.set()


class _Session:
    """One pooled connection: a yamux client session (the port mux's ConnHandler)."""

    def __init__(self, net: Network, dst: str, stats: Counter[str]) -> None:
        self.net = net
        self.dst = dst
        self.yamux = Session(client=True, stats=stats)
        self.conn: MuxConn | None = None
        self.calls: dict[int, _Call] = {}
        self.dead = False
        self.heard = False  # the peer ever sent a byte on this connection

    def flush(self) -> None:
        data = self.yamux.data_to_send()
        if data and self.conn is not None and not self.conn.closed:
            self.conn.write(data)

    def data_received(self, data: bytes) -> None:
        self.heard = True
        try:
            events = self.yamux.receive_data(data)
        except YamuxError:
            self.flush()
            self._die()
            return
        for ev in events:
            call = self.calls.get(getattr(ev, "stream_id", 0))
            if call is None:
                continue
            if isinstance(ev, StreamAccepted):
                call.accepted = True
            elif isinstance(ev, StreamData):
                call.accepted = True
                self.yamux.consumed(ev.stream_id, len(ev.data))
                try:
                    responses = call.codec.feed(ev.data)
                except ProtocolError:
                    self._finish(ev.stream_id, reset=True)
                    call.fail(self.dst)
                    continue
                if responses and not call.done.is_set():
                    call.response = responses[0]
                    call.done.set()
                    self._finish(ev.stream_id)
            elif isinstance(ev, StreamReset | StreamEnded):
                self.calls.pop(ev.stream_id, None)
                call.fail(self.dst, unreached=isinstance(ev, StreamReset) and not call.accepted)
        self.flush()

    def _finish(self, stream_id: int, *, reset: bool = False) -> None:
        self.calls.pop(stream_id, None)
        if reset:
            self.yamux.reset_stream(stream_id)
        else:
            self.yamux.close_stream(stream_id)

    def connection_lost(self) -> None:
        self._die()

    def _die(self) -> None:
        self.dead = True
        if self.conn is not None:
            self.conn.close()
        calls, self.calls = self.calls, {}
        # Never reached: never heard from, and nothing serves the address (refused, or gone
        # before it answered the open). A connection to a peer still listening that dies with
        # the request sent may have had it handled (a one-way fault can drop even the peer's
        # acknowledgement).
        unreached = not self.heard and not self.net.serving(self.dst)
        for call in calls.values():
            call.fail(self.dst, unreached)


class ConsulPool:
    """A server's outgoing Consul RPCs (``src`` is its own address), one session per peer."""

    def __init__(self, net: Network, src: str) -> None:
        self.net = net
        self.src = src
        self._sessions: dict[str, _Session] = {}
        self._seq = itertools.count(1)

    def _session(self, dst: str) -> _Session:
        session = self._sessions.get(dst)
        if session is None or session.dead or session.yamux.closed:
            session = _Session(self.net, dst, self.net.stats[self.src])

            def factory(conn: MuxConn) -> _Session:
                session.conn = conn
                return session

            self.net.dial(self.src, dst, RPC_MULTIPLEX_V2, factory)
            self._sessions[dst] = session
        return session

    async def call(
        self,
        dst: str,
        method: str,
        args: Any,
        timeout: float,
        *,
        sort: bool = True,
        idempotent: bool = False,
    ) -> Any:
        """One RPC; the reply body as decoded (see the module docstring for the errors).
        ``idempotent`` (a read): a pooled session found dead under the call is dialed again
        once, as Consul retries a read whose connection was lost."""
        net = self.net
        stats = net.stats[self.src]
        stats["calls_out"] += 1
        faults = net.faults
        if not faults.clear() and not faults.allowed(self.src, dst):
            # Black-holed: Consul's caller learns by timeout. Loss and delay are the link's:
            # they hold back the connection's bytes (retransmission, in the network).
            stats["dropped_by_fault"] += 1
            await trio.sleep(timeout)
            stats["rpc_timeouts"] += 1
            raise RpcTimeout(f"rpc {method} to {dst} timed out after {timeout}s")
        deadline = trio.current_time() + timeout
        fresh = dst not in self._sessions or self._sessions[dst].dead
        while True:
            session, stream_id, call = self._start(dst, method, args, sort)
            try:
                with trio.move_on_at(deadline):
                    await call.done.wait()
            finally:
                # Timed out or cancelled (the caller went away): nobody waits for the answer
                # any more, so the stream is reset and its waiter dropped.
                if (
                    not call.done.is_set()
                    and session.calls.pop(stream_id, None) is not None
                    and not session.dead
                ):
                    session.yamux.reset_stream(stream_id)
                    session.flush()
            if not call.done.is_set():
                stats["rpc_timeouts"] += 1
                raise RpcTimeout(f"rpc {method} to {dst} timed out after {timeout}s")
            if call.failure is None:
                break
            if not fresh and session.dead and idempotent:
                # A pooled session that had died while idle (its loss still in flight): dial
                # again once.
                fresh = True
                continue
            stats["unreachable"] += 1
            raise call.failure
        response = call.response
        assert response is not None
        if response.error:
            stats["rpc_errors"] += 1
            raise RpcError(response.error)
        stats["calls_ok"] += 1
        return response.body

    def _start(self, dst: str, method: str, args: Any, sort: bool) -> tuple[_Session, int, _Call]:
        session = self._session(dst)
        try:
            if session.dead:
                raise YamuxError("connection closed")
            stream_id = session.yamux.open_stream()
        except YamuxError:
            session._die()
            session = self._session(dst)  # a new dial
            stream_id = session.yamux.open_stream()
        call = session.calls[stream_id] = _Call()
        session.yamux.send(stream_id, ClientCodec.request(next(self._seq), method, args, sort=sort))
        session.flush()
        return session, stream_id, call

    def live(self, dst: str) -> bool:
        """True while a session to ``dst`` is open (a call would go out on it)."""
        session = self._sessions.get(dst)
        return session is not None and not session.dead and not session.yamux.closed

    def close(self) -> None:
        for session in self._sessions.values():
            session._die()
        self._sessions.clear()
