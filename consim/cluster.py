"""Datacenters of ServerNodes on one Network: start, stop, kill, restart, partition, heal.

The same ``Cluster`` runs in virtual time (``SimNetwork`` under ``VirtualClock``, HTTP called in
process) and live (``SocketNetwork``, ``consim.http.serve`` on every HTTP address): it is handed its
network and HTTP front and never asks which (``consim.runtime`` builds both). Every fault is an
event in the one event log.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from functools import partial
from typing import Any, Protocol, TypeVar

import trio

from consim import probes
from consim.events import NO_NODE, EventLog
from consim.net.network import Network
from consim.raft.core import new_node_id
from consim.raft.types import Role
from consim.server.agent import ServerAgent
from consim.server.node import ServerFailed, ServerNode
from consim.spec import ClusterSpec, ServerSpec
from consim.storage.base import RaftStorage
from consim.storage.memory import MemoryStorage


class ClusterError(Exception):
    pass


Headers = dict[str, str] | None
Answer = tuple[int, dict[str, str], bytes]  # status, headers (lower-case names), body


class HttpFront(Protocol):
    """How a cluster reaches its servers' HTTP APIs (the cluster never asks which mode it is in)."""

    async def serve(self, cluster: Cluster, name: str, nursery: trio.Nursery) -> None:
        """Start serving this incarnation of server ``name`` in ``nursery`` (or nothing)."""

    async def request(
        self, cluster: Cluster, name: str, method: str, path: str, headers: Headers, body: bytes
    ) -> Answer:
        """One request to server ``name``."""
        ...


