"""Fixtures running one test body against both networks.

The simulator runs under ``VirtualClock`` (the ``clock`` fixture, which pytest-trio picks up because
it is a Clock); the socket network runs on the real clock with short timeouts, on hosts
127.0.0.51-59 and ephemeral ports so it does not clash with other tests.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import trio

from consim.net.network import Network, RpcHandler
from consim.net.sim import SimNetwork, VirtualClock
from consim.net.sockets import SocketNetwork


@dataclass
class Env:
    kind: str
    net: Network
    nursery: trio.Nursery

    def addr(self, k: int, port: int = 8300) -> str:
        """Address for "server k": fixed Consul-style in the simulator, ephemeral live."""
        if self.kind == "sim":
            return f"127.0.0.{k}:{port}"
        return f"127.0.0.{50 + k}:0"

    async def serve(self, k: int, handler: RpcHandler) -> str:
        return await self.nursery.start(self.net.serve_rpc, self.addr(k), handler)

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


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    """Poll until predicate() is true (live sockets deliver asynchronously)."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
