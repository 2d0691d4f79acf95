"""Consul's Status endpoint (``status_endpoint.go``): answered by whichever server receives it."""

from __future__ import annotations

from typing import Any

from consim.server.endpoints.registry import endpoint
from consim.server.interface import Server


@endpoint("Status.Ping")
async def status_ping(node: Server, args: dict[str, Any]) -> Any:
    return True


@endpoint("Status.Leader")
async def status_leader(node: Server, args: dict[str, Any]) -> str:
    return node.leader_address()


@endpoint("Status.Peers")
async def status_peers(node: Server, args: dict[str, Any]) -> list[str]:
    # Consul's RPC lists every server of the configuration (its wire layer asks for that with
    # AllServers); the HTTP API's /v1/status/peers shows the voters.
    core = node.raft()
    servers = core.latest_configuration.servers
    if args.get("AllServers"):
        return [s.address for s in servers]
    return [s.address for s in servers if s.is_voter]


@endpoint("Status.RaftStats")
async def status_raft_stats(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    core = node.raft()
    return {
        "LastTerm": core.last_term,
        "LastIndex": core.last_index,
        "LastContact": node.last_contact_seconds() if core.last_contact is not None else -1.0,
    }
