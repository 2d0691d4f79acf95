"""Fixtures running one test body against both networks.

The simulator runs under ``VirtualClock`` (the ``clock`` fixture, which pytest-trio picks up because
it is a Clock); the socket network runs on the real clock with short timeouts, on hosts
127.0.0.51-59 and ephemeral ports so it does not clash with other tests.

The network serves nothing of its own on the server port, so calls here are Consul's: ``Env.serve``
serves an address with :func:`serve_consul_rpc` on bytes 0 and 4 (Go's net/rpc with Consul's
msgpack codec, plain and inside yamux) and ``Env.call`` goes through the pool servers use
(``consim.net.consul_pool``): the same bytes as between consim's servers.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import trio

from consim.net.consul_pool import ConsulPool
from consim.net.msgpackrpc import ProtocolError, ServerCodec
from consim.net.network import INTERNAL_ERROR, Network, RpcError
from consim.net.portmux import RPC_CONSUL, RPC_MULTIPLEX_V2
from consim.net.sim import SimNetwork, VirtualClock
from consim.net.sockets import SocketNetwork
from consim.net.yamux_conn import serve_yamux

Handler = Callable[[str, Any, str], Awaitable[Any]]
"""async (method, args, peer) -> reply; RpcError(text) is the response's Error"""


async def serve_conversation(
    stream: trio.abc.Stream, handler: Handler, peer: str, stats: Counter[str]
) -> None:
    """One net/rpc conversation (Consul's codec): requests in order, each answered by Seq; a
    handler's other exceptions and unencodable replies are ``rpc error: internal error``."""
    codec = ServerCodec()
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            for request in codec.feed(data):
                stats["requests_in"] += 1
                error, body = "", None
                try:
                    body = await handler(request.method, request.body, peer)
                    out = ServerCodec.response(request.seq, request.method, "", body)
                except RpcError as exc:
                    error = exc.message
                except Exception:
                    stats["handler_errors"] += 1
                    error = INTERNAL_ERROR
                if error:
                    out = ServerCodec.response(request.seq, request.method, error, None)
                await stream.send_all(out)
    except (ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        stats["garbage"] += 1
    finally:
        await trio.aclose_forcefully(stream)


def serve_consul_rpc(net: Network, address: str, handler: Handler) -> None:
    """Answer Consul RPCs on ``address`` with ``handler``: byte 0 plain, byte 4 yamux."""
    mux = net.port_mux(address)

    async def plain(stream: trio.abc.Stream, peer: str, local: str) -> None:
        await serve_conversation(stream, handler, peer, net.stats[local])

    async def multiplexed(stream: trio.abc.Stream, peer: str, local: str) -> None:
        async def on_stream(sub: trio.abc.Stream) -> None:
            await serve_conversation(sub, handler, peer, net.stats[local])

        await serve_yamux(stream, on_stream, net.stats[local])

    mux.register_stream(RPC_CONSUL, plain)
    mux.register_stream(RPC_MULTIPLEX_V2, multiplexed)


@dataclass
class Env:
    kind: str
    net: Network
    nursery: trio.Nursery
    pools: dict[str, ConsulPool] = field(default_factory=dict)

    def addr(self, k: int, port: int = 8300) -> str:
        """Address for "server k": fixed Consul-style in the simulator, ephemeral live."""
        if self.kind == "sim":
            return f"127.0.0.{k}:{port}"
        return f"127.0.0.{50 + k}:0"

    async def serve(self, k: int, handler: Handler) -> str:
        """Serve server k's port with ``handler`` answering Consul RPCs; its bound address."""
        return await serve_port(self.net, self.nursery, self.addr(k), handler)

    async def call(self, src: str, dst: str, method: str, args: Any, timeout: float) -> Any:
        """A Consul RPC from ``src`` (one pooled yamux session per destination)."""
        pool = self.pools.get(src)
        if pool is None:
            pool = self.pools[src] = ConsulPool(self.net, src)
        return await pool.call(dst, method, args, timeout)

    async def serve_datagrams(self, k: int, handler: Any) -> str:
        return await self.nursery.start(self.net.serve_datagrams, self.addr(k, 8301), handler)

    def src(self, k: int) -> str:
        """A caller address on host k (callers need not be listening)."""
        return f"127.0.0.{k if self.kind == 'sim' else 50 + k}:8300"


@pytest.fixture(params=["sim", "sockets"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock(kind: str) -> trio.abc.Clock | None:
    return VirtualClock() if kind == "sim" else None


E = TypeVar("E")


@asynccontextmanager
async def open_env(
    kind: str,
    make_env: Callable[[str, Network, trio.Nursery], E],
    *,
    seed: int = 42,
    read_timeout: float = 0.5,
) -> AsyncIterator[E]:
    """A running network of ``kind`` ("sim" or "sockets") and a nursery, wrapped by ``make_env``."""
    net: Network
    if kind == "sim":
        net = SimNetwork(random.Random(seed))
    else:
        net = SocketNetwork(random.Random(seed), read_timeout=read_timeout)
    async with net, trio.open_nursery() as nursery:
        yield make_env(kind, net, nursery)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def env(kind: str, clock: trio.abc.Clock | None) -> AsyncIterator[Env]:
    async with open_env(kind, Env) as opened:
        yield opened


async def serve_port(net: Network, nursery: trio.Nursery, address: str, handler: Handler) -> str:
    """Register ``handler`` (see :func:`serve_consul_rpc`) and serve the port; the address."""
    serve_consul_rpc(net, address, handler)
    actual: str = await nursery.start(net.serve_port, address)
    return actual


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    """Poll until predicate() is true (live sockets deliver asynchronously)."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
