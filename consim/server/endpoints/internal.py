"""Consul's Internal endpoint (``internal_endpoint.go``): the keyring operation.

``Internal.KeyringOperation`` runs on whichever server receives it (no leader needed): the WAN
pool once, then one server in every datacenter answers for its own LAN pool."""

from __future__ import annotations

from typing import Any

from consim.net.network import RpcError
from consim.server.endpoints.registry import endpoint, require
from consim.server.gossip_driver import keyring_entry
from consim.server.interface import Server


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
