"""Live (real clock, sockets, hypercorn): autopilot's StableSince is wall-clock time, and
PUT /v1/agent/leave takes the server out of the cluster and its HTTP port down."""

from __future__ import annotations

import json
import time
from datetime import datetime

import httpx
import trio

from .helpers import live_cluster, live_spec, wait_until

HTTP_PORT = 28531


def _parse(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def test_live_stable_since_is_wall_clock_and_agent_leave_stops_the_server() -> None:
    from live_hosts import free_host_base

    base = free_host_base([3], HTTP_PORT, bases=range(46, 60, 2))
    spec = live_spec(base, http_port=HTTP_PORT, seed=37, gossip_scale=0.5)
    async with live_cluster(spec) as cluster:
        leader = await cluster.wait_for_leader(within=15)
        await wait_until(lambda: leader.fsm.autopilot_create_index > 0, 10, "autopilot config")
        status, _, raw = await cluster.http(leader.name, "GET", "/v1/operator/autopilot/health")
        assert status in (200, 429), raw
        now = time.time()
        for server in json.loads(raw)["Servers"]:
            # seconds ago on the wall clock, not on the virtual epoch (days off)
            assert now - 60 < _parse(server["StableSince"]) <= now + 1, (server, now)

        follower = next(n for n in cluster.servers.values() if n is not leader)
        status, _, raw = await cluster.http(follower.name, "PUT", "/v1/agent/leave")
        assert (status, raw) == (200, b"")
        await wait_until(lambda: not follower.running, 10, "the left server to stop")
        ids = {s.id for s in leader.core.latest_configuration.servers}  # type: ignore[union-attr]
        assert follower.server_id not in ids and len(ids) == 2
        # its HTTP port is gone, as with a Consul agent that left and shut down
        refused = False
        with trio.fail_after(10):
            while not refused:
                try:
                    await cluster.http(follower.name, "GET", "/v1/status/leader")
                except httpx.TransportError:
                    refused = True
                else:
                    await trio.sleep(0.1)
        status, _, raw = await cluster.http(leader.name, "PUT", "/v1/kv/after", body=b"1")
        assert (status, raw) == (200, b"true")
