"""Live (real TCP, 8 MiB frames): a follower restarted after 20 x 500 KB values and many small
writes catches up through a snapshot larger than one frame (issue 10 item 2)."""

from __future__ import annotations

from pathlib import Path

import trio
from live_hosts import free_host_base

from consim.net.framing import MAX_FRAME

from .helpers import kv_put, live_cluster, live_spec, wait_until

HTTP_PORT = 28531


async def test_live_follower_catches_up_through_a_chunked_snapshot(tmp_path: Path) -> None:
    base = free_host_base([3], HTTP_PORT)
    spec = live_spec(
        base,
        http_port=HTTP_PORT,
        seed=13,
        data_dir=tmp_path,
        snapshot_threshold=256,
        snapshot_interval=0,
        trailing_logs=128,
        # The ~10 MB FSM snapshot is taken and saved on the event loop; at multiplier 1 (a 500 ms
        # lease) a loaded machine can stall the leader past its lease while it writes.
        raft_multiplier=3,
    )
    async with live_cluster(spec) as cluster:
        leader = await cluster.wait_for_leader(within=15)
        follower = next(n for n in cluster.servers if n != leader.name)
        cluster.kill(follower)
        for i in range(20):
            await kv_put(leader, f"big/{i}", bytes([65 + i]) * 500_000)

        async def small(start: int) -> None:
            for i in range(start, start + 30):
                await kv_put(leader, f"small/{i}", b"v%d" % i)

        async with trio.open_nursery() as nursery:
            for start in range(0, 600, 30):
                nursery.start_soon(small, start)
        core = leader.core
        assert core is not None and core.snapshot is not None
        assert len(core.snapshot.data) > MAX_FRAME and core.first_index > 2
        await cluster.restart(follower)
        node = cluster.node(follower)
        await wait_until(
            lambda: node.core is not None and node.core.commit_index == core.commit_index,
            20,
            "the restarted follower to catch up",
        )
        assert leader.is_leader()
        assert not cluster.events.of_kind("raft_send_failed")
        assert [e.node for e in cluster.events.of_kind("install_snapshot")] == [follower]
