"""Consul's RPC conversations on the server port (Consul's ``rpc.go``: ``handleConsulConn``,
``handleMultiplexV2``): stream handlers that take a trio stream whose first byte the port's
demultiplexer has already read, and the server's public face (``interface.Server``).

``handle_consul_conn`` (first byte 0, ``RPCConsul``): Go's ``rpcServer.ServeRequest`` in a
loop, one request at a time per connection, as Consul serves it. Each request is decoded into
Consul's argument struct (``rpc_structs``), served by ``server.rpc`` (which forwards to the
leader or another datacenter and checks ACL tokens, exactly as the HTTP API's calls), and
answered with the same ``Seq``; an endpoint's refusal travels as the response's ``Error`` text.
As Go's ``net/rpc`` does, an unknown method or undecodable arguments get their error response
and then the connection is closed; bytes that are not msgpack, a header of the wrong shape, a
message over the size limit or one stalled past the read timeout close it without an answer.

``handle_multiplex_v2`` (first byte 4, ``RPCMultiplexV2``, what Consul's client agents dial):
a yamux session whose every stream is such a conversation.

Counters (the ``stats`` Counter given by the caller, the listener's): ``consul_rpc_conns``,
``consul_rpc_requests``, ``consul_rpc_errors`` (answered with an error), ``consul_rpc_bad_method``,
``consul_rpc_bad_args``, ``consul_rpc_garbage``, ``consul_rpc_timed_out``,
``consul_rpc_internal_errors``; yamux's in ``consim.net.yamux_conn``.
"""

from __future__ import annotations

import ssl
from collections import Counter, deque
from collections.abc import Awaitable, Callable

import trio

from consim.net.framing import DEFAULT_READ_TIMEOUT, MAX_FRAME
from consim.net.msgpackrpc import ProtocolError, Request, ServerCodec
from consim.net.network import INTERNAL_ERROR, RpcError
from consim.net.portmux import RPC_CONSUL, RPC_MULTIPLEX_V2, RPC_TLS, PortMux
from consim.net.tls import ClientWrapper, serve_tls
from consim.net.yamux_conn import serve_yamux
from consim.server.interface import Server
from consim.server.rpc_structs import (
    BadArgs,
    UnknownMethod,
    decode_args,
    encode_reply,
    sorted_on_wire,
)
from consim.tls.config import TLSConfig

_RECV = 64 * 1024


async def serve_request(
    server: Server, request: Request, stats: Counter[str]
) -> tuple[bytes, bool]:
    """One request's response bytes, and whether the connection must close after it."""
    stats["consul_rpc_requests"] += 1
    respond = ServerCodec.response
    try:
        args = decode_args(request.method, request.body)
    except UnknownMethod as exc:
        stats["consul_rpc_bad_method"] += 1
        return respond(request.seq, request.method, str(exc), None), True
    except BadArgs as exc:
        stats["consul_rpc_bad_args"] += 1
        return respond(request.seq, request.method, str(exc), None), True
    if server.paused:
        await server.wait_resumed()
    try:
        reply = await server.rpc(request.method, args)
        body = encode_reply(request.method, reply)
        sort = sorted_on_wire(request.method)
        return respond(request.seq, request.method, "", body, sort=sort), False
    except RpcError as exc:
        stats["consul_rpc_errors"] += 1
        return respond(request.seq, request.method, exc.message, None), False
    except Exception as exc:
        # An endpoint's bug (or an unencodable reply) is this caller's internal error only.
        stats["consul_rpc_internal_errors"] += 1
        server.contained_error("consul rpc", exc)
        return respond(request.seq, request.method, INTERNAL_ERROR, None), False


