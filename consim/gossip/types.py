"""Plain data the gossip core hands to its driver: members, events, query results, Ready."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consim import CONSUL_VERSION
from consim.core_events import CoreEvent

# What ``consim.gossip`` re-exports from here.
__all__ = [
    "STATUS_NONE",
    "STATUS_ALIVE",
    "STATUS_LEAVING",
    "STATUS_LEFT",
    "STATUS_FAILED",
    "GossipError",
    "Member",
    "consul_server_tags",
    "GossipEvent",
    "KeyringResponse",
    "QueryResponse",
    "GossipReady",
]

# Consul's member status numbers (serf MemberStatus), as /v1/agent/members reports them.
STATUS_NONE = 0
STATUS_ALIVE = 1
STATUS_LEAVING = 2
STATUS_LEFT = 3
STATUS_FAILED = 4

STATUS_NAMES = {
    STATUS_NONE: "none",
    STATUS_ALIVE: "alive",
    STATUS_LEAVING: "leaving",
    STATUS_LEFT: "left",
    STATUS_FAILED: "failed",
}


class GossipError(ValueError):
    """An operator request the core refuses; ``str(err)`` is Consul's text."""


@dataclass(frozen=True)
class Member:
    """One member of a pool as serf reports it."""

    name: str
    addr: str
    port: int
    tags: dict[str, str]
    status: int
    incarnation: int = 0

    @property
    def address(self) -> str:
        return f"{self.addr}:{self.port}"

    @property
    def status_name(self) -> str:
        return STATUS_NAMES[self.status]

    def to_api(self) -> dict[str, Any]:
        """The /v1/agent/members shape (protocol numbers as Consul 1.x reports them)."""
        return {
            "Name": self.name,
            "Addr": self.addr,
            "Port": self.port,
            "Tags": dict(sorted(self.tags.items())),
            "Status": self.status,
            "ProtocolMin": 1,
            "ProtocolMax": 5,
            "ProtocolCur": 2,
            "DelegateMin": 2,
            "DelegateMax": 5,
            "DelegateCur": 4,
        }


def consul_server_tags(
    *, dc: str, node_id: str, rpc_port: int = 8300, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The tags a Consul server advertises in both pools."""
    tags = {
        "role": "consul",
        "dc": dc,
        "vsn": "2",
        "vsn_min": "2",
        "vsn_max": "3",
        "raft_vsn": "3",
        "port": str(rpc_port),
        "id": node_id,
        # Consul's "version:revision"; no "expect" tag, which Consul sets only with
        # bootstrap_expect (consim bootstraps from a static configuration).
        "build": f"{CONSUL_VERSION}:consim",
    }
    tags.update(extra or {})
    return tags


# Something the gossip driver should log (serf-like ``message`` at hclog ``level``).
GossipEvent = CoreEvent


@dataclass
class KeyringResponse:
    """serf's KeyResponse, aggregated by the query originator.

    ``error`` is ``None`` on full success, else serf keymanager's text:
    ``"%d/%d nodes reported failure"`` or ``"%d/%d nodes reported success"``.
    """

    op: str
    num_nodes: int
    num_resp: int = 0
    num_err: int = 0
    messages: dict[str, str] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    primary_keys: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class QueryResponse:
    """A non-keyring query's result: who answered, with what payload."""

    name: str
    num_nodes: int
    responses: dict[str, Any] = field(default_factory=dict)

    @property
    def num_resp(self) -> int:
        return len(self.responses)


@dataclass
class GossipReady:
    """Everything produced since the last ``ready()``; the driver sends, logs and delivers it."""

    datagrams: list[tuple[str, bytes]] = field(default_factory=list)
    # Stream exchanges to start (memberlist push-pull over TCP): write the bytes to the
    # address, read one stream message back, hand it to ``receive_stream_reply``.
    streams: list[tuple[str, bytes]] = field(default_factory=list)
    events: list[GossipEvent] = field(default_factory=list)
    query_results: list[tuple[int, KeyringResponse | QueryResponse]] = field(default_factory=list)
    # Outcomes of ``join(..., once=True)``: (join id, None when the push-pull answer arrived and
    # merged, else memberlist's error text, "Failed to join <addr>: <reason>").
    join_results: list[tuple[int, str | None]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.datagrams or self.streams or self.events or self.query_results or self.join_results
        )
