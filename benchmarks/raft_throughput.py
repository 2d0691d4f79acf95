"""Live Raft write throughput and latency: consim (3 servers on loopback, one process) vs
PySyncObj and hashicorp/raft 1.1.2.

consim: the same cluster ``consim up`` runs (``consim.runtime.start_live_cluster_parts``: SocketNetwork,
TCP between 127.0.0.1-3:8300, in-memory storage, raft multiplier 1, real clock), all three servers
in this one process and one trio loop. Writes are ``KVS.Apply`` set with a 64-byte value, issued
through the leader's ``ServerNode.rpc`` (``--via rpc``, default: no client hop, so this measures
Raft replication and the state machine), through a follower's ``ServerNode.rpc`` (``--via forward``:
plus one forwarding RPC hop), or as ``PUT /v1/kv/<key>`` over HTTP to the leader (``--via http``:
plus the HTTP server, quart and httpx in the same process).

1. Throughput: for each ``--concurrency`` level (default 64 and 256) that many writers keep a
   write in flight each for ``--duration`` seconds; committed writes per second. (PySyncObj's
   leader sends appends every 100 ms by default, so its rate scales with the writes in flight.)
2. Sequential latency: ``--sequential`` writes one after another; p50/p99/max.

The same two measurements run on PySyncObj (``pip install -e '.[bench]'``; the script stops at
once if it is missing, unless ``--no-pysyncobj``), 3 processes on loopback
(default config, in-memory log; a ``@replicated`` ``set(key, value)`` with the same 64-byte value,
issued on the leader with callbacks for throughput and ``sync=True`` for latency, default
``--pysyncobj-sequential 200`` since each takes ~100 ms), and the ratios
are printed. Targets: consim throughput >= PySyncObj's; consim sequential p50 <= 1 ms.

hashicorp/raft 1.1.2 runs in the same invocation (``--no-hashicorp`` skips it): three Go nodes in
one process on loopback (NetworkTransport over TCP, in-memory stores, 64-byte writes on the
leader; benchmarks/go_raft, built from Debian's sources like the Go test judges), once with
GOMAXPROCS=1 and once at the default. Targets: consim throughput >= hashicorp's at one core at
both depths; consim sequential p50 within 4x of it. hashicorp's writes are ``raft.Apply`` with a
counter for a state machine; consim's go through the KVS.Apply endpoint (ACL check, command
encoding) and a real KV table on every server. The two halves run one after the other, so a load
change between them moves the ratio: ``--rounds N`` runs consim and hashicorp at one core
alternately N times and reports the median of the rounds' ratios (each round's printed too).

    .venv/bin/python benchmarks/raft_throughput.py [--concurrency 64,256] [--duration 5]
        [--sequential 2000] [--pysyncobj-sequential 200] [--via rpc|forward|http]
        [--http-port 8500] [--no-pysyncobj] [--no-hashicorp] [--rounds 1]
        [--snapshot-threshold N] [--snapshot-interval SECONDS]

Neither side snapshots within a run by default: consim checks its threshold every random
30-60 s as Consul does (raft_snapshot_interval), hashicorp/raft's DefaultConfig every 120-240 s.
``--snapshot-interval 0`` makes consim snapshot as soon as the threshold is crossed (what it did
before it had the interval), to see what a snapshot in the middle of the load costs.
"""

from __future__ import annotations

from _requires import require  # benchmarks/ is sys.path[0] when a script runs

require(__file__)

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from consim.bench.stats import percentile as nearest_rank

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

