"""Shared helpers for the cluster runtime tests (virtual time and live).

Virtual-time tests are plain (sync) pytest functions that call ``run_virtual(spec, body)``, which
runs its own ``trio.run`` under ``VirtualClock``. Live tests are pytest-trio async tests that build
the same ``Cluster`` on a ``SocketNetwork``.

Live clusters bind Consul's fixed RPC port 8300 on ``127.0.<d>.<k>``. To stay clear of other test
suites (and of a developer's ``consim up`` on 127.0.0.x), :func:`live_spec` sets the spec's
``host_block`` so the tested datacenter's servers live on ``127.0.<block>.<k>``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from consim.cluster import Cluster
from consim.events import Event, EventLog
from consim.net.network import RpcError
from consim.raft.types import Role
from consim.runtime import run_virtual
from consim.server.node import ServerNode
from consim.spec import ClusterSpec

T = TypeVar("T")


# ---- running ---------------------------------------------------------------------------------
def virtual(spec: ClusterSpec, body: Callable[[Cluster], Awaitable[T]]) -> tuple[T, EventLog]:
    """``run_virtual`` whose failures name the seed that reproduces them."""
    try:
        return run_virtual(spec, body)
    except BaseException as exc:
        exc.add_note(
            f"consim seed={spec.seed} (replay: run_virtual(ClusterSpec(seed={spec.seed})))"
        )
        raise


def live_spec(block: int, *, servers: int = 3, http_port: int = 28500, **kw: Any) -> ClusterSpec:
    """A live-mode spec whose ``dc1`` servers listen on 127.0.<block>.1..n (see module docs)."""
    kw.setdefault("raft_multiplier", 1)
    return ClusterSpec(datacenters=(("dc1", servers),), http_port=http_port, host_block=block, **kw)


@asynccontextmanager
async def live_cluster(
    spec: ClusterSpec, *, read_timeout: float | None = None
) -> AsyncIterator[Cluster]:
    """The cluster ``consim up`` runs (``start_live_cluster_parts``), inside the test's trio run."""
    from consim.runtime import LiveRuntime

    # read_timeout: the socket network's per-frame read timeout (None: its default).
    cluster = LiveRuntime(read_timeout).cluster(spec, EventLog(trio.current_time))
    async with trio.open_nursery() as nursery:
        await nursery.start(cluster.net.run)
        await nursery.start(cluster.run)
        try:
            yield cluster
        finally:
            nursery.cancel_scope.cancel()


# ---- waiting ---------------------------------------------------------------------------------
async def wait_until(
    predicate: Callable[[], bool], within: float, what: str, *, poll: float = 0.01
) -> float:
    """Poll ``predicate`` until true; returns the elapsed time (virtual or real)."""
    start = trio.current_time()
    with trio.move_on_after(within):
        while not predicate():
            await trio.sleep(poll)
        return trio.current_time() - start
    raise AssertionError(f"timed out after {within}s waiting for {what}")


def log_signature(node: ServerNode) -> tuple[int, int, int]:
    assert node.core is not None
    return node.core.last_index, node.core.last_term, node.core.commit_index


def converged(cluster: Cluster, names: list[str] | None = None) -> bool:
    """Same last index/term and commit index everywhere, and every FSM applied through it."""
    nodes = [cluster.node(n) for n in names] if names else list(cluster.servers.values())
    sigs = set()
    for node in nodes:
        if not node.running or node.core is None or node.paused:
            return False
        if node.fsm.last_applied != node.core.commit_index:
            return False
        sigs.add(log_signature(node))
    return len(sigs) == 1


def describe(cluster: Cluster) -> str:
    return "; ".join(
        f"{s['name']}={s['state']} t{s.get('term', '-')} c{s.get('commit_index', '-')} "
        f"l{s.get('last_index', '-')} a{s.get('applied_index', '-')}"
        for s in cluster.status()
    )


async def wait_converged(cluster: Cluster, within: float, names: list[str] | None = None) -> None:
    try:
        await wait_until(lambda: converged(cluster, names), within, "logs to converge")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {describe(cluster)}") from None


# ---- KV through the RPC layer --------------------------------------------------------------
async def kv_put(node: ServerNode, key: str, value: bytes) -> dict[str, Any]:
    return await node.rpc("KVS.Apply", {"Op": "set", "DirEnt": {"Key": key, "Value": value}})


async def kv_get(node: ServerNode, key: str, **query: Any) -> bytes | None:
    reply = await node.rpc("KVS.Get", {"Key": key, **query})
    entries = reply["Entries"]
    if not entries:
        return None
    value = entries[0]["Value"]
    if isinstance(value, str):
        import base64

        return base64.b64decode(value)
    return value


def local_value(node: ServerNode, key: str) -> bytes | None:
    """The value in the node's own state machine (no RPC, no forwarding)."""
    _index, entry = node.fsm.get(key)
    if entry is None:
        return None
    wire = entry.to_wire()
    value = wire["Value"]
    if isinstance(value, str):
        import base64

        return base64.b64decode(value)
    return value


async def expect_rpc_error(call: Awaitable[Any]) -> str:
    try:
        result = await call
    except RpcError as exc:
        return exc.message
    raise AssertionError(f"expected an RpcError, got {result!r}")


# ---- events ----------------------------------------------------------------------------------
def events_of(log: EventLog, kind: str, **fields: Any) -> list[Event]:
    return [e for e in log.of_kind(kind) if all(e.fields.get(k) == v for k, v in fields.items())]


def leaders_in(cluster: Cluster, names: list[str]) -> list[str]:
    return [
        n
        for n in names
        if cluster.node(n).running
        and cluster.node(n).core is not None
        and cluster.node(n).core.role is Role.LEADER  # type: ignore[union-attr]
    ]
