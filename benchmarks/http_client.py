"""Cost of consim's live HTTP client per request: a client per request against one kept client.

One live server (``consim.runtime.LIVE``, raft multiplier 1) in this process, on a free
``127.0.N.1``; ``--requests`` sequential ``PUT /v1/kv/bench`` each way, alternating ``--rounds``
times: an ``httpx.AsyncClient`` per request as httpx builds it by default (a TLS context loaded
with the CA bundle, which plain http:// never uses), ``consim.http.client.request`` (a client per
request, no TLS context) and one ``consim.http.client.Client`` (keep-alive connections, what the
live front and load steps use). Prints wall and CPU milliseconds per request (client and server
together: one process) and the ratios to the kept client.

    .venv/bin/python benchmarks/http_client.py [--requests 200] [--rounds 3] [--http-port 18890]
"""

from __future__ import annotations

from _requires import require  # benchmarks/ is sys.path[0] when a script runs

require(__file__)

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx
import trio

from consim.events import EventLog
from consim.http.client import Client, request
from consim.live import free_host_block
from consim.runtime import LIVE
from consim.spec import ClusterSpec

Send = Callable[[str], Awaitable[object]]


async def _httpx_default(address: str) -> object:
    async with httpx.AsyncClient(timeout=65) as client:
        return await client.put(f"http://{address}/v1/kv/bench", content=b"1")


async def _one_off(address: str) -> object:
    return await request(address, "PUT", "/v1/kv/bench", body=b"1")


async def _measure(send: Send, address: str, n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await send(address)
    return (time.perf_counter() - wall) / n * 1000, (time.process_time() - cpu) / n * 1000


async def run(requests: int, rounds: int, http_port: int) -> None:
    block = free_host_block([1], http_port, range(200, 240, 2))
    spec = ClusterSpec(
        datacenters=(("dc1", 1),), http_port=http_port, host_block=block, raft_multiplier=1
    )
    cluster = LIVE.cluster(spec, EventLog(trio.current_time))
    async with trio.open_nursery() as nursery:
        await nursery.start(cluster.net.run)
        await nursery.start(cluster.run)
        leader = await cluster.wait_for_leader(within=30)
        address = leader.spec.http_address
        async with Client() as kept:

            async def _kept(address: str) -> object:
                return await kept.request(address, "PUT", "/v1/kv/bench", body=b"1")

            ways: dict[str, Send] = {
                "httpx.AsyncClient per request (default TLS context)": _httpx_default,
                "consim.http.client.request (client per request)": _one_off,
                "consim.http.client.Client (kept)": _kept,
            }
            for send in ways.values():  # warm up: imports, the first connection, the key
                await _measure(send, address, 5)
            figures: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
            for r in range(rounds):
                order = list(ways) if r % 2 == 0 else list(reversed(ways))
                for name in order:
                    figures[name].append(await _measure(ways[name], address, requests))
        nursery.cancel_scope.cancel()
    kept_wall = statistics.median(w for w, _ in figures["consim.http.client.Client (kept)"])
    kept_cpu = statistics.median(c for _, c in figures["consim.http.client.Client (kept)"])
    print(f"{requests} sequential PUTs x {rounds} rounds on {address} (medians of the rounds)")
    width = max(map(len, figures))
    for name, runs in figures.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(
            f"{name:<{width}}  {wall:6.2f} ms wall  {cpu:6.2f} ms CPU per request  "
            f"({wall / kept_wall:5.1f}x / {cpu / kept_cpu:5.1f}x the kept client)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="per way per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating order")
    parser.add_argument("--http-port", type=int, default=18890)
    args = parser.parse_args()
    trio.run(run, args.requests, args.rounds, args.http_port)


if __name__ == "__main__":
    main()
