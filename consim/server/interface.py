"""What the server's parts may ask of the server: the one public face they reach it through.

``Server`` is all an RPC endpoint, the forwarding code and the leader's duties (reconcile,
autopilot) use; ``ServerNode`` provides it. It extends ``gossip_driver.PoolHost`` (what a gossip
pool needs of its server). Both are Protocols, so the parts import this module and never
``node.py``: the server is wired in ``node.py`` from parts that do not know it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from consim.acl import ACLConfig
from consim.raft.config import RaftConfig
from consim.raft.core import RaftCore
from consim.server.fsm import StateMachine
from consim.server.gossip_driver import GossipPool, PoolHost
from consim.server.session_ttl import SessionTimers
from consim.server.user_events import UserEventLog
from consim.spec import ServerSpec


class Server(PoolHost, Protocol):
    """One running Consul server as its endpoints and leader duties see it.

    Reads: identity, configuration, the state machine, the Raft core of this incarnation
    (``raft()`` raises ``server is not running`` when there is none) and the membership views.
    Writes go through Raft only: ``apply_command`` (a state machine command) and
    ``change_configuration`` (a membership change), both waited on until applied here.
    """

    server_id: str
    address: str
    acl: ACLConfig
    rng: random.Random
    raft_config: RaftConfig
    incarnation: int
    lan_pool: GossipPool | None
    # The user events this agent received (serf user events named consul:event:*).
    user_events: UserEventLog
    wan_pool: GossipPool | None
    # The leader's autopilot bookkeeping: ((incarnation, term), {server id: tracked health}).
    autopilot_tracked: tuple[tuple[int, int], dict[str, Any]] | None
    # The leader's session TTL timers (idle on a follower).
    session_timers: SessionTimers

    @property
    def fsm(self) -> StateMachine: ...

    @property
    def core(self) -> RaftCore | None:
        """This incarnation's Raft core, or None while the server is down."""

    @property
    def consistent_ready(self) -> bool:
        """True on a leader once its barrier entry is applied (Consul's consistent reads)."""

    def raft(self) -> RaftCore:
        """The running Raft core; ``RpcError('server is not running')`` otherwise."""

    def flush_raft(self) -> None:
        """Handle what the Raft core has ready after a direct call into it."""

    async def apply_command(self, data: bytes, command: dict[str, Any] | None = None) -> Any:
        """Propose a state machine command on the leader; its result once applied here.
        ``command``: what ``data`` decodes to, when the caller has it (this server then applies
        it without decoding ``data`` again)."""

    async def change_configuration(self, propose: Callable[[float], int]) -> Any:
        """Run ``propose(now)`` (a RaftCore membership call returning the entry's index) and
        wait until that entry is applied here."""

    async def verify_leader(self) -> bool:
        """Ask a quorum whether this server is still the leader."""

    async def wait_fsm_change(self) -> None:
        """Return after the state machine next changes."""

    def is_leader(self) -> bool: ...

    def leader_address(self) -> str: ...

    def has_heard_from_leader(self) -> bool: ...

    def last_contact_seconds(self) -> float: ...

    def known_datacenters(self) -> list[str]: ...

    def member_names(self) -> dict[str, str]:
        """RPC address -> node name of this datacenter's servers."""

    def datacenter_routes(self, datacenter: str) -> tuple[bool, list[str]]: ...

    async def forward_dc(self, method: str, args: dict[str, Any], datacenter: str) -> Any:
        """Send an RPC to a server of another datacenter."""

    def directory_servers(self) -> list[ServerSpec]:
        """Every server the cluster's static directory knows (all datacenters)."""

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        """Consul's ``Server.RPC``: serve here, or forward to the leader or another datacenter."""

    async def call(self, address: str, method: str, args: dict[str, Any], timeout: float) -> Any:
        """One RPC from this server to ``address``."""
