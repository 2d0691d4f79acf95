"""The leader keeps the catalog in step with LAN gossip (Consul's ``reconcileMember``).

Every alive Consul server is registered with its ``consul`` service and a passing
``serfHealth`` check; a failed member's ``serfHealth`` turns critical (which invalidates the
sessions that depend on it); a member that left, or was reaped, is deregistered; a catalog node
with a ``serfHealth`` check that gossip no longer knows is deregistered too (reconcileReaped).
Client agents (role ``node``) get the node and the check, without the service. A registration
that would change nothing is not proposed.
"""

from __future__ import annotations

from typing import Any

from consim import CONSUL_VERSION
from consim.gossip.types import STATUS_ALIVE, STATUS_FAILED, STATUS_LEFT
from consim.server.state.base import encode_command
from consim.server.state.catalog import CRITICAL, PASSING
from consim.server.state.sessions import SERF_CHECK_ID

SERF_CHECK_NAME = "Serf Health Status"
ALIVE_OUTPUT = "Agent alive and reachable"
FAILED_OUTPUT = "Agent not live or unreachable"
CONSUL_SERVICE = "consul"


def _check(node: str, status: str, output: str) -> dict[str, Any]:
    return {
        "Node": node,
        "CheckID": SERF_CHECK_ID,
        "Name": SERF_CHECK_NAME,
        "Status": status,
        "Notes": "",
        "Output": output,
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": None,
        "Type": "",
        "Interval": "",
        "Timeout": "",
        "ExposedPort": 0,
        "Definition": {},
    }


def server_service(member: Any) -> dict[str, Any]:
    tags = member.tags
    return {
        "Kind": "",
        "ID": CONSUL_SERVICE,
        "Service": CONSUL_SERVICE,
        "Tags": None,
        "Address": "",
        "TaggedAddresses": None,
        "Meta": {
            "non_voter": "false",
            "raft_version": tags.get("raft_vsn", "3"),
            "read_replica": "false",
            "serf_protocol_current": "2",
            "serf_protocol_max": "5",
            "serf_protocol_min": "1",
            "version": tags.get("build", CONSUL_VERSION).split(":")[0],
        },
        "Port": int(tags.get("port", "8300")),
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
    }


def node_of(member: Any, datacenter: str) -> dict[str, Any]:
    return {
        "ID": member.tags.get("id", ""),
        "Node": member.name,
        "Address": member.addr,
        "Datacenter": datacenter,
        "TaggedAddresses": {
            "lan": member.addr,
            "lan_ipv4": member.addr,
            "wan": member.addr,
            "wan_ipv4": member.addr,
        },
        "Meta": {"consul-network-segment": "", "consul-version": CONSUL_VERSION},
    }


def pending_changes(fsm: Any, members: list[Any], datacenter: str, self_name: str) -> list[bytes]:
    """The Register/Deregister commands that bring the catalog in line with ``members``."""
    catalog = fsm.catalog
    commands: list[bytes] = []
    known: set[str] = set()
    for member in sorted(members, key=lambda m: m.name):
        role = member.tags.get("role")
        if role not in ("consul", "node") or member.tags.get("dc", datacenter) != datacenter:
            continue  # not a Consul agent of this datacenter (e.g. a plain serf agent)
        known.add(member.name)
        existing = catalog.nodes.get(member.name)
        check = catalog.checks.get(member.name, {}).get(SERF_CHECK_ID)
        if member.status == STATUS_ALIVE:
            node = node_of(member, datacenter)
            service = server_service(member) if role == "consul" else None
            current = catalog.services.get(member.name, {}).get(CONSUL_SERVICE)
            same_node = existing is not None and all(existing.get(k) == v for k, v in node.items())
            same_service = service is None or (
                current is not None and all(current.get(k) == v for k, v in service.items())
            )
            if same_node and same_service and check is not None and check["Status"] == PASSING:
                continue
            commands.append(
                encode_command(
                    "Register",
                    {
                        "Node": node,
                        "Service": service,
                        "Checks": [_check(member.name, PASSING, ALIVE_OUTPUT)],
                        "SkipNodeUpdate": False,
                    },
                )
            )
        elif member.status == STATUS_FAILED:
            if existing is None or (check is not None and check["Status"] == CRITICAL):
                continue
            commands.append(
                encode_command(
                    "Register",
                    {
                        "Node": node_of(member, datacenter),
                        "Service": None,
                        "Checks": [_check(member.name, CRITICAL, FAILED_OUTPUT)],
                        "SkipNodeUpdate": True,
                    },
                )
            )
        elif member.status == STATUS_LEFT and existing is not None and member.name != self_name:
            commands.append(encode_command("Deregister", {"Node": member.name}))
    # reconcileReaped: a node gossip no longer knows, whose health serf vouched for.
    for name in sorted(catalog.nodes):
        if name in known or name == self_name:
            continue
        if SERF_CHECK_ID in catalog.checks.get(name, {}):
            commands.append(encode_command("Deregister", {"Node": name}))
    return commands


async def reconcile_catalog(node: Any) -> None:
    """Propose what ``pending_changes`` finds, one command at a time (RpcError propagates)."""
    if node.lan_pool is None:
        return
    for command in pending_changes(node.fsm, node.lan_pool.members(), node.datacenter, node.name):
        await node.apply_command(command)
