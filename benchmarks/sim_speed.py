"""How much faster than real time does consim simulate a busy cluster?

A 5-server datacenter (raft multiplier 1) runs in virtual time (``consim.runtime.run_virtual``:
VirtualClock + SimNetwork) for 600 virtual seconds while a client issues 50 ``KVS.Apply`` set
writes per virtual second. Writes enter through ``ServerNode.rpc`` on the servers in turn, so four
in five are forwarded to the leader over the simulated network, as Consul's ``Server.RPC`` does.

Prints wall time, the virtual/real ratio (target: >= 200x), how many writes committed and the
simulated network's delivered message count. ``--profile`` runs it under cProfile and prints the
hottest functions (own time and cumulative time).

    .venv/bin/python benchmarks/sim_speed.py [--virtual 600] [--rate 50] [--servers 5]
                                             [--via any|leader] [--seed 1] [--profile]
"""

from __future__ import annotations

from _requires import require  # benchmarks/ is sys.path[0] when a script runs

require(__file__)

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import trio  # noqa: E402

from consim.cluster import Cluster  # noqa: E402
from consim.net.network import RpcError  # noqa: E402
from consim.runtime import run_virtual  # noqa: E402
from consim.spec import ClusterSpec  # noqa: E402

TARGET_RATIO = 200.0


def run(
    *, servers: int, virtual: float, rate: float, via: str, seed: int, progress_every: float
) -> dict[str, float]:
    spec = ClusterSpec(datacenters=(("dc1", servers),), seed=seed, raft_multiplier=1)
    stats = {"sent": 0, "ok": 0, "failed": 0}

    async def write(cluster: Cluster, name: str, i: int) -> None:
        node = cluster.node(name)
        args = {"Op": "set", "DirEnt": {"Key": f"bench/{i % 1000}", "Value": b"v" * 64}}
        try:
            await node.rpc("KVS.Apply", args)
            stats["ok"] += 1
        except RpcError:
            stats["failed"] += 1

    async def body(cluster: Cluster) -> dict[str, float]:
        wall0 = time.perf_counter()
        leader = await cluster.wait_for_leader("dc1", within=30)
        t0 = trio.current_time()
        names = list(cluster.servers)
        period = 1.0 / rate if rate > 0 else 1.0
        next_report = t0 + progress_every
        i = 0
        async with trio.open_nursery() as nursery:
            while trio.current_time() - t0 < virtual:
                if via == "leader":
                    current = cluster.leader("dc1") or leader
                    name = current.name
                else:
                    name = names[i % len(names)]
                if rate > 0:
                    nursery.start_soon(write, cluster, name, i)
                    stats["sent"] += 1
                i += 1
                await trio.sleep(period)
                now = trio.current_time()
                if now >= next_report:
                    wall = time.perf_counter() - wall0
                    print(
                        f"  virtual {now - t0:6.0f}s  wall {wall:6.2f}s  "
                        f"ratio {(now - t0) / wall:6.1f}x  committed {stats['ok']}",
                        flush=True,
                    )
                    next_report += progress_every
        wall = time.perf_counter() - wall0
        net = cluster.net
        return {
            "virtual": trio.current_time() - t0,
            "wall": wall,
            "delivered": float(getattr(net, "delivered", 0)),
            "commit_index": float(cluster.leader("dc1").core.commit_index),  # type: ignore[union-attr]
        }

    result, events = run_virtual(spec, body)
    result.update({k: float(v) for k, v in stats.items()})
    result["events"] = float(len(events.events))
    return result


def print_by_file(stats: object) -> None:
    """Own time summed per source file (trio's internals lumped together)."""
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    by_file: dict[str, float] = {}
    for (filename, _line, _func), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        if "/trio/" in filename:
            key = "trio (scheduler, cancel scopes, channels)"
        elif "/consim/" in filename:
            key = "consim/" + filename.split("/consim/", 1)[1]
        elif "site-packages" in filename:
            key = filename.split("site-packages/", 1)[1].split("/", 1)[0]
        elif filename.startswith("~") or filename.startswith("<"):
            key = "builtins/C"
        else:
            key = "stdlib:" + os.path.basename(filename)
        by_file[key] = by_file.get(key, 0.0) + tottime
    print(f"\n--- own time by file (total {total:.2f} s) ---")
    for key, t in sorted(by_file.items(), key=lambda kv: -kv[1])[:20]:
        print(f"  {100 * t / total:5.1f}%  {t:6.2f} s  {key}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=5)
    parser.add_argument("--virtual", type=float, default=600.0, help="virtual seconds to run")
    parser.add_argument("--rate", type=float, default=50.0, help="writes per virtual second")
    parser.add_argument(
        "--via", choices=("any", "leader"), default="any", help="server the writes enter through"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--progress", type=float, default=60.0, help="virtual s between lines")
    parser.add_argument("--profile", action="store_true", help="run under cProfile")
    parser.add_argument("--top", type=int, default=25, help="rows of profile output")
    args = parser.parse_args()

    print(
        f"sim_speed: {args.servers} servers, raft multiplier 1, {args.rate:g} KVS.Apply/s via "
        f"{args.via}, {args.virtual:g} virtual s (seed {args.seed})",
        flush=True,
    )
    kwargs = dict(
        servers=args.servers,
        virtual=args.virtual,
        rate=args.rate,
        via=args.via,
        seed=args.seed,
        progress_every=args.progress,
    )
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        r = run(**kwargs)  # type: ignore[arg-type]
        profiler.disable()
        stats = pstats.Stats(profiler)
        print_by_file(stats)
        print("\n--- top by own time (tottime) ---")
        stats.sort_stats("tottime").print_stats(args.top)
        print("--- top by cumulative time ---")
        stats.sort_stats("cumulative").print_stats(args.top)
    else:
        r = run(**kwargs)  # type: ignore[arg-type]

    ratio = r["virtual"] / r["wall"]
    print()
    print(f"virtual time        {r['virtual']:.1f} s")
    print(f"wall time           {r['wall']:.2f} s")
    print(f"virtual/real ratio  {ratio:.1f}x   (target >= {TARGET_RATIO:g}x)")
    print(
        f"writes              {r['sent']:.0f} sent, {r['ok']:.0f} committed, {r['failed']:.0f} failed"
    )
    print(f"leader commit index {r['commit_index']:.0f}")
    print(f"network deliveries  {r['delivered']:.0f} ({r['delivered'] / r['wall']:.0f}/wall s)")
    print(f"events logged       {r['events']:.0f}")
    print(f"target met          {'yes' if ratio >= TARGET_RATIO else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
