"""Static description of a cluster and of its servers: what scenario files and ``consim up`` build,
and what both clocks run (neither server/ nor the runtime owns it)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from consim.acl import ACLConfig
from consim.raft.config import RaftConfig
from consim.raft.types import Configuration
from consim.tls.config import TLSConfig

RPC_PORT = 8300
SERF_LAN_PORT = 8301
SERF_WAN_PORT = 8302
HTTP_PORT = 8500


def server_host(dc_index: int, server_number: int) -> str:
    """Server k (1-based) of the d-th datacenter (0-based) lives on 127.0.d.k, as in Consul's docs."""
    return f"127.0.{dc_index}.{server_number}"


def server_name(datacenter: str, server_number: int) -> str:
    return f"{datacenter}-s{server_number}"


@dataclass(frozen=True)
class ServerSpec:
    """Identity and addresses of one server; stays the same across crashes and restarts."""

    name: str
    datacenter: str
    host: str
    http_port: int = HTTP_PORT
    # Consul's node-id (a GUID); the Raft server id under raft protocol 3.
    node_id: str = ""

    @property
    def rpc_address(self) -> str:
        return f"{self.host}:{RPC_PORT}"

    @property
    def serf_lan_address(self) -> str:
        return f"{self.host}:{SERF_LAN_PORT}"

    @property
    def serf_wan_address(self) -> str:
        return f"{self.host}:{SERF_WAN_PORT}"

    @property
    def http_address(self) -> str:
        return f"{self.host}:{self.http_port}"


@dataclass(frozen=True)
class NetworkModel:
    """One-way delays in seconds; ``wan`` overrides ``wan_latency`` per datacenter pair (either
    order). ``bandwidth`` (bytes per second per link, 0 = unlimited; simulator only) makes a
    message wait for the ones before it on its link to be sent and takes size/bandwidth to send."""

    lan_latency: float = 0.0
    lan_jitter: float = 0.0
    wan_latency: float = 0.0
    wan_jitter: float = 0.0
    wan: tuple[tuple[str, str, float], ...] = ()
    loss: float = 0.0
    bandwidth: float = 0.0

    def __post_init__(self) -> None:
        for name in ("lan_latency", "lan_jitter", "wan_latency", "wan_jitter"):
            value = getattr(self, name)
            if not 0.0 <= value < float("inf"):
                raise ValueError(f"{name} must be a duration >= 0, got {value!r}")
        for a, b, seconds in self.wan:
            if not 0.0 <= seconds < float("inf"):
                raise ValueError(f"wan latency {a}-{b} must be >= 0, got {seconds!r}")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be a probability from 0 to below 1, got {self.loss!r}")
        if not 0.0 <= self.bandwidth < float("inf"):
            raise ValueError(f"bandwidth must be bytes per second >= 0, got {self.bandwidth!r}")

    def one_way(self, src_dc: str | None, dst_dc: str | None) -> float:
        """The base one-way latency between hosts of these datacenters (None: not a server,
        taken as in the other end's datacenter)."""
        if src_dc is None or dst_dc is None or src_dc == dst_dc:
            return self.lan_latency
        for a, b, seconds in self.wan:
            if {a, b} == {src_dc, dst_dc}:
                return seconds
        return self.wan_latency

    def jitter(self, src_dc: str | None, dst_dc: str | None) -> float:
        if src_dc is None or dst_dc is None or src_dc == dst_dc:
            return self.lan_jitter
        return self.wan_jitter

    def describe(self) -> str:
        parts = [f"LAN {_ms(self.lan_latency)}"]
        if self.lan_jitter:
            parts[-1] += f" ± {_ms(self.lan_jitter)}"
        parts.append(f"WAN {_ms(self.wan_latency)}")
        if self.wan_jitter:
            parts[-1] += f" ± {_ms(self.wan_jitter)}"
        parts += [f"{a}-{b} {_ms(s)}" for a, b, s in self.wan]
        if self.loss:
            parts.append(f"loss {self.loss:g}")
        if self.bandwidth:
            parts.append(f"{self.bandwidth * 8 / 1e6:g} Mbit/s a link")
        return "one-way: " + ", ".join(parts)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"


