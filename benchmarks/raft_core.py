"""Throughput of the pure Raft cores through the harness (no faults), and simulation speed.

Prints committed entries per wall second for 3 and 5 servers (clients keep the leader's log
busy, batched as Consul's RPC fan-in would), and how many virtual seconds the harness simulates
per wall second for an idle and a faulty cluster.

    .venv/bin/python benchmarks/raft_core.py [--entries 20000] [--idle 300] [--fault-seeds 40]
"""

from __future__ import annotations

from _requires import require  # benchmarks/ is sys.path[0] when a script runs

require(__file__)

import argparse
import time

from consim.raft.config import RaftConfig
from consim.raft.harness import Harness, random_run


def throughput(n: int, entries: int, batch: int = 32) -> tuple[float, float, int]:
    h = Harness(
        n, seed=1, config=RaftConfig.for_multiplier(1), check=False, wire=False, trace=False
    )
    h.run_for(5)
    leader = h.leader()
    assert leader is not None and leader.core is not None
    start_commit = leader.core.commit_index
    t0 = time.perf_counter()
    v0 = h.now
    sent = 0
    while leader.core.commit_index - start_commit < entries:
        if sent < entries:
            for _ in range(batch):
                leader.core.propose(b"x" * 64, h.now)
                sent += 1
            h._after(leader)
        h.run_for(0.005)
    wall = time.perf_counter() - t0
    return entries / wall, (h.now - v0), h.messages_delivered


def sim_speed(n: int, virtual: float, checked: bool) -> float:
    h = Harness(n, seed=2, check=checked, trace=False)
    t0 = time.perf_counter()
    h.run_for(virtual)
    return virtual / (time.perf_counter() - t0)


def faulty_speed(seeds: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    virtual = 0.0
    for s in range(seeds):
        h = random_run(s, trace=False)
        virtual += h.now
    wall = time.perf_counter() - t0
    return virtual / wall, seeds / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--entries", type=int, default=20_000, help="entries committed per cluster size"
    )
    parser.add_argument(
        "--idle", type=float, default=300.0, help="virtual seconds of the idle clusters"
    )
    parser.add_argument(
        "--fault-seeds", type=int, default=40, help="random fault runs (the safety test's)"
    )
    args = parser.parse_args()
    rows = []
    for n in (3, 5):
        eps, vsec, msgs = throughput(n, args.entries)
        rows.append(
            (f"commit throughput, {n} servers", f"{eps:,.0f} entries/s", f"{vsec:.2f} virtual s")
        )
    for n in (3, 5):
        rows.append(
            (
                f"idle cluster, {n} servers, checked",
                f"{sim_speed(n, args.idle, True):,.0f} virtual s / wall s",
                "",
            )
        )
    vps, sps = faulty_speed(args.fault_seeds)
    rows.append(
        ("random faults (safety test runs)", f"{vps:,.0f} virtual s / wall s", f"{sps:.1f} seeds/s")
    )
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'benchmark':<{w0}}  {'result':>{w1}}  note")
    print(f"{'-' * w0}  {'-' * w1}  ----")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:>{w1}}  {c}")


if __name__ == "__main__":
    main()
