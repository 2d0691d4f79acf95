"""Helpers for HTTP API tests on a real consim cluster (Raft + endpoints) in virtual time."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from consim.cluster import Cluster
from consim.runtime import run_virtual
from consim.server.node import ServerNode
from consim.spec import ClusterSpec


def spec(**kw: Any) -> ClusterSpec:
    kw.setdefault("raft_multiplier", 1)
    kw.setdefault("seed", 11)
    return ClusterSpec(**kw)


def run(body: Callable[[Cluster], Awaitable[Any]], **kw: Any) -> Any:
    """Run ``body`` against a fresh cluster in virtual time; returns body's result."""
    result, _events = run_virtual(spec(**kw), body)
    return result


async def http(
    c: Cluster,
    name: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    return await c.http(name, method, path, headers=headers, body=body)


async def get_json(c: Cluster, name: str, path: str, **kw: Any) -> tuple[int, dict[str, str], Any]:
    status, headers, body = await c.http(name, "GET", path, **kw)
    assert status == 200, (status, body)
    assert headers["content-type"] == "application/json"
    return status, headers, json.loads(body)


async def ready(c: Cluster, dc: str = "dc1") -> tuple[ServerNode, list[ServerNode]]:
    """A leader acknowledged by a majority whose barrier is applied, and its followers."""
    leader = await c.wait_for_leader(dc)
    # consistent reads need the new leader's barrier applied (Consul's establishLeadership)
    with trio.fail_after(10):
        while not leader.consistent_ready:
            await trio.sleep(0.01)
    followers = [n for n in c.datacenter_servers(dc) if n is not leader]
    # establishLeadership also stores autopilot's defaults; let that write reach everyone so the
    # tests start from a quiet log.
    with trio.fail_after(10):
        while leader.fsm.autopilot_create_index == 0 or any(
            f.running and f.fsm.last_applied < leader.fsm.last_applied for f in followers
        ):
            await trio.sleep(0.01)
    return leader, followers


async def eventually(check: Callable[[], bool], within: float = 10.0, poll: float = 0.01) -> None:
    with trio.fail_after(within):
        while not check():
            await trio.sleep(poll)


def kv_index(headers: dict[str, str]) -> int:
    return int(headers["x-consul-index"])
