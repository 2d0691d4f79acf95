"""Live (real clock, sockets, hypercorn): autopilot's StableSince is wall-clock time, and
PUT /v1/agent/leave takes the server out of the cluster and its HTTP port down; /v1/agent/monitor
streams gzipped lines over a real socket and unsubscribes when the client goes."""

from __future__ import annotations

import json
import time
import zlib
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

        await _monitor_streams_gzipped_lines_until_the_client_goes(leader)

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


async def _monitor_streams_gzipped_lines_until_the_client_goes(leader) -> None:
    """GET /v1/agent/monitor over a real socket: the head arrives before any line, each line is
    flushed gzipped as it is logged, and the subscription ends with the connection."""
    host, port = leader.spec.http_address.rsplit(":", 1)
    before = len(leader.events._subscribers)  # no public count; the leak is what matters here
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(
        b"GET /v1/agent/monitor?loglevel=debug HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n"
    )
    data = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    assert b"Content-Encoding: gzip" in head and b"Transfer-Encoding: chunked" in head
    inflate = zlib.decompressobj(31)
    text = ""
    leader.events.emit(leader.name, "probe", {"n": 7}, level="DEBUG", message="monitor probe")
    with trio.fail_after(10):
        while "monitor probe" not in text:
            # chunked framing: "<hex size>\r\n<data>\r\n"; inflate each whole chunk's data
            size_line, sep, after = rest.partition(b"\r\n")
            if not sep or len(after) < int(size_line, 16) + 2:
                rest += await stream.receive_some(65536)
                continue
            size = int(size_line, 16)
            text += inflate.decompress(after[:size]).decode()
            rest = after[size + 2 :]
    assert "[DEBUG] agent: monitor probe: n=7" in text
    await stream.aclose()
    await wait_until(lambda: len(leader.events._subscribers) == before, 10, "the unsubscribe")
