"""Helpers for gossip/keyring/autopilot tests on a real consim cluster (Raft + gossip + HTTP)."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from consim.cluster import Cluster
from consim.events import EventLog
from consim.gossip import Keyring
from consim.runtime import run_virtual
from consim.spec import ClusterSpec

K1 = base64.b64encode(b"k" * 16).decode()  # AES-128, the cluster's initial key
K2 = base64.b64encode(b"two-" * 8).decode()  # AES-256
K3 = base64.b64encode(b"3" * 24).decode()  # AES-192
OTHER = base64.b64encode(b"x" * 16).decode()  # a key the cluster never heard of


def spec(**kw: Any) -> ClusterSpec:
    kw.setdefault("raft_multiplier", 1)
    kw.setdefault("seed", 5)
    kw.setdefault("encrypt", K1)
    kw.setdefault("gossip_scale", 0.5)
    return ClusterSpec(**kw)


def run(body: Callable[[Cluster], Awaitable[Any]], **kw: Any) -> tuple[Any, EventLog]:
    return run_virtual(spec(**kw), body)


def key_body(key: str) -> bytes:
    return json.dumps({"Key": key}).encode()


async def call(c: Cluster, name: str, method: str, path: str, body: bytes = b"", **kw: Any):
    status, headers, raw = await c.http(name, method, path, body=body, **kw)
    return status, raw.decode()


async def get_json(c: Cluster, name: str, path: str, **kw: Any) -> Any:
    status, headers, raw = await c.http(name, "GET", path, **kw)
    assert status == 200, (status, raw)
    return json.loads(raw)


async def eventually(check: Callable[[], bool], within: float = 30.0, poll: float = 0.05) -> None:
    with trio.fail_after(within):
        while not check():
            await trio.sleep(poll)


async def eventually_async(
    check: Callable[[], Awaitable[bool]], within: float = 30.0, poll: float = 0.1
) -> None:
    with trio.fail_after(within):
        while not await check():
            await trio.sleep(poll)


def all_alive(c: Cluster) -> bool:
    """Every running server sees every running server alive in both pools."""
    running = [n for n in c.servers.values() if n.running]
    for n in running:
        if n.lan_pool is None or n.wan_pool is None:
            return False
        lan = {m.name: m.status for m in n.lan_pool.members()}
        wan = {m.name: m.status for m in n.wan_pool.members()}
        for o in running:
            if o.datacenter == n.datacenter and lan.get(o.name) != 1:
                return False
            if wan.get(f"{o.name}.{o.datacenter}") != 1:
                return False
    return True


async def settled(c: Cluster, within: float = 60.0) -> None:
    """A leader in every datacenter and full gossip membership."""
    for dc in c.spec.datacenter_names():
        await c.wait_for_leader(dc, within=within)
    await eventually(lambda: all_alive(c), within=within)


def member_status(c: Cluster, observer: str, name: str, *, wan: bool = False) -> int | None:
    node = c.node(observer)
    pool = node.wan_pool if wan else node.lan_pool
    assert pool is not None
    for m in pool.members():
        if m.name == name:
            return m.status
    return None


def set_stored_keyring(c: Cluster, name: str, keys: list[str]) -> None:
    """Replace what a (stopped) server has "on disk" for both pools."""
    node = c.node(name)
    text = Keyring.from_b64(keys).to_json()
    for pool in (node.lan_pool, node.wan_pool):
        assert pool is not None
        pool._keyring_memory = text
        if pool.keyring_path is not None:
            pool.keyring_path.write_text(text)


def events_of(log: EventLog, kind: str, node: str | None = None) -> list[Any]:
    return [e for e in log.events if e.kind == kind and (node is None or e.node == node)]


def config_ids(c: Cluster, dc: str = "dc1") -> set[str]:
    leader = c.leader(dc)
    assert leader is not None and leader.core is not None
    return {s.id for s in leader.core.latest_configuration.servers}
