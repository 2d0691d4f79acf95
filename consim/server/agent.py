"""The agent view of a server (Consul's agent endpoints): what the HTTP app
(``consim.http.agent.Agent``) calls: RPCs, ``/v1/agent/self``, members, join, leave, force-leave
and the keyring."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import trio
from trio.testing import MockClock

from consim import CONSUL_VERSION
from consim.events import VIRTUAL_EPOCH, Event, format_hclog, go_value, level_enabled
from consim.gossip import consul_server_tags
from consim.gossip.types import Member
from consim.net.network import RpcError
from consim.net.sim import VirtualClock
from consim.server.agent_local import local_agent
from consim.server.endpoints import authorize, require
from consim.server.gossip_driver import GossipPool
from consim.server.node import ServerNode
from consim.server.state.coordinates import initial_coordinate


class ServerAgent:
    """The HTTP layer's view of a server (``consim.http.agent.Agent``), Consul's agent endpoints.

    ``leave`` is what ``PUT /v1/agent/leave`` does after its ACL check: a graceful leave and then
    the agent's shutdown (the cluster provides it); without one only the gossip pools leave."""

    def __init__(
        self,
        node: ServerNode,
        *,
        known_datacenters: Callable[[], int],
        leave: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.node = node
        self.node_name = node.name
        self.datacenter = node.datacenter
        self._known_datacenters = known_datacenters
        self._leave = leave
        # the agent's ACL tokens set through /v1/agent/token (lost when the cluster stops, as
        # Consul's without enable_token_persistence)
        self.tokens: dict[str, str] = {}

    @property
    def acl_enabled(self) -> bool:
        """acl.enabled: the /v1/acl/* endpoints answer 401 without it."""
        return self.node.acl.enabled

    @property
    def default_acl_policy(self) -> str:
        """acl.default_policy, which Consul sends on every answer (X-Consul-Default-ACL-Policy)."""
        return self.node.acl.default_policy

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        if not self.node.running:
            raise RpcError("server is not running")
        if self.node.paused:
            await self.node.wait_resumed()
        return await self.node.rpc(method, args)

    def agent_self(self, token: str = "") -> dict[str, Any]:
        # Consul's AgentSelf: agent:read on this agent's node name.
        self._require(token, "agent", "read", self.node_name)
        node = self.node
        spec = node.spec
        core = node.core
        stats_raft: dict[str, Any] = {}
        if core is not None and node.running:
            stats_raft = {k: str(v) for k, v in core.stats(trio.current_time()).items()}
            stats_raft["applied_index"] = str(node.fsm.last_applied)
        leader = node.leader_address()
        # Consul's Self struct, in its field order. No "xDS": Consul sends it only with an xDS
        # (gRPC) server, and consim serves none.
        return {
            "Config": {  # the anonymous struct's field order; no BuildDate (no build)
                "Datacenter": spec.datacenter,
                "PrimaryDatacenter": self._primary(),
                "NodeName": spec.name,
                "NodeID": node.node_id,
                "Revision": "consim",
                "Server": True,
                "Version": CONSUL_VERSION,
            },
            "DebugConfig": self._debug_config(),
            # serf's LAN coordinate: serf in consim runs no Vivaldi, so it stays the initial one
            "Coord": initial_coordinate(),
            "Member": self.member(),
            "Stats": {
                "consul": {
                    "leader": "true" if node.is_leader() else "false",
                    "leader_addr": leader,
                    "known_datacenters": str(self._known_datacenters()),
                    "server": "true",
                    "bootstrap": "false",
                },
                "raft": stats_raft,
            },
            # the agent's node meta, as its catalog registration carries it
            "Meta": {"consul-network-segment": "", "consul-version": CONSUL_VERSION},
        }

    def _debug_config(self) -> dict[str, Any]:
        """The part of Consul's sanitized runtime configuration consim has, by its names."""
        node = self.node
        return {
            "ACLsEnabled": node.acl.enabled,
            "Bootstrap": False,
            "Datacenter": node.spec.datacenter,
            "NodeID": node.node_id,
            "NodeName": node.spec.name,
            "PrimaryDatacenter": self._primary(),
            "RaftProtocol": node.raft_protocol,
            "Revision": "consim",
            "ServerMode": True,
            "Version": CONSUL_VERSION,
        }

    def _primary(self) -> str:
        return self.node.datacenter

    def member(self) -> dict[str, Any]:
        """This agent's LAN member, exactly as its own ``/v1/agent/members`` lists it (Consul's
        ``LocalMember``); a static stand-in when gossip is off or the server is down."""
        pool = self.node.lan_pool
        if pool is not None and pool.core is not None and self.node.running:
            for m in pool.members():
                if m.name == self.node_name:
                    return m.to_api()
        spec = self.node.spec
        tags = consul_server_tags(
            dc=spec.datacenter,
            node_id=self.node.node_id,
            extra={"raft_vsn": str(self.node.raft_protocol)},
        )
        return Member(spec.name, spec.host, 8301, tags, 1, 0).to_api()

    def members(self, wan: bool, token: str = "") -> tuple[list[dict[str, Any]], bool]:
        """The members this token may see (node:read on each name, Consul's filterMembers), and
        whether any were left out."""
        authorizer = self._authorizer(token)
        pool = self._pool(wan)
        every = pool.members()
        shown = [m for m in every if authorizer.allowed("node", "read", m.name)]
        return [m.to_api() for m in shown], len(shown) != len(every)

    def _pool(self, wan: bool) -> GossipPool:
        pool = self.node.wan_pool if wan else self.node.lan_pool
        if pool is None or not self.node.running:
            raise RpcError("server is not running")
        return pool

    def _authorizer(self, token: str) -> Any:
        return authorize(self.node, {"Token": token})

    @property
    def user_event_log(self) -> Any:
        return self.node.user_events

    def new_event_id(self) -> int:
        return self.node.rng.getrandbits(128)

    def metrics(self, token: str = "") -> dict[str, Any]:
        """go-metrics' in-memory sink as Consul shows it: gauges of this server's Raft and
        gossip state, counters from its own counts (``consim.*``)."""
        self._require(token, "agent", "read", self.node_name)
        node = self.node
        core = node.core
        labels: dict[str, str] = {}
        gauges: list[dict[str, Any]] = []

        def gauge(name: str, value: float) -> None:
            gauges.append({"Name": name, "Value": float(value), "Labels": labels})

        if core is not None:
            gauge("consul.raft.commitNumLogs", core.commit_index)
            gauge("consul.raft.last_index", core.last_index)
            gauge("consul.raft.term", core.term)
            gauge("consul.raft.leader", 1 if core.leader_id == node.server_id else 0)
        gauge("consul.raft.applied_index", node.fsm.last_applied)
        gauge("consul.kvs.entries", len(node.fsm.kvs.entries))
        if node.lan_pool is not None:
            gauge("consul.serf.lan.members", len(node.lan_pool.members()))
        counters = [
            {"Name": f"consim.{name}", "Count": 1, "Rate": 0.0, "Sum": float(value),
             "Min": float(value), "Max": float(value), "Mean": float(value), "Stddev": 0.0,
             "Labels": labels}
            for name, value in sorted(node.counters.items())
        ]  # fmt: skip
        now = node.events.now()
        when = VIRTUAL_EPOCH + timedelta(seconds=int(now // 10 * 10))
        return {
            "Timestamp": when.strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
            "Gauges": gauges,
            "Points": [],
            "Counters": counters,
            "Samples": [],
        }

    def _require(self, token: str, resource: str, level: str, segment: str | None = None) -> None:
        require(self.node, {"Token": token}, resource, level, segment)

    async def force_leave(self, node: str, prune: bool, token: str) -> None:
        self._require(token, "operator", "write")
        lan = self._pool(False)
        wan = self._pool(True)
        found = False
        for pool, name in (
            (lan, node),
            (wan, node if "." in node else f"{node}.{self.datacenter}"),
        ):
            if any(m.name == name for m in pool.members()):
                pool.force_leave(name, prune)
                found = True
        if not found:
            raise RpcError(f"agent: No node found with name '{node}'")

    async def join(self, address: str, wan: bool, token: str) -> None:
        self._require(token, "agent", "write", self.node_name)
        port = 8302 if wan else 8301
        # memberlist's ensurePort: a bare host gets the pool's port.
        target = address
        if not has_port(address):
            host = address.strip("[]")
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        await self._pool(wan).join(target, given=address)

    async def leave(self, token: str) -> None:
        # Consul's AgentLeave: agent:write, then Leave() (out of the Raft configuration and both
        # gossip pools) and ShutdownAgent(): the server stops serving.
        self._require(token, "agent", "write", self.node_name)
        if self._leave is not None:
            await self._leave()
            return
        self._pool(False).leave()
        self._pool(True).leave()

    def check_agent_write(self, token: str) -> None:
        """agent:write on this agent (what its token and reload endpoints require)."""
        self._require(token, "agent", "write", self.node_name)

    async def reload(self, token: str) -> None:
        """Consul's AgentReload after its agent:write check. consim's configuration is fixed
        when the cluster starts, so there is nothing to read again: the reload succeeds."""
        self._require(token, "agent", "write", self.node_name)

    @property
    def user_token(self) -> str:
        """The agent's default ("user") token: what a request without a token runs as."""
        return self.tokens.get("default", "")

    def update_token(self, kind: str, value: str, token: str) -> None:
        """Consul's AgentToken after its ACL-enabled check: agent:write, then the token of
        ``kind`` (default, agent, agent_recovery, replication, config_file_service_registration,
        dns) is replaced. Only ``default`` changes what consim does (see ``user_token``); the
        others are kept for the agent's own work, which a consim server does without tokens."""
        self._require(token, "agent", "write", self.node_name)
        self.tokens[kind] = value
        self.node.events.emit(
            self.node.name,
            "agent_token_updated",
            {"token": kind},
            subsystem="agent",
            message="Updated agent's ACL token",
        )

    def monitor(
        self, level: str, token: str, json_format: bool = False
    ) -> Callable[[Callable[[str], None]], Callable[[], None]]:
        """Consul's AgentMonitor after agent:read: ``subscribe(line_callback)`` sends every later
        log line of this agent at ``level`` or above, as hclog writes it; returns the
        unsubscribe function."""
        self._require(token, "agent", "read", self.node_name)
        threshold = "ERROR" if level.upper() == "ERR" else level.upper()
        name = self.node_name
        # Live, lines carry the wall clock (as `consim up` prints them); virtual, the log's epoch.
        virtual = isinstance(trio.lowlevel.current_clock(), VirtualClock | MockClock)
        offset = 0.0 if virtual else time.time() - trio.current_time()

        def subscribe(send: Callable[[str], None]) -> Callable[[], None]:
            def forward(event: Event) -> None:
                if event.node == name and level_enabled(event.level, threshold):
                    shown = dataclasses.replace(event, time=event.time + offset)
                    if json_format:
                        send(_hclog_json(shown, virtual) + "\n")
                    else:
                        send(format_hclog(shown, virtual=virtual) + "\n")

            return self.node.events.subscribe(forward)

        return subscribe

    async def keyring_operation(
        self, op: str, key: str | None, relay_factor: int, local_only: bool, token: str
    ) -> list[dict[str, Any]]:
        args = {
            "Op": op,
            "Key": key,
            "LocalOnly": local_only,
            "RelayFactor": relay_factor,
            "Token": token,
            "Forwarded": False,
        }
        return await self.rpc("Internal.KeyringOperation", args)

    async def local(self, op: str, args: dict[str, Any], token: str) -> Any:
        """The agent's own services and checks (``consim.server.agent_local``)."""
        if not self.node.running:
            raise RpcError("server is not running")
        return await local_agent(self.node, op, args, token)

    def report_internal_error(self, where: str, exc: BaseException) -> None:
        self.node.events.emit(
            self.node.name,
            "http_internal_error",
            {"where": where, "error": f"{type(exc).__name__}: {exc}"},
            level="ERROR",
            subsystem="agent.http",
            message="unexpected error serving request",
        )


def _hclog_json(event: Event, virtual: bool) -> str:
    """hclog's JSONFormat line: a JSON object, keys sorted as Go marshals a map (``@level`` in
    lower case, ``@message``, ``@module``, ``@timestamp`` to the microsecond, then the fields)."""
    if virtual:
        when = VIRTUAL_EPOCH + timedelta(seconds=event.time)
    else:
        when = datetime.fromtimestamp(event.time, tz=UTC)
    record: dict[str, Any] = {
        "@level": event.level.lower(),
        "@message": event.message,
        "@module": event.subsystem,
        "@timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    for key, value in event.fields.items():
        if not key.startswith("_"):
            record[key] = value if isinstance(value, bool | int | float | str) else go_value(value)
    return json.dumps(dict(sorted(record.items())), separators=(",", ":"), ensure_ascii=False)


def has_port(address: str) -> bool:
    """memberlist's hasPort: ``host:port``, ``[v6]:port``; a bare IPv6 host has no port."""
    if address.startswith("["):
        return "]:" in address
    return address.count(":") == 1