VALUE = b"v" * 64
TARGET_P50_MS = 1.0


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100), as ``consim bench`` computes it."""
    return nearest_rank(sorted_values, p / 100)


def latency_summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "p50_ms": percentile(s, 50) * 1000,
        "p99_ms": percentile(s, 99) * 1000,
        "max_ms": s[-1] * 1000 if s else math.nan,
        "mean_ms": sum(s) / len(s) * 1000 if s else math.nan,
    }


# ------------------------------------------------------------------------------------- consim


def choose_subnet(args: argparse.Namespace) -> int:
    """127.0.0.k like ``consim up``; if another cluster holds those ports, 127.0.60+.k instead."""
    if args.subnet is not None:
        return int(args.subnet)
    from consim.live import free_host_block

    try:
        return free_host_block([3], args.http_port, (0, *range(60, 100)))
    except RuntimeError:
        raise SystemExit("no free 127.0.N.1-3:8300 found; pass --subnet") from None


def run_consim(args: argparse.Namespace) -> dict[str, Any]:
    import trio

    from consim.net.network import RpcError
    from consim.runtime import start_live_cluster_parts
    from consim.spec import ClusterSpec

    subnet = choose_subnet(args)
    if subnet != 0:
        print(f"  consim: 127.0.0.x:8300 busy here, using 127.0.{subnet}.1-3", flush=True)
    spec = ClusterSpec(
        datacenters=(("dc1", 3),),
        seed=1,
        raft_multiplier=1,
        http_port=args.http_port,
        host_block=subnet,
        snapshot_threshold=args.snapshot_threshold,
        snapshot_interval=args.snapshot_interval,
    )
    out: dict[str, Any] = {}

    async def main() -> None:
        cluster, _events = start_live_cluster_parts(spec)
        async with trio.open_nursery() as nursery:
            await nursery.start(cluster.net.run)
            await nursery.start(cluster.run)
            leader = await cluster.wait_for_leader("dc1", within=30)
            print(f"  consim: leader {leader.name} ({leader.address})", flush=True)
            follower = next(n for n in cluster.servers.values() if n.name != leader.name)
            client = None
            if args.via == "http":
                import httpx

                limits = httpx.Limits(max_connections=max(args.levels) + 8)
                client = httpx.AsyncClient(
                    base_url=f"http://{leader.spec.http_address}", limits=limits, timeout=30
                )

            async def write(i: int) -> None:
                key = f"bench/{i % 1000}"
                if args.via == "http":
                    assert client is not None
                    response = await client.put(f"/v1/kv/{key}", content=VALUE)
                    if response.status_code != 200:
                        raise RpcError(f"HTTP {response.status_code}: {response.text}")
                    return
                node = leader if args.via == "rpc" else follower
                await node.rpc("KVS.Apply", {"Op": "set", "DirEnt": {"Key": key, "Value": VALUE}})

            async def measure(level: int) -> dict[str, float]:
                done = 0
                errors = 0
                t0 = time.perf_counter()
                deadline = t0 + args.duration
                counter = iter(range(10**9))

                async def writer() -> None:
                    nonlocal done, errors
                    while time.perf_counter() < deadline:
                        try:
                            await write(next(counter))
                            done += 1
                        except RpcError:
                            errors += 1

                async def progress() -> None:
                    last = 0
                    while True:
                        await trio.sleep(1.0)
                        print(
                            f"  consim: {time.perf_counter() - t0:4.1f}s  {done - last:6d} "
                            f"writes/s (in flight {level})",
                            flush=True,
                        )
                        last = done

                async with trio.open_nursery() as inner:
                    inner.start_soon(progress)
                    async with trio.open_nursery() as writers:
                        for _ in range(level):
                            writers.start_soon(writer)
                    inner.cancel_scope.cancel()
                elapsed = time.perf_counter() - t0
                return {
                    "rate": done / elapsed,
                    "writes": done,
                    "errors": errors,
                    "elapsed": elapsed,
                }

            # warm-up: connections open, code paths hot
            for i in range(200):
                await write(i)

            # 1. throughput with many writes in flight, per concurrency level
            out["throughput"] = {}
            for level in args.levels:
                out["throughput"][level] = await measure(level)
            out["commit_index"] = leader.core.commit_index if leader.core else None

            # 2. sequential latency
            samples: list[float] = []
            for i in range(args.sequential):
                s = time.perf_counter()
                await write(i)
                samples.append(time.perf_counter() - s)
                if (i + 1) % max(1, args.sequential // 4) == 0:
                    print(f"  consim: sequential {i + 1}/{args.sequential}", flush=True)
            out["latency"] = latency_summary(samples)
            if client is not None:
                await client.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    return out


# ------------------------------------------------------------------------------------ pysyncobj


def pysyncobj_node(args: argparse.Namespace) -> int:
    """Child process: one PySyncObj node; the leader runs the measurements and prints RESULT."""
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class KV(SyncObj):  # type: ignore[misc]
        def __init__(self, me: str, partners: list[str]) -> None:
            super().__init__(me, partners, SyncObjConf(dynamicMembershipChange=False))
            self._data: dict[str, bytes] = {}

        @replicated  # type: ignore[misc]
        def set(self, key: str, value: bytes) -> bool:
            self._data[key] = value
            return True

    addresses = [f"127.0.0.1:{p}" for p in args.ports.split(",")]
    me = addresses[args.pysyncobj_node]
    obj = KV(me, [a for a in addresses if a != me])
    deadline = time.time() + 30
    while obj._getLeader() is None and time.time() < deadline:
        time.sleep(0.01)
    if not obj._isLeader():
        while True:  # followers serve until the parent terminates us
            time.sleep(1)
    print("LEADER", flush=True)

    for i in range(200):  # warm-up
        obj.set(f"bench/{i % 1000}", VALUE, sync=True, timeout=10)

    def measure(level: int) -> dict[str, float]:
        in_flight = threading.BoundedSemaphore(level)
        lock = threading.Lock()
        counts = {"done": 0, "errors": 0}

        def callback(result: Any, error: Any) -> None:
            with lock:
                if error == 0:  # FAIL_REASON.SUCCESS
                    counts["done"] += 1
                else:
                    counts["errors"] += 1
            in_flight.release()

        t0 = time.perf_counter()
        end = t0 + args.duration
        next_report = t0 + 1.0
        last = 0
        i = 0
        while time.perf_counter() < end:
            in_flight.acquire()
            obj.set(f"bench/{i % 1000}", VALUE, callback=callback)
            i += 1
            now = time.perf_counter()
            if now >= next_report:
                print(f"PROGRESS {now - t0:.1f} {counts['done'] - last} {level}", flush=True)
                last = counts["done"]
                next_report += 1.0
        for _ in range(level):  # drain: every slot back
            in_flight.acquire()
        elapsed = time.perf_counter() - t0
        return {
            "rate": counts["done"] / elapsed,
            "writes": counts["done"],
            "errors": counts["errors"],
            "elapsed": elapsed,
        }

    throughput = {level: measure(level) for level in args.levels}
    samples: list[float] = []
    for k in range(args.pysyncobj_sequential):
        s = time.perf_counter()
        obj.set(f"bench/{k % 1000}", VALUE, sync=True, timeout=10)
        samples.append(time.perf_counter() - s)
    result = {"throughput": throughput, "latency": latency_summary(samples)}
    print("RESULT " + json.dumps(result), flush=True)
    time.sleep(0.5)
    os._exit(0)


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_pysyncobj(args: argparse.Namespace) -> dict[str, Any]:
    ports = ",".join(str(p) for p in free_ports(3))
    tmp = tempfile.mkdtemp(prefix="pysyncobj-bench-")
    procs: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        for k in range(3):
            path = os.path.join(tmp, f"node{k}.out")
            with open(path, "wb") as f:
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--pysyncobj-node",
                    str(k),
                    "--ports",
                    ports,
                    "--concurrency",
                    ",".join(str(level) for level in args.levels),
                    "--duration",
                    str(args.duration),
                    "--pysyncobj-sequential",
                    str(args.pysyncobj_sequential),
                ]
                procs.append((subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT), path))
        deadline = (
            time.time() + 60 + args.duration * len(args.levels) + args.pysyncobj_sequential * 0.2
        )
        seen: dict[str, int] = {}
        while time.time() < deadline:
            for proc, path in procs:
                with open(path) as f:
                    lines = f.read().splitlines()
                for line in lines[seen.get(path, 0) :]:
                    if line.startswith("RESULT "):
                        result = dict(json.loads(line[len("RESULT ") :]))
                        result["throughput"] = {int(k): v for k, v in result["throughput"].items()}
                        return result
                    if line.startswith("PROGRESS "):
                        _, t, n, level = line.split()
                        print(
                            f"  pysyncobj: {float(t):4.1f}s  {int(n):6d} writes/s "
                            f"(in flight {level})",
                            flush=True,
                        )
                    elif line == "LEADER":
                        print(
                            f"  pysyncobj: leader is node {procs.index((proc, path))}", flush=True
                        )
                    elif line.strip():
                        print(f"  pysyncobj[{path[-9:-4]}]: {line}", flush=True)
                seen[path] = len(lines)
                if proc.poll() is not None and proc.returncode != 0:
                    raise RuntimeError(f"pysyncobj node exited with {proc.returncode}")
            time.sleep(0.1)
        raise RuntimeError("pysyncobj benchmark timed out")
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


# ------------------------------------------------------------------------------ hashicorp/raft


def run_hashicorp(args: argparse.Namespace, gomaxprocs: int | None) -> dict[str, Any]:
    """hashicorp/raft 1.1.2 (Go, built from Debian's sources by consim.testing.gobuild):
    3 nodes in one process on loopback, NetworkTransport over TCP, in-memory stores, 64-byte
    writes on the leader (benchmarks/go_raft/main.go). ``gomaxprocs`` 1 = one core."""
    from pathlib import Path

    from consim.testing.gobuild import build

    cache = Path(__file__).resolve().parent / ".cache" / "go"
    binary = build(Path(__file__).parent / "go_raft", "github.com/hashicorp/raft", cache=cache)
    env = dict(os.environ)
    env.pop("GOMAXPROCS", None)
    if gomaxprocs is not None:
        env["GOMAXPROCS"] = str(gomaxprocs)
    cmd = [
        str(binary),
        "-concurrency",
        ",".join(str(level) for level in args.levels),
        "-duration",
        str(args.duration),
        "-sequential",
        str(args.sequential),
    ]
    timeout = 60 + args.duration * len(args.levels) + args.sequential * 0.05
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result = dict(json.loads(line[len("RESULT ") :]))
            result["throughput"] = {int(k): v for k, v in result["throughput"].items()}
            return result
    raise RuntimeError(f"hashicorp/raft benchmark failed: {done.stderr[-2000:]}")


def run_consim_process() -> dict[str, Any]:
    """``run_consim`` in a fresh Python process with this invocation's options: each round
    starts from an empty heap and fresh sockets, as the Go side's process does (several rounds in
    one process measured later rounds on the heap and frozen objects of the earlier clusters)."""
    cmd = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--consim-child"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        result: dict[str, Any] | None = None
        for line in child.stdout:
            if line.startswith("RESULT "):
                result = dict(json.loads(line[len("RESULT ") :]))
            elif not line.startswith("raft_throughput:"):
                print(line, end="", flush=True)
    if child.returncode != 0 or result is None:
        raise RuntimeError(f"the consim round's process failed (exit {child.returncode})")
    result["throughput"] = {int(k): v for k, v in result["throughput"].items()}
    return result


# ----------------------------------------------------------------------------------------- main


def show(name: str, r: dict[str, Any]) -> None:
    for level, t in sorted(r["throughput"].items()):
        print(
            f"{name:10s} {level:4d} in flight: {t['rate']:8.0f} committed writes/s "
            f"({t['writes']} in {t['elapsed']:.1f}s, {t['errors']} errors)"
        )
    lat = r["latency"]
    print(
        f"{name:10s} sequential: p50 {lat['p50_ms']:.3f} ms  p99 {lat['p99_ms']:.3f} ms  "
        f"max {lat['max_ms']:.3f} ms  mean {lat['mean_ms']:.3f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--concurrency", default="64,256", help="writes in flight; comma-separated levels"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="throughput phase seconds")
    parser.add_argument("--sequential", type=int, default=2000, help="sequential writes")
    parser.add_argument(
        "--pysyncobj-sequential",
        type=int,
        default=200,
        help="sequential writes on PySyncObj (each waits for its 100 ms append period)",
    )
    parser.add_argument("--via", choices=("rpc", "forward", "http"), default="rpc")
    parser.add_argument("--http-port", type=int, default=8500)
    parser.add_argument(
        "--subnet", type=int, default=None, help="servers on 127.0.N.1-3 (default: 0 if free)"
    )
    parser.add_argument("--no-pysyncobj", action="store_true")
    parser.add_argument(
        "--no-hashicorp", action="store_true", help="skip the hashicorp/raft (Go) cluster"
    )
    parser.add_argument(
        "--snapshot-threshold",
        type=int,
        default=None,
        help="consim's raft_snapshot_threshold (default 8192)",
    )
    parser.add_argument(
        "--snapshot-interval",
        type=float,
        default=None,
        help="consim's raft_snapshot_interval in seconds (default Consul's 30: no snapshot within "
        "a run, as on hashicorp's side); 0 snapshots as soon as the threshold is crossed",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run consim and hashicorp/raft at one core alternately this many times; "
        "the ratios are the median of the rounds' (a load change between halves moves one round)",
    )
    parser.add_argument("--pysyncobj-node", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--consim-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ports", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.levels = [int(x) for x in str(args.concurrency).split(",") if x]
    if args.pysyncobj_node is not None:
        return pysyncobj_node(args)
    if args.consim_child:
        result = run_consim(args)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    if not args.no_pysyncobj:
        # The target is a ratio to PySyncObj: without it there is nothing to compare, so say so
        # now rather than after the consim half has run.
        require(__file__, "pysyncobj")

    print(
        f"raft_throughput: 3 servers on loopback, raft multiplier 1, 64-byte values, "
        f"{args.concurrency} in flight for {args.duration:g}s each, "
        f"{args.sequential} sequential; "
        f"consim writes via {args.via}",
        flush=True,
    )
    rounds: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for round_no in range(max(1, args.rounds)):
        if args.rounds > 1:
            print(f"  round {round_no + 1} of {args.rounds}", flush=True)
        consim = run_consim_process() if args.rounds > 1 else run_consim(args)
        one = None
        if not args.no_hashicorp:
            print("  hashicorp/raft: running (go 1 core)", flush=True)
            one = run_hashicorp(args, 1)
        rounds.append((consim, one))
    theirs = None
    if args.no_pysyncobj:
        print("  pysyncobj: skipped (--no-pysyncobj)")
    else:
        theirs = run_pysyncobj(args)
    go: dict[str, dict[str, Any]] = {}
    if args.no_hashicorp:
        print("  hashicorp/raft: skipped (--no-hashicorp)")
    else:
        print("  hashicorp/raft: running (go default)", flush=True)
        go["go 1 core"] = rounds[-1][1]  # type: ignore[assignment]
        go["go default"] = run_hashicorp(args, None)
    print()
    for i, (consim, one) in enumerate(rounds):
        show("consim" if len(rounds) == 1 else f"consim (round {i + 1})", consim)
        if one is not None and len(rounds) > 1:
            show(f"go 1 core (round {i + 1})", one)
    for label, result in go.items():
        if len(rounds) == 1 or label != "go 1 core":
            show(label, result)
    consim = rounds[-1][0]  # the last round's, for the single-run comparisons below
    if go:
        print()
        for level in args.levels:
            each = [
                c["throughput"][level]["rate"] / o["throughput"][level]["rate"] for c, o in rounds
            ]
            ratio = statistics.median(each)
            spread = f" (rounds: {', '.join(f'{r:.2f}' for r in each)})" if len(each) > 1 else ""
            print(
                f"consim/hashicorp(1 core) throughput at {level:4d} in flight: {ratio:.2f}x  "
                f"(target >= 1: {'met' if ratio >= 1 else 'NOT met'}){spread}; "
                f"/hashicorp(default): "
                f"{consim['throughput'][level]['rate'] / go['go default']['throughput'][level]['rate']:.2f}x"
            )
        each = [c["latency"]["p50_ms"] / o["latency"]["p50_ms"] for c, o in rounds]
        lat_ratio = statistics.median(each)
        spread = f" (rounds: {', '.join(f'{r:.2f}' for r in each)})" if len(each) > 1 else ""
        print(
            f"consim/hashicorp(1 core) sequential p50: {lat_ratio:.2f}x  "
            f"(target <= 4: {'met' if lat_ratio <= 4 else 'NOT met'}){spread}"
        )
    if theirs is not None:
        show("pysyncobj", theirs)
        print()
        for level in args.levels:
            ratio = consim["throughput"][level]["rate"] / theirs["throughput"][level]["rate"]
            print(
                f"consim/pysyncobj throughput at {level:4d} in flight: {ratio:.2f}x  "
                f"(target >= 1: {'met' if ratio >= 1 else 'NOT met'})"
            )
        lat_ratio = consim["latency"]["p50_ms"] / theirs["latency"]["p50_ms"]
        print(f"consim/pysyncobj sequential p50: {lat_ratio:.3f}x  (lower is better)")
    p50 = consim["latency"]["p50_ms"]
    print(
        f"consim sequential p50 {p50:.3f} ms (target <= {TARGET_P50_MS:g} ms): "
        f"{'met' if p50 <= TARGET_P50_MS else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