async def handle_consul_conn(
    stream: trio.abc.Stream,
    server: Server,
    stats: Counter[str],
    *,
    initial: bytes = b"",
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    max_message: int = MAX_FRAME,
) -> None:
    """Serve one RPCConsul conversation until EOF, garbage or a closing error; closes ``stream``.

    ``initial``: bytes already read past the first byte (the demultiplexer's peek)."""
    stats["consul_rpc_conns"] += 1
    codec = ServerCodec(max_message)
    partial_since: float | None = None
    try:
        queue: deque[Request] = deque(codec.feed(initial))
        while True:
            while queue:
                data, close = await serve_request(server, queue.popleft(), stats)
                await stream.send_all(data)
                if close:
                    return
            # Idle between requests forever (pooled connections are quiet); a request that has
            # started must finish within read_timeout, so a trickling peer cannot pin memory.
            if codec.partial:
                if partial_since is None:
                    partial_since = trio.current_time()
                deadline = partial_since + read_timeout
            else:
                partial_since = None
                deadline = float("inf")
            with trio.move_on_at(deadline):
                data = await stream.receive_some(_RECV)
                if not data:
                    return
                queue.extend(codec.feed(data))
                continue
            stats["consul_rpc_timed_out"] += 1
            return
    except ProtocolError:
        stats["consul_rpc_garbage"] += 1
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


async def handle_multiplex_v2(
    stream: trio.abc.Stream,
    server: Server,
    stats: Counter[str],
    *,
    initial: bytes = b"",
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> None:
    """Serve one RPCMultiplexV2 connection: yamux, each stream an RPCConsul conversation."""

    async def on_stream(sub: trio.abc.Stream) -> None:
        await handle_consul_conn(sub, server, stats, read_timeout=read_timeout)

    await serve_yamux(stream, on_stream, stats, initial=initial)


def register(
    server: Server,
    mux: PortMux,
    stats: Counter[str],
    tls: TLSConfig | None = None,
    *,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> None:
    """Serve Consul's RPC on ``mux`` (the server port's first-byte registry): byte 0 plain,
    byte 4 inside yamux; with ``tls``, byte 3 (TLS, then any of them inside), and with its
    verify_incoming nothing but TLS. A request that has started must finish within
    ``read_timeout``."""

    async def guarded(serve: Callable[[], Awaitable[None]], where: str) -> None:
        # One connection's failure is that connection's: never the listener's (the simulator
        # runs these in the listener's nursery).
        try:
            await serve()
        except Exception as exc:
            stats["consul_rpc_internal_errors"] += 1
            server.contained_error(where, exc)

    async def consul(stream: trio.abc.Stream, peer: str, local: str) -> None:
        await guarded(
            lambda: handle_consul_conn(stream, server, stats, read_timeout=read_timeout),
            "consul rpc connection",
        )

    async def multiplex(stream: trio.abc.Stream, peer: str, local: str) -> None:
        await guarded(
            lambda: handle_multiplex_v2(stream, server, stats, read_timeout=read_timeout),
            "yamux session",
        )

    mux.register_stream(RPC_CONSUL, consul)
    mux.register_stream(RPC_MULTIPLEX_V2, multiplex)
    if tls is None:
        mux.unregister(RPC_TLS)
        mux.refuse_plaintext(None)
        return
    ctx = tls.server_context(server.datacenter)

    async def over_tls(stream: trio.abc.Stream, peer: str, local: str) -> None:
        await guarded(lambda: serve_tls(stream, peer, local, mux, ctx, stats), "tls connection")

    async def refuse(stream: trio.abc.Stream, peer: str, local: str) -> None:
        # Consul: "Non-TLS connection attempted with VerifyIncoming set"
        stats["tls_plaintext_refused"] += 1
        server.events.emit(
            server.name,
            "tls_plaintext_refused",
            {"peer": peer},
            level="WARN",
            subsystem="agent.server.rpc",
            message="Non-TLS connection attempted with VerifyIncoming set",
        )
        await trio.aclose_forcefully(stream)

    mux.register_stream(RPC_TLS, over_tls)
    mux.refuse_plaintext(refuse if tls.verify_incoming else None)


def tls_client(server: Server, tls: TLSConfig) -> ClientWrapper:
    """How ``server`` dials its peers with TLS: its datacenter's certificate, and the peer's
    ``server.<dc>.<domain>`` name checked with verify_server_hostname."""
    datacenters = {s.rpc_address: s.datacenter for s in server.directory_servers()}

    def ctx_for(dst: str) -> tuple[ssl.SSLContext, str | None]:
        dc = datacenters.get(dst, server.datacenter)
        hostname = tls.server_name(dc) if tls.verify_server_hostname else None
        return tls.client_context(server.datacenter), hostname

    return ClientWrapper(ctx_for, server.net.stats[server.address])
