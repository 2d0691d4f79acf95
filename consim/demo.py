"""A leader-loss run in virtual time, printed as Consul log lines (``consim demo``)."""

from __future__ import annotations

import sys
from typing import TextIO

from consim.cluster import Cluster
from consim.events import NO_NODE, format_hclog, level_enabled
from consim.runtime import run_virtual
from consim.spec import ClusterSpec


def leader_loss_demo(*, seed: int = 7, log_level: str = "INFO", out: TextIO = sys.stdout) -> int:
    spec = ClusterSpec(datacenters=(("dc1", 3),), seed=seed, raft_multiplier=1)

    async def body(cluster: Cluster) -> tuple[str, str, float]:
        first = await cluster.wait_for_leader("dc1", within=10)
        cluster.events.emit(
            NO_NODE, "note", {"leader": first.name}, message="leader elected; killing it"
        )
        killed_at = cluster.events.now()
        cluster.kill(first.name)
        second = await cluster.wait_for_leader("dc1", within=10, exclude={first.name})
        took = cluster.events.now() - killed_at
        follower = next(n for n in cluster.followers("dc1") if n.name != second.name)
        status, _, answer = await cluster.http(
            follower.name, "GET", "/v1/operator/raft/configuration"
        )
        cluster.events.emit(
            NO_NODE,
            "note",
            {"server": follower.name, "status": status},
            message="raft configuration via a follower (forwarded to the new leader)",
        )
        return first.name, second.name, took

    (first, second, took), events = run_virtual(spec, body)
    for event in events.events:
        if level_enabled(event.level, log_level):
            print(
                format_hclog(event, virtual=True) + (f"  [{event.node}]" if event.node else ""),
                file=out,
            )
    print(
        f"\n==> leader {first} killed; {second} took over after {took:.3f}s of virtual time",
        file=out,
    )
    print(f"==> trace hash {events.trace_hash()}", file=out)
    return 0
