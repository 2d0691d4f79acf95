"""Consul's Internal.EventFire (``internal_endpoint.go``): a user event goes out on this
datacenter's LAN pool as the serf user event ``consul:event:<name>``."""

from __future__ import annotations

from typing import Any

from consim.net.network import RpcError
from consim.server.endpoints.registry import authorize, endpoint
from consim.server.interface import Server
from consim.server.user_events import EVENT_PREFIX, USER_EVENT_SIZE_LIMIT, encode


@endpoint("Internal.EventFire", local=True)
async def event_fire(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    authorize(node, args)  # an unknown token is refused; event rules are not modelled
    event = dict(args.get("Event") or {})
    name = str(event.get("Name") or "")
    payload = encode(event)
    serf_name = EVENT_PREFIX + name
    if len(serf_name) + len(payload) > USER_EVENT_SIZE_LIMIT:
        raise RpcError(
            f"user event exceeds configured limit of {USER_EVENT_SIZE_LIMIT} bytes before encoding"
        )
    if node.lan_pool is None:
        raise RpcError("server is not running")
    node.lan_pool.user_event(serf_name, payload)
    return {}
