"""Where an RPC is served (Consul's ``rpc.go``: ``Server.RPC``, ``forward``, ``forwardDC``).

A request for another datacenter goes to one of its servers (from the membership's routes); a
local method is answered here; a stale read is answered here when this server has heard from a
leader recently enough; everything else runs on the leader, and a follower forwards it there,
waiting up to the hold timeout (``rpc_hold_timeout``) for a leader to be known.
"""

from __future__ import annotations

from typing import Any

import trio

from consim.net.consul_pool import ConsulPool
from consim.net.network import ConnectionLost, Network, RpcError, RpcTimeout, Unreachable
from consim.server.endpoints import HANDLERS, Handler
from consim.server.endpoints.registry import LOCALS, READS
from consim.server.interface import Server
from consim.server.raft_driver import ERR_NOT_LEADER
from consim.server.rpc_structs import decode_reply, encode_args, sorted_on_wire
from consim.structs import JITTER_FRACTION

# Consul's error texts.
ERR_NO_LEADER = "No cluster leader"
ERR_NO_PATH = "No path to datacenter"
ERR_NO_DC_SERVER = "Remote DC has no server currently reachable"
ERR_RPC_EOF = "rpc error making call: EOF"

# RPC methods that only read; they may be served stale.
READ_METHODS = frozenset(
    {
        "Operator.RaftGetConfiguration",
        "KVS.Get",
        "KVS.List",
        "KVS.ListKeys",
        "Operator.AutopilotGetConfiguration",
        "Operator.ServerHealth",
        "Operator.AutopilotState",
    }
)
# Reads Consul "must send to the leader": its handlers clear AllowStale and set RequireConsistent
# before forwarding, since autopilot's state lives on the leader (a follower's is empty, or
# frozen from when it last led), so ``?stale`` still gets the leader's view.
LEADER_READS = frozenset({"Operator.ServerHealth", "Operator.AutopilotState"})
# Answered by whichever server receives them (Consul's Status endpoint never forwards in-DC).
LOCAL_METHODS = frozenset(
    {
        "Status.Leader",
        "Status.Peers",
        "Status.Ping",
        "Status.RaftStats",
        "Internal.KeyringOperation",
    }
)


class Forwarder:
    """One server's RPC routing."""

    def __init__(self, server: Server, net: Network, *, hold_timeout: float) -> None:
        self.server = server
        self.net = net
        self.hold_timeout = hold_timeout
        self.pool = ConsulPool(net, server.address)

    def reset_pool(self) -> None:
        """Drop every pooled connection (a crash or restart: the next calls dial again)."""
        self.pool.close()
        self.pool = ConsulPool(self.net, self.server.address)

    async def call(self, address: str, method: str, args: dict[str, Any], timeout: float) -> Any:
        """One RPC to another server in Consul's format (its RPC port, yamux, net/rpc)."""
        wire = encode_args(method, args)
        reply = await self.pool.call(
            address,
            method,
            wire,
            timeout,
            sort=sorted_on_wire(method),
            idempotent=method in READ_METHODS or method in LOCAL_METHODS,
        )
        return decode_reply(method, reply)

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        """Consul's ``Server.RPC``: forward to another datacenter or to the leader, or serve."""
        server = self.server
        handler = HANDLERS.get(method)
        if handler is None:
            raise RpcError(f"rpc: can't find method {method}")
        datacenter = args.get("Datacenter") or server.datacenter
        if datacenter != server.datacenter:
            return await self.forward_dc(method, args, datacenter)
        if method in LOCAL_METHODS or method in LOCALS:
            return await handler(server, args)
        is_read = method in READ_METHODS or method in READS
        if method in LEADER_READS:
            args = {**args, "AllowStale": False, "RequireConsistent": True}
        if is_read and args.get("AllowStale") and server.has_heard_from_leader():
            max_stale = float(args.get("MaxStaleDuration") or 0)
            if max_stale > 0 and server.last_contact_seconds() > max_stale:
                # Too far behind for this caller: re-run as a default read on the leader.
                args = {**args, "AllowStale": False, "MaxStaleDuration": 0}
            else:
                return await handler(server, args)
        if server.is_leader():  # forward_to_leader's first step, without its frame
            return await handler(server, args)
        return await self.forward_to_leader(method, args, handler, is_read)

    async def forward_to_leader(
        self, method: str, args: dict[str, Any], handler: Handler, is_read: bool
    ) -> Any:
        server = self.server
        deadline = trio.current_time() + self.hold_timeout
        while True:
            if server.is_leader():
                return await handler(server, args)
            leader = server.leader_address()
            if leader and leader != server.address:
                try:
                    return await self.call(leader, method, args, timeout=rpc_timeout(args))
                except ConnectionLost:
                    # The leader died while handling it: a write may be committed anyway (the
                    # next leader has it), so retrying would apply it twice. Consul answers so.
                    if not is_read:
                        raise RpcError(ERR_RPC_EOF) from None
                except Unreachable:
                    pass  # never delivered: safe to retry for reads and writes alike
                except RpcTimeout:
                    if not is_read:
                        raise RpcError("rpc error: timeout waiting for the leader") from None
                except RpcError as exc:
                    if exc.message != ERR_NOT_LEADER:
                        raise
            now = trio.current_time()
            if now >= deadline:
                raise RpcError(ERR_NO_LEADER)
            stagger = server.rng.random() * (self.hold_timeout / JITTER_FRACTION)
            await trio.sleep(min(stagger, max(0.0, deadline - now)) or 0.001)

    async def forward_dc(self, method: str, args: dict[str, Any], datacenter: str) -> Any:
        server = self.server
        known, servers = server.datacenter_routes(datacenter)
        if not known:
            raise RpcError(ERR_NO_PATH)
        order = list(servers)
        server.rng.shuffle(order)
        # A server behind a WAN partition stays "alive" until WAN gossip notices (tens of
        # seconds), so bound each non-blocking attempt by the hold timeout and try the next one.
        timeout = rpc_timeout(args)
        if int(args.get("MinQueryIndex") or 0) == 0:
            timeout = min(timeout, self.hold_timeout)
        for address in order:
            try:
                return await self.call(address, method, args, timeout=timeout)
            except ConnectionLost:
                # That server may have handled it: another one would apply a write again. Reads,
                # status and keyring operations (idempotent) may go to the next server.
                if not ({method} & (READ_METHODS | LOCAL_METHODS | READS | LOCALS)):
                    raise RpcError(ERR_RPC_EOF) from None
            except (Unreachable, RpcTimeout):
                continue
        raise RpcError(ERR_NO_DC_SERVER)


def rpc_timeout(args: dict[str, Any]) -> float:
    # Only blocking queries (MinQueryIndex > 0) may legitimately take MaxQueryTime; give them
    # headroom like Consul does. Everything else gets the plain RPC timeout.
    if int(args.get("MinQueryIndex") or 0) > 0:
        return max(10.0, float(args.get("MaxQueryTime") or 0) * 1.1 + 1.0)
    return 10.0
