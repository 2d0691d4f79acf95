"""Cost of leader forwarding on GET /v1/operator/raft/configuration, against the framework floor.

The measurement is ``consim bench forwarding --live`` (``consim/bench/live.py``, described there):
the cluster ``consim up`` runs in a child process with the floors beside it, load from another
process (wrk, else the built-in generator), targets interleaved over ``--runs``; this script runs
it with the repository's settings, prints the same table plus the targets below, and writes
``benchmarks/out/forwarding.json`` and the SVG plots (latency CDF, latency over time) there.

Targets: direct/floor >= 0.85 (floor served from the cluster's process); forwarded/direct
throughput >= 0.90 with the p99 ratio <= 1.2.

    .venv/bin/python benchmarks/forwarding.py [--runs 5] [--duration 3] [--connections 16] [--port 18700]
    .venv/bin/python benchmarks/forwarding.py --virtual [--lan-latency 2ms]   # the model only
"""

from __future__ import annotations

from _requires import require  # benchmarks/ is sys.path[0] when a script runs

require(__file__)

import argparse
import statistics
import sys
from pathlib import Path

from consim.bench.cli import _duration
from consim.bench.live import run_live_bench
from consim.bench.targets import format_table, write_json, write_plots
from consim.bench.virtual import run_virtual_bench
from consim.spec import NetworkModel

OUT = Path(__file__).parent / "out"
GATES = (
    ("direct/floor rps", ">=", 0.85),
    ("forwarded/direct rps", ">=", 0.90),
    ("forwarded/direct p99", "<=", 1.2),
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5, help="interleaved repetitions (medians shown)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per target per run")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--port", type=int, default=18700)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--host-block", type=int, help="127.0.N.x for the servers (default: free one)")
    ap.add_argument("--virtual", action="store_true", help="virtual time: the network model only")
    ap.add_argument("--lan-latency", type=_duration, default=0.002)
    ap.add_argument("--wan-latency", type=_duration, default=0.040)
    args = ap.parse_args()
    progress = print if sys.stdout.isatty() else None
    if args.virtual:
        model = NetworkModel(lan_latency=args.lan_latency, wan_latency=args.wan_latency)
        result = run_virtual_bench(
            model=model, duration=args.duration, runs=args.runs, seed=args.seed, progress=progress
        )
    else:
        result = run_live_bench(
            connections=args.connections,
            duration=args.duration,
            runs=args.runs,
            http_port=args.port,
            host_block=args.host_block,
            seed=args.seed,
            progress=progress,
        )
    print(format_table(result))
    for label, op, target in GATES:
        values = result.ratios().get(label)
        if values:
            median = statistics.median(values)
            met = median >= target if op == ">=" else median <= target
            print(f"target {label} {op} {target}: {median:.2f} {'met' if met else 'NOT met'}")
    write_json(result, OUT / "forwarding.json")
    for path in [OUT / "forwarding.json", *write_plots(result, OUT)]:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
