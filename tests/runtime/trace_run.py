"""One fixed cluster run in virtual time; prints its trace hash (used by test_determinism.py).

    python tests/runtime/trace_run.py SEED

Elections, a leader kill and restart, a partition and heal, and a write workload through a
follower (forwarded) and the leader. Prints ``<hash> <events>`` on one line.
"""

from __future__ import annotations

import sys

import trio

from consim.cluster import Cluster
from consim.runtime import run_virtual
from consim.spec import ClusterSpec


async def scenario(cluster: Cluster) -> None:
    leader = await cluster.wait_for_leader(within=10)
    for i in range(10):
        await leader.rpc("KVS.Apply", {"Op": "set", "DirEnt": {"Key": f"w/{i}", "Value": b"x"}})
    cluster.kill(leader.name)
    second = await cluster.wait_for_leader(within=10, exclude={leader.name})
    follower = next(n for n in cluster.followers() if n.name != second.name)
    for i in range(10, 20):
        await follower.rpc("KVS.Apply", {"Op": "set", "DirEnt": {"Key": f"w/{i}", "Value": b"y"}})
    await cluster.restart(leader.name)
    await trio.sleep(2)
    names = list(cluster.servers)
    minority = [second.name]
    majority = [n for n in names if n != second.name]
    cluster.partition([minority, majority])
    third = await cluster.wait_for_leader(within=10, exclude={second.name})
    for i in range(20, 30):
        await third.rpc("KVS.Apply", {"Op": "set", "DirEnt": {"Key": f"w/{i}", "Value": b"z"}})
    cluster.heal()
    await trio.sleep(5)


def main() -> None:
    seed = int(sys.argv[1])
    spec = ClusterSpec(seed=seed, raft_multiplier=1)
    _, events = run_virtual(spec, scenario)
    print(events.trace_hash(), len(events.events))


if __name__ == "__main__":
    main()