@dataclass(frozen=True)
class ClusterSpec:
    """Everything needed to build a cluster; scenario files and ``consim up`` both produce one."""

    datacenters: tuple[tuple[str, int], ...] = (("dc1", 3),)
    seed: int = 0
    raft_multiplier: float = 5.0
    # raft protocol 3: server ids are GUID node ids; protocol 2: id == address.
    raft_protocol: int = 3
    rpc_hold_timeout: float = 7.0
    data_dir: Path | None = None
    http_port: int = HTTP_PORT
    # Consul's limits.http_max_conns_per_client (live HTTP; 0 = no limit).
    http_max_conns_per_client: int = 200
    # Datacenter d's servers live on 127.0.<host_block + d>.<k>. 0 is Consul's documented layout;
    # another block lets a second live cluster (a test, a benchmark) share the machine.
    host_block: int = 0
    acl: ACLConfig = field(default_factory=ACLConfig)
    # TLS on the server port (consim.tls.config); None = plaintext, as Consul without TLS.
    tls: TLSConfig | None = None
    encrypt: str | None = None
    # Scales gossip intervals (1.0 = memberlist's defaults).
    gossip_scale: float = 1.0
    # Snapshot threshold/interval/trailing logs overrides (None = 8192 entries, checked every
    # random 30-60 s as Consul does, and 10240 entries kept).
    snapshot_threshold: int | None = None
    snapshot_interval: float | None = None
    trailing_logs: int | None = None
    # Latency and loss between hosts (consim.net.model); None: the simulator's historical
    # 0.5-2 ms per host pair, and no added delay live.
    network: NetworkModel | None = None
    # Pre-vote on every server (off for clusters with hashicorp/raft 1.1.2 nodes, which lack it).
    pre_vote: bool = True
    # A static initial Raft configuration (Consul's peers.json, protocol 3): the servers it names
    # bootstrap with it (a consim server is matched by its RPC address and takes the entry's id);
    # it may name other Raft nodes too. None: the cluster's own servers, as usual.
    raft_peers: Configuration | None = None

    def servers(self) -> list[ServerSpec]:
        out: list[ServerSpec] = []
        for d, (dc, count) in enumerate(self.datacenters):
            for k in range(1, count + 1):
                out.append(
                    ServerSpec(
                        name=server_name(dc, k),
                        datacenter=dc,
                        host=server_host(self.host_block + d, k),
                        http_port=self.http_port,
                    )
                )
        return out

    def raft_config(self) -> RaftConfig:
        """Every server's Raft timing (from ``raft_multiplier``) with this cluster's snapshot
        overrides."""
        config = RaftConfig.for_multiplier(self.raft_multiplier)
        overrides: dict[str, Any] = {}
        if not self.pre_vote:
            overrides["pre_vote"] = False
        if self.snapshot_threshold is not None:
            overrides["snapshot_threshold"] = self.snapshot_threshold
        if self.snapshot_interval is not None:
            overrides["snapshot_interval"] = self.snapshot_interval
        if self.trailing_logs is not None:
            overrides["trailing_logs"] = self.trailing_logs
        return replace(config, **overrides) if overrides else config

    def server_options(self) -> dict[str, Any]:
        """The cluster-wide options every ``ServerNode`` takes, by its parameter names."""
        return {
            "raft_protocol": self.raft_protocol,
            "rpc_hold_timeout": self.rpc_hold_timeout,
            "acl": self.acl,
            "tls": self.tls,
            "data_dir": self.data_dir,
            "encrypt": self.encrypt,
            "gossip_scale": self.gossip_scale,
            "raft_peers": self.raft_peers,
        }

    def datacenter_of_hosts(self) -> dict[str, str]:
        """Each server host's datacenter (what the network model needs to tell LAN from WAN)."""
        return {s.host: s.datacenter for s in self.servers()}

    def datacenter_names(self) -> list[str]:
        return [dc for dc, _ in self.datacenters]
