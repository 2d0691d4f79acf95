"""``consim bench forwarding`` in virtual time: what the network model alone makes each path cost.

The cluster (dc1 with 3 servers, and dc2 with 3 when the ``dc`` target is measured) runs in the
simulator under a :class:`~consim.spec.NetworkModel`; HTTP is called in process, as in every
virtual run, so a request's latency is the virtual time between sending it and its answer: the
RPC hops it made and the Raft round trips it waited for, with no CPU cost at all. Same options and
seed, same figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from consim.bench.targets import BenchResult, RunFigures, target_paths
from consim.spec import ClusterSpec, NetworkModel

if TYPE_CHECKING:
    from consim.cluster import Cluster

CLUSTER_TARGETS = ("direct", "forwarded", "stale", "dc")


def run_virtual_bench(
    *,
    model: NetworkModel,
    targets: tuple[str, ...] = CLUSTER_TARGETS,
    endpoint: str = "/v1/operator/raft/configuration",
    consistency: str = "default",
    rate: float | None = 200.0,
    connections: int | None = None,
    duration: float = 2.0,
    runs: int = 1,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Each run builds a fresh cluster (seed ``seed + run``), waits for its leaders, then loads
    every target in turn for ``duration`` virtual seconds: ``rate`` requests per second sent on
    schedule (open loop) or ``connections`` clients each sending its next request when the
    previous one is answered (closed loop)."""
    from consim.runtime import run_virtual

    unknown = [t for t in targets if t not in CLUSTER_TARGETS]
    if unknown:
        raise ValueError(
            f"virtual time has no target {', '.join(unknown)} (the floor is live only)"
        )
    if (rate is None) == (connections is None):
        raise ValueError("give exactly one of rate and connections")
    paths = target_paths(endpoint, consistency)
    datacenters = (("dc1", 3), ("dc2", 3)) if "dc" in targets else (("dc1", 3),)
    result = BenchResult(
        "virtual",
        endpoint,
        consistency,
        {
            "network": model.describe(),
            "rate": rate,
            "connections": connections,
            "duration_s": duration,
            "runs": runs,
            "seed": seed,
            "clock": "virtual seconds",
        },
        {name: [] for name in targets},
    )
    for run in range(runs):
        spec = ClusterSpec(
            datacenters=datacenters, seed=seed + run, raft_multiplier=1.0, network=model
        )

        async def body(cluster: Cluster, run: int = run) -> None:
            await _ready(cluster, "dc" in targets)
            leader = cluster.leader("dc1")
            assert leader is not None
            follower = sorted(n.name for n in cluster.followers("dc1"))[0]
            on = {
                "direct": leader.name,
                "forwarded": follower,
                "stale": follower,
                "dc": leader.name,
            }
            order = list(targets) if run % 2 == 0 else list(reversed(targets))
            for name in order:
                figures = await _load(cluster, on[name], paths[name], rate, connections, duration)
                result.runs[name].append(figures)
                if progress is not None:
                    s = figures.summary()
                    progress(
                        f"run {run + 1}  {name:<10} {s['requests']:>6} requests  "
                        f"p50 {s['p50_ms']} ms  p99 {s['p99_ms']} ms  errors {s['errors']}"
                    )
            if cluster.leader("dc1") is not leader:
                result.notes.append(f"run {run + 1}: dc1's leadership changed during the run")

        run_virtual(spec, body)
    return result


async def _ready(cluster: Cluster, wan: bool) -> None:
    """Leaders elected (and, for ``?dc``, dc1 knowing a route to dc2), before any measurement."""
    import trio

    await cluster.wait_for_leader("dc1", within=60)
    if not wan:
        return
    await cluster.wait_for_leader("dc2", within=60)
    leader = cluster.leader("dc1")
    assert leader is not None
    with trio.move_on_after(60):
        while True:
            status, _, _ = await cluster.http(leader.name, "GET", "/v1/status/leader?dc=dc2")
            if status == 200:
                return
            await trio.sleep(0.1)
    raise RuntimeError("dc1 never found a route to dc2")


async def _load(
    cluster: Cluster,
    name: str,
    path: str,
    rate: float | None,
    connections: int | None,
    duration: float,
) -> RunFigures:
    import trio

    latencies: list[float] = []
    samples: list[tuple[float, float]] = []
    errors = 0
    start = trio.current_time()
    until = start + duration

    async def one() -> None:
        nonlocal errors
        sent = trio.current_time()
        status, _, _ = await cluster.http(name, "GET", path)
        if status == 200 or status == 404:  # 404: a KV read of a missing key was answered
            latency = trio.current_time() - sent
            latencies.append(latency)
            samples.append((sent, latency))
        else:
            errors += 1

    async with trio.open_nursery() as nursery:
        if rate is not None:
            interval = 1.0 / rate
            k = 0
            while start + k * interval < until:
                nursery.start_soon(one)
                k += 1
                await trio.sleep_until(start + k * interval)
        else:
            assert connections is not None

            async def client() -> None:
                while trio.current_time() < until:
                    await one()

            for _ in range(connections):
                nursery.start_soon(client)
    elapsed = trio.current_time() - start
    samples.sort()
    return RunFigures(latencies, elapsed, errors, samples, tool="virtual")
