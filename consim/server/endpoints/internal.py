"""Consul's Internal endpoint (``internal_endpoint.go``): the keyring operation.

``Internal.KeyringOperation`` runs on whichever server receives it (no leader needed): the WAN
pool once, then one server in every datacenter answers for its own LAN pool."""

from __future__ import annotations

from typing import Any

from consim.net.network import RpcError
from consim.server.endpoints.registry import authorize, endpoint, require
from consim.server.gossip_driver import keyring_entry
from consim.server.interface import Server
from consim.server.user_events import EVENT_PREFIX, USER_EVENT_SIZE_LIMIT, encode


@endpoint("Internal.KeyringOperation")
async def keyring_operation(node: Server, args: dict[str, Any]) -> list[dict[str, Any]]:
    op = str(args.get("Op", ""))
    require(node, args, "keyring", "read" if op == "list" else "write")
    key = args.get("Key")
    relay = int(args.get("RelayFactor") or 0)
    if node.lan_pool is None or node.wan_pool is None:
        raise RpcError("gossip is not enabled on this server")
    out: list[dict[str, Any]] = []
    if args.get("LocalOnly"):
        response = await node.lan_pool.keyring_query(op, key, relay)
        return [keyring_entry(response, wan=False, datacenter=node.datacenter)]
    if not args.get("Forwarded"):
        wan = await node.wan_pool.keyring_query(op, key, relay)
        out.append(keyring_entry(wan, wan=True, datacenter=node.datacenter))
        forwarded = {**args, "Forwarded": True}
        for datacenter in node.known_datacenters():
            if datacenter == node.datacenter:
                lan = await node.lan_pool.keyring_query(op, key, relay)
                out.append(keyring_entry(lan, wan=False, datacenter=node.datacenter))
            else:
                out.extend(
                    await node.forward_dc("Internal.KeyringOperation", forwarded, datacenter)
                )
        return out
    lan = await node.lan_pool.keyring_query(op, key, relay)
    return [keyring_entry(lan, wan=False, datacenter=node.datacenter)]


# Consul's Internal.EventFire: a user event goes out on this datacenter's LAN pool as the serf
# user event consul:event:<name> (consim.server.user_events).
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