class Cluster:
    def __init__(
        self, spec: ClusterSpec, *, network: Network, events: EventLog, front: HttpFront
    ) -> None:
        self.spec = spec
        self.net = network
        self.events = events
        # How each server's HTTP API is reached: in process or on a real port (consim.runtime).
        self.front = front
        self.rng = random.Random(spec.seed)
        self.servers: dict[str, ServerNode] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._exited: dict[str, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self._memory: dict[str, MemoryStorage] = {}
        self.http_apps: dict[str, Any] = {}
        # consim's /ui (consim.ui.live.LiveUI, set by `consim up` before the servers start):
        # every server's app hands /ui paths to it. None: /ui is a 404, as without Consul's UI.
        self.ui: Any = None
        network.faults.on_change = self._on_fault
        network.on_error = self._on_network_error
        self.raft_config = raft_config = spec.raft_config()
        specs = []
        for s in spec.servers():
            specs.append(replace(s, node_id=self._node_id(s)))
        self.specs = specs
        for s in specs:
            node_rng = random.Random(self.rng.getrandbits(64))
            self.servers[s.name] = ServerNode(
                s,
                network=network,
                storage_factory=self._storage_factory(s),
                events=events,
                rng=node_rng,
                raft_config=raft_config,
                directory=lambda: self.specs,
                **spec.server_options(),
            )
            # HTTP and TCP checks reach this cluster's servers (consim.probes).
            self.servers[s.name].local_state.prober = functools.partial(probes.probe, self)

    def _node_id(self, s: ServerSpec) -> str:
        node_id = new_node_id(self.rng)
        peers = self.spec.raft_peers
        listed = peers.by_address(s.rpc_address) if peers is not None else None
        if listed is not None and self.spec.raft_protocol >= 3:
            return listed.id  # the static configuration names this server
        if self.spec.data_dir is None:
            return node_id
        path = self.spec.data_dir / s.name / "node-id"
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(node_id)
        return node_id

    def _storage_factory(self, s: ServerSpec) -> Callable[[], RaftStorage]:
        if self.spec.data_dir is not None:
            from consim.storage.sqlite import SQLiteStorage

            data_dir = self.spec.data_dir
            return lambda: SQLiteStorage(data_dir, s.name)
        memory = self._memory.setdefault(s.name, MemoryStorage())
        return lambda: memory

    # ---- lifecycle ---------------------------------------------------------------------------
    async def run(
        self, *, task_status: trio.TaskStatus[Cluster] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start every server and keep them running until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for name in self.servers:
                await self._start_server(name)
            task_status.started(self)
            await trio.sleep_forever()

    async def _start_server(self, name: str) -> None:
        assert self._nursery is not None
        node = self.servers[name]
        previous = self._exited.get(name)
        if previous is not None:
            # The killed incarnation must finish unwinding before the next one starts.
            await previous.wait()
        scope = trio.CancelScope()
        self._scopes[name] = scope
        exited = trio.Event()
        self._exited[name] = exited

        async def incarnation(
            *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        ) -> None:
            try:
                await _incarnation(task_status=task_status)
            finally:
                exited.set()

        async def _incarnation(
            *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        ) -> None:
            started = False
            try:
                with scope:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(node.run)
                        # Live: this incarnation's HTTP port, which goes away when it crashes.
                        await self.front.serve(self, name, nursery)
                        task_status.started()
                        started = True
            except Exception as exc:
                if not started:
                    raise  # a server that cannot start (bad peers.json, port taken) is an error
                # One server's failure is never the cluster's: it stays down, marked failed.
                self._server_failed(node, exc)

        await self._nursery.start(incarnation)

    def _server_failed(self, node: ServerNode, exc: BaseException) -> None:
        failures = _leaves(exc)
        node.running = False
        if all(isinstance(e, ServerFailed) for e in failures):
            return  # the server logged it already (_fail_server)
        error = "; ".join(f"{type(e).__name__}: {e}" for e in failures)
        node.counters["internal_errors"] += 1
        if node.failure is None:
            node.failure = error
        self.events.emit(
            node.name,
            "server_failed",
            {"where": "server", "error": error},
            level="ERROR",
            subsystem="agent.server",
            message="unexpected error in server, stopping this server",
        )

    def _on_network_error(self, address: str, where: str, exc: BaseException) -> None:
        """The network contained a failure at ``address``: log it on the server there."""
        from consim.net.faults import host_of

        host = host_of(address)
        for node in self.servers.values():
            if node.spec.host == host:
                node.contained_error(where, exc)
                return
        self.events.emit(
            "cluster",
            "internal_error",
            {"address": address, "where": where, "error": f"{type(exc).__name__}: {exc}"},
            level="ERROR",
            message=f"unexpected error in {where}, continuing",
        )

    def app(self, name: str) -> Any:
        """The server's quart-trio app (one per server, kept across restarts)."""
        if name not in self.http_apps:
            from consim.http.app import create_app

            node = self.node(name)
            agent = ServerAgent(
                node,
                known_datacenters=lambda: len(node.known_datacenters()),
                leave=lambda: self.agent_leave(name),
            )
            ui = None if self.ui is None else partial(self.ui.handle, server=name)
            self.http_apps[name] = create_app(agent, ui)
        return self.http_apps[name]

    async def http(
        self, name: str, method: str, path: str, *, headers: Headers = None, body: bytes = b""
    ) -> Answer:
        """One HTTP request to a server: in process in virtual time, over a socket when live."""
        self.node(name)  # an unknown name is a ClusterError before anything is sent
        start = self.events.now()
        status, out_headers, out_body = await self.front.request(
            self, name, method, path, headers, body
        )
        # The server's own DEBUG line, as Consul's agent.http logs it.
        self.events.emit(
            name,
            "http_request",
            {
                "method": method,
                "url": path,
                "status": status,
                "latency": f"{(self.events.now() - start) * 1e6:.0f}µs",
            },
            level="DEBUG",
            subsystem="agent.http",
            message="Request finished",
        )
        return status, out_headers, out_body

    def node(self, name: str) -> ServerNode:
        return named_server(self.servers, name)

    def kill(self, name: str) -> None:
        """Crash: volatile state is lost; storage survives."""
        node = self.node(name)
        if not node.running:
            raise ClusterError(f"{name} is not running")
        self.events.emit(NO_NODE, "kill", {"server": name}, level="WARN", message="server killed")
        self._scopes[name].cancel()
        node.running = False

    async def restart(self, name: str) -> None:
        node = self.node(name)
        if node.running:
            self.kill(name)
            await trio.sleep(0)
        node.resume()
        self.events.emit(NO_NODE, "restart", {"server": name}, message="server restarted")
        await self._start_server(name)

    async def stop(self, name: str) -> None:
        """Graceful leave: the server is removed from the Raft configuration, then stops."""
        self.events.emit(NO_NODE, "stop", {"server": name}, message="server leaving gracefully")
        await self._graceful_leave(name)
        self._halt(name)

    async def agent_leave(self, name: str) -> None:
        """``PUT /v1/agent/leave`` on ``name``: the same graceful leave as :meth:`stop`; the
        shutdown follows right after the answer is sent (Consul's ShutdownAgent), so the client
        gets its 200 before the server's HTTP port goes away."""
        node = self.node(name)
        self.events.emit(
            name,
            "agent_leave",
            {"server": name},
            subsystem="agent",
            message="Requesting shutdown: graceful leave (PUT /v1/agent/leave)",
        )
        incarnation = node.incarnation
        await self._graceful_leave(name)

        async def shutdown() -> None:
            # Long enough for hypercorn to flush the response on a busy machine.
            await trio.sleep(0.2)
            if node.running and node.incarnation == incarnation:
                self._halt(name)

        assert self._nursery is not None
        self._nursery.start_soon(shutdown)

    async def _graceful_leave(self, name: str) -> None:
        node = self.node(name)
        if node.running and node.core is not None:
            leader = self.leader(node.datacenter)
            if leader is not None:
                from consim.net.network import RpcError

                try:
                    with trio.move_on_after(self.raft_config.election_timeout * 4):
                        await leader.rpc(
                            "Operator.RaftRemovePeerByID",
                            {"ID": node.server_id, "Token": self.spec.acl.initial_management or ""},
                        )
                except RpcError as exc:
                    self.events.emit(
                        NO_NODE,
                        "stop_remove_failed",
                        {"server": name, "error": exc.message},
                        level="WARN",
                        message="leaving server could not be removed",
                    )
        if node.running and node.lan_pool is not None and node.wan_pool is not None:
            # serf leave: the others see "left" rather than "failed".
            node.lan_pool.leave()
            node.wan_pool.leave()
            await trio.sleep(node.lan_pool.config.t(node.lan_pool.config.leave_propagate_delay))

    def _halt(self, name: str) -> None:
        node = self.node(name)
        if node.running:
            self._scopes[name].cancel()
            node.running = False

    def pause(self, name: str) -> None:
        self.node(name).pause()
        self.events.emit(NO_NODE, "pause", {"server": name}, level="WARN", message="server paused")

    def resume(self, name: str) -> None:
        self.node(name).resume()
        self.events.emit(NO_NODE, "resume", {"server": name}, message="server resumed")

    # ---- network faults (events come from the fault model's on_change) -----------------------
    def host(self, name: str) -> str:
        return self.node(name).spec.host

    def partition(self, groups: list[list[str]]) -> None:
        self.net.faults.partition([[self.host(n) for n in group] for group in groups])

    def isolate(self, name: str) -> None:
        self.net.faults.isolate(self.host(name))

    def block(self, src: str, dst: str) -> None:
        self.net.faults.block(self.host(src), self.host(dst))

    def heal(self, all: bool = False) -> None:  # noqa: A002 - FaultModel.heal's name
        """Clear cuts (partition, isolation, blocks); ``all`` clears loss and delay too."""
        self.net.faults.heal(all=all)

    def set_loss(self, src: str, dst: str, probability: float) -> None:
        """Loss on the links from ``src`` to ``dst``: each a server name, a datacenter name
        (every server of it) or ``*``."""
        for s, d in self._link_pairs(src, dst):
            self.net.faults.set_loss(s, d, probability)

    def set_delay(self, src: str, dst: str, seconds: float) -> None:
        """Extra one-way delay on the links from ``src`` to ``dst`` (as :meth:`set_loss`)."""
        for s, d in self._link_pairs(src, dst):
            self.net.faults.set_delay(s, d, seconds)

    def _link_pairs(self, src: str, dst: str) -> list[tuple[str, str]]:
        pairs = [(s, d) for s in self._link_hosts(src) for d in self._link_hosts(dst)]
        return [(s, d) for s, d in pairs if s != d or s == "*"]  # a host always reaches itself

    def _link_hosts(self, name: str) -> list[str]:
        if name == "*":
            return ["*"]
        if name in self.spec.datacenter_names():
            return [s.host for s in self.spec.servers() if s.datacenter == name]
        return [self.host(name)]

    def _on_fault(self, kind: str, fields: dict[str, Any]) -> None:
        by_host = {n.spec.host: n.name for n in self.servers.values()}
        self.events.emit(
            NO_NODE,
            kind,
            {k: hosts_named(by_host, v) for k, v in fields.items()},
            level="WARN",
            message=kind.replace("_", " "),
        )

    # ---- views -------------------------------------------------------------------------------
    def datacenter_servers(self, datacenter: str) -> list[ServerNode]:
        return [n for n in self.servers.values() if n.datacenter == datacenter]

    def leader(self, datacenter: str = "dc1") -> ServerNode | None:
        """The running leader with the highest term (an isolated old leader may linger)."""
        best: ServerNode | None = None
        for node in self.datacenter_servers(datacenter):
            if node.is_leader() and not node.paused:
                assert node.core is not None
                if best is None or node.core.term > best.core.term:  # type: ignore[union-attr]
                    best = node
        return best

    def followers(self, datacenter: str = "dc1") -> list[ServerNode]:
        return [
            n
            for n in self.datacenter_servers(datacenter)
            if n.running and n.core is not None and n.core.role is Role.FOLLOWER
        ]

    async def wait_for_leader(
        self,
        datacenter: str = "dc1",
        within: float = 30.0,
        *,
        exclude: set[str] | None = None,
        poll: float = 0.01,
    ) -> ServerNode:
        """Wait until a leader exists (not in ``exclude``) that a majority acknowledges."""
        exclude = exclude or set()
        with trio.move_on_after(within):
            while True:
                leader = self.leader(datacenter)
                if leader is not None and leader.name not in exclude and self.acknowledged(leader):
                    return leader
                await trio.sleep(poll)
        raise ClusterError(f"no leader in {datacenter} within {within}s")

    def acknowledged(self, leader: ServerNode) -> bool:
        """Does a majority of voters follow ``leader`` in its term?"""
        return majority_follows(leader, self.datacenter_servers(leader.datacenter))

    def status(self) -> list[dict[str, Any]]:
        return [n.status() for n in self.servers.values()]

    async def sync(self, kv: Collection[str] = ()) -> None:
        """Nothing to do: in one process a step reads the servers themselves. (A cluster of
        processes sends the faults made and reads every child here, consim.agent.remote.)
        No checkpoint, so a virtual run's schedule is unchanged."""


def hosts_named(by_host: Mapping[str, str], value: Any) -> Any:
    """``value`` with every server host in it (a string, or in lists) said by its server's name."""
    if isinstance(value, str):
        return by_host.get(value, value)
    if isinstance(value, list | tuple):
        return [hosts_named(by_host, v) for v in value]
    return value


def majority_follows(leader: Any, servers: list[Any]) -> bool:
    """Do a majority of the voters in ``leader``'s configuration, among ``servers`` (ServerNodes,
    or anything with their ``running``, ``server_id`` and ``core``), follow it in its term?"""
    core = leader.core
    assert core is not None
    acks = sum(
        1
        for n in servers
        if n.running
        and n.core is not None
        and n.core.leader_id == leader.server_id
        and n.core.term == core.term
        and core.configuration.has_vote(n.server_id)
    )
    return acks >= len(core.configuration.voters()) // 2 + 1


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``[exc]``."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


T = TypeVar("T")


def named_server(servers: Mapping[str, T], name: str) -> T:
    """``servers[name]``, or ClusterError naming the servers there are (``consim ctl``'s text)."""
    try:
        return servers[name]
    except KeyError:
        raise ClusterError(f"no server named {name!r}; known: {', '.join(servers)}") from None
