"""CPU instructions per committed Raft write (consim's half of raft_throughput.py), under callgrind.

Wall-clock throughput on a shared machine moves with its load; the instructions a write costs do
not (repeat runs agree within ~1.5%). This runs the cluster ``raft_throughput.py`` measures (3
servers on loopback in one process, ``KVS.Apply`` with a 64-byte value through the leader's
``ServerNode.rpc``) under ``valgrind --tool=callgrind`` with instrumentation off, switches it on
(``callgrind_control``) after the leader is elected and 200 writes warmed the path, makes
``--writes`` writes with ``--concurrency`` in flight, switches it off, and prints instructions per
write. Compare revisions by running the script of each checkout (``--source DIR`` runs another
checkout's consim with this script).

    .venv/bin/python benchmarks/raft_write_instructions.py [--concurrency 256] [--writes 3000]
        [--source DIR]

Needs valgrind (``apt-get install valgrind``). Takes about a minute per 3,000 writes.
"""

from __future__ import annotations

from _requires import require  # benchmarks/ is sys.path[0] when a script runs

require(__file__)

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VALUE = b"v" * 64


def child(concurrency: int, writes: int) -> None:
    """Inside valgrind: the cluster, the warm-up, the measured writes."""
    import trio

    from consim.live import free_host_block
    from consim.runtime import start_live_cluster_parts
    from consim.spec import ClusterSpec

    subnet = free_host_block([3], 8500, (0, *range(60, 100)))
    # Multiplier 5: under valgrind everything is ~50x slower, and heartbeats must not time out.
    spec = ClusterSpec(
        datacenters=(("dc1", 3),), seed=1, raft_multiplier=5, http_port=8500, host_block=subnet
    )

    def instrument(state: str) -> None:
        subprocess.Popen(
            ["callgrind_control", "-i", state, str(os.getpid())], stdout=subprocess.DEVNULL
        )

    async def main() -> None:
        cluster, _events = start_live_cluster_parts(spec)
        async with trio.open_nursery() as nursery:
            await nursery.start(cluster.net.run)
            await nursery.start(cluster.run)
            leader = await cluster.wait_for_leader("dc1", within=300)

            async def write(i: int) -> None:
                key = f"bench/{i % 1000}"
                await leader.rpc("KVS.Apply", {"Op": "set", "DirEnt": {"Key": key, "Value": VALUE}})

            for i in range(200):
                await write(i)
            instrument("on")
            await trio.sleep(3)  # callgrind_control is answered asynchronously
            left = writes
            counter = iter(range(10**9))

            async def writer() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await write(next(counter))

            async with trio.open_nursery() as writers:
                for _ in range(concurrency):
                    writers.start_soon(writer)
            instrument("off")
            await trio.sleep(3)
            print(f"COMMITTED {leader.core.commit_index if leader.core else 0}", flush=True)
            nursery.cancel_scope.cancel()

    trio.run(main)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=256, help="writes in flight")
    parser.add_argument("--writes", type=int, default=3000, help="measured writes")
    parser.add_argument("--source", default=None, help="run the consim of this checkout")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.concurrency, args.writes)
        return 0
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install valgrind", file=sys.stderr)
            return 2
    env = dict(os.environ, PYTHONHASHSEED="0")
    if args.source:
        env["PYTHONPATH"] = str(Path(args.source).resolve())
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={tmp}/out",
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "--concurrency",
            str(args.concurrency),
            "--writes",
            str(args.writes),
        ]
        done = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
    refs = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or refs is None or "COMMITTED" not in done.stdout:
        print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
        return 1
    instructions = int(refs.group(1).replace(",", ""))
    print(
        f"{args.writes} writes, {args.concurrency} in flight: {instructions:,} instructions, "
        f"{instructions / args.writes / 1000:.1f}k per committed write"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
