"""Run a cluster in virtual time or live: the only place where the two clocks differ.

A :class:`Runtime` says what a mode is made of: the network (``SimNetwork`` or ``SocketNetwork``),
the HTTP front each server gets (its ASGI app called in process, or served on its HTTP address)
and how ``trio.run`` is started. :data:`VIRTUAL` and :data:`LIVE` (or a :class:`LiveRuntime` with
other socket timeouts) are the two; :meth:`Runtime.cluster` builds the same ``Cluster`` on either.

Virtual time: ``consim.net.sim.VirtualClock`` (trio's ``MockClock(autojump_threshold=0)`` with the
simulator's deliveries folded into its jumps), an in-memory ``SimNetwork``, and trio's scheduler
made deterministic the way pytest-trio does it for Hypothesis (sorted run batches shuffled by one
seeded ``random.Random``, see ``consim.net.trio_internals``). Same scenario + same seed = same
event trace.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from consim.cluster import Answer, Cluster, ClusterError, Headers, HttpFront
from consim.events import EventLog
from consim.gc_tuning import tune_for_serving
from consim.net.network import Network
from consim.net.trio_internals import make_trio_deterministic
from consim.spec import ClusterSpec

if TYPE_CHECKING:
    from consim.http.client import Client

T = TypeVar("T")

__all__ = [
    "LIVE",
    "VIRTUAL",
    "HttpFront",
    "PortFront",
    "InProcessFront",
    "LiveRuntime",
    "Runtime",
    "VirtualRuntime",
    "make_trio_deterministic",
    "run_live",
    "run_virtual",
    "start_live_cluster_parts",
]


def _network_rng(spec: ClusterSpec) -> random.Random:
    # The network's own stream, apart from the cluster's: a scenario's seed fixes both.
    return random.Random(spec.seed * 7919 + 1)


class InProcessFront:
    """Virtual time's HTTP front: nothing listens; a request calls the server's app in process
    (no socket, so the virtual clock never waits on the kernel)."""

    async def serve(self, cluster: Cluster, name: str, nursery: trio.Nursery) -> None:
        """Nothing to serve: the app is built on the first request."""

    async def request(
        self, cluster: Cluster, name: str, method: str, path: str, headers: Headers, body: bytes
    ) -> Answer:
        if not cluster.node(name).running:
            raise ClusterError(f"{name} is not running: connection refused")
        from consim.http.inprocess import request

        return await request(cluster.app(name), method, path, headers=headers, body=body)


class PortFront:
    """Live HTTP front: consim.http.serve on every server's HTTP address for as long as that incarnation
    runs (a crashed server's port goes away with it, as with real Consul); requests go over a
    socket, and connection errors are the HTTP client's.

    The requests to one incarnation of a server share one ``consim.http.client.Client`` (its
    keep-alive connections), closed when that incarnation ends: a live load step sends up to
    1000 a second, and a client per request cost more CPU than the server's answer. A request to
    a server that is not running (killed, not yet restarted) gets a client of its own, so it is
    refused as a fresh connection is, never sent on a connection the crash is closing."""

    def __init__(self) -> None:
        # cluster -> server name -> the client of its running incarnation.
        self._clients: weakref.WeakKeyDictionary[Cluster, dict[str, Client]] = (
            weakref.WeakKeyDictionary()
        )

    async def serve(self, cluster: Cluster, name: str, nursery: trio.Nursery) -> None:
        from consim.http.serve import HTTPLimits, serve_http

        limits = HTTPLimits(max_conns_per_client=cluster.spec.http_max_conns_per_client)
        await nursery.start(
            partial(serve_http, limits=limits),
            cluster.app(name),
            cluster.node(name).spec.http_address,
        )
        await nursery.start(self._client_of_incarnation, cluster, name)

    async def _client_of_incarnation(
        self, cluster: Cluster, name: str, *, task_status: trio.TaskStatus[None]
    ) -> None:
        from consim.http.client import Client

        clients = self._clients.setdefault(cluster, {})
        client = clients[name] = Client()
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            if clients.get(name) is client:
                del clients[name]
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await client.aclose()

    async def request(
        self, cluster: Cluster, name: str, method: str, path: str, headers: Headers, body: bytes
    ) -> Answer:
        from consim.http.client import request

        node = cluster.node(name)
        address = node.spec.http_address
        client = self._clients.get(cluster, {}).get(name) if node.running else None
        if client is None:
            return await request(address, method, path, headers=headers, body=body)
        return await client.request(address, method, path, headers=headers, body=body)


class Runtime:
    """One mode: its network, its HTTP front and its ``trio.run``."""

    name: str
    front: HttpFront

    def network(self, spec: ClusterSpec) -> Network:
        raise NotImplementedError

    def run(self, main: Callable[[], Awaitable[None]], seed: int) -> None:
        raise NotImplementedError

    def cluster(self, spec: ClusterSpec, events: EventLog) -> Cluster:
        """A cluster on this mode's network and HTTP front (start its ``net.run``, then ``run``)."""
        return Cluster(spec, network=self.network(spec), events=events, front=self.front)

    def run_cluster(
        self,
        spec: ClusterSpec,
        body: Callable[[Cluster], Awaitable[T]],
        *,
        events: EventLog | None = None,
        prepare: Callable[[Cluster], None] | None = None,
    ) -> tuple[T, EventLog]:
        """Build the cluster, run ``body(cluster)``, tear everything down. ``prepare(cluster)``
        runs before any server starts."""
        result: list[T] = []
        holder: list[EventLog] = []

        async def main() -> None:
            log = events if events is not None else EventLog(trio.current_time)
            if events is not None:
                log._clock = trio.current_time  # the run's clock, even if the log was made earlier
            holder.append(log)
            cluster = self.cluster(spec, log)
            if prepare is not None:
                prepare(cluster)
            async with trio.open_nursery() as nursery:
                await nursery.start(cluster.net.run)
                await nursery.start(cluster.run)
                result.append(await body(cluster))
                nursery.cancel_scope.cancel()

        self.run(main, spec.seed)
        return result[0], holder[0]


@dataclass(frozen=True)
class VirtualRuntime(Runtime):
    """``SimNetwork`` under ``VirtualClock``, HTTP in process, trio's scheduler seeded."""

    latency: tuple[float, float] = (0.0005, 0.002)
    name = "virtual"
    front = InProcessFront()

    def network(self, spec: ClusterSpec) -> Network:
        from consim.net.sim import SimNetwork

        return SimNetwork(
            _network_rng(spec),
            latency=self.latency,
            model=spec.network,
            datacenter_of=spec.datacenter_of_hosts(),
        )

    def run(self, main: Callable[[], Awaitable[None]], seed: int) -> None:
        from consim.net.sim import VirtualClock

        make_trio_deterministic(seed)
        trio.run(main, clock=VirtualClock(), strict_exception_groups=True)


@dataclass(frozen=True)
class LiveRuntime(Runtime):
    """``SocketNetwork`` on real ports, the real clock, consim.http.serve on every server."""

    read_timeout: float | None = None  # None: the socket network's default
    name = "live"
    front = PortFront()

    def cluster(self, spec: ClusterSpec, events: EventLog) -> Cluster:
        tune_for_serving()  # this process serves live servers (consim.gc_tuning)
        return super().cluster(spec, events)

    def network(self, spec: ClusterSpec) -> Network:
        from consim.net.sockets import SocketNetwork

        options: dict[str, Any] = {}
        if self.read_timeout is not None:
            options["read_timeout"] = self.read_timeout
        if spec.network is not None:
            options["model"] = spec.network
            options["datacenter_of"] = spec.datacenter_of_hosts()
        return SocketNetwork(_network_rng(spec), **options)

    def run(self, main: Callable[[], Awaitable[None]], seed: int) -> None:
        trio.run(main)


VIRTUAL = VirtualRuntime()
LIVE = LiveRuntime()


def run_virtual(
    spec: ClusterSpec,
    body: Callable[[Cluster], Awaitable[T]],
    *,
    events: EventLog | None = None,
    latency: tuple[float, float] = (0.0005, 0.002),
) -> tuple[T, EventLog]:
    """Build the cluster in virtual time, run ``body(cluster)``, tear everything down."""
    return VirtualRuntime(latency).run_cluster(spec, body, events=events)


def run_live(
    spec: ClusterSpec, body: Callable[[Cluster], Awaitable[T]], *, events: EventLog | None = None
) -> tuple[T, EventLog]:
    """The same on real sockets and the real clock."""
    return LIVE.run_cluster(spec, body, events=events)


def start_live_cluster_parts(
    spec: ClusterSpec, *, max_events: int | None = None
) -> tuple[Cluster, EventLog]:
    """The live cluster ``consim up`` runs and its event log, for a caller already in ``trio.run``
    (start ``cluster.net.run``, then ``cluster.run``); ``max_events`` bounds the log to a ring."""
    events = EventLog(trio.current_time, max_events=max_events)
    return LIVE.cluster(spec, events), events
