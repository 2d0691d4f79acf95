"""Consul's Health endpoint (``health_endpoint.go``): checks by node, service and state, and
service instances with their checks (``?passing``), from the catalog table."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from consim.net.network import RpcError
from consim.server.endpoints.catalog import readable_nodes, record_filter
from consim.server.endpoints.kvs import indexed_reply
from consim.server.endpoints.registry import endpoint
from consim.server.interface import Server
from consim.server.state.catalog import CRITICAL, MAINT, PASSING, WARNING


async def _checks_query(
    node: Server,
    args: dict[str, Any],
    tables: tuple[str, ...],
    checks: Callable[[], Iterable[dict[str, Any]]],
) -> dict[str, Any]:
    """A blocking query's answer: the checks ``checks()`` lists that pass ``?filter``, at the
    highest index of ``tables`` (what the checks are read from)."""
    wanted = record_filter(args)

    def read() -> tuple[int, Any]:
        return node.fsm.max_index(*tables), [dict(c) for c in checks() if wanted(c)]

    return await indexed_reply(node, args, read, "HealthChecks")


@endpoint("Health.NodeChecks", read=True)
async def health_node_checks(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    name = str(args.get("Node") or "")
    return await _checks_query(node, args, ("checks",), lambda: node.fsm.catalog.node_checks(name))


@endpoint("Health.ServiceChecks", read=True)
async def health_service_checks(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    name = str(args.get("ServiceName") or "")
    return await _checks_query(
        node,
        args,
        ("nodes", "services", "checks"),
        lambda: node.fsm.catalog.service_checks(name),
    )


@endpoint("Health.ChecksInState", read=True)
async def health_checks_in_state(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    state = str(args.get("State") or "")
    if state not in ("any", PASSING, WARNING, CRITICAL, MAINT):
        raise RpcError(f"Bad state '{state}'")
    return await _checks_query(
        node, args, ("checks",), lambda: node.fsm.catalog.checks_in_state(state)
    )


@endpoint("Health.ServiceNodes", read=True)
async def health_service_nodes(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    name = str(args.get("ServiceName") or "")
    tags = [str(t) for t in args.get("ServiceTags") or []]
    passing_only = bool(args.get("PassingOnly"))
    readable = readable_nodes(node, args)
    wanted = record_filter(args)

    def read() -> tuple[int, Any]:
        catalog = node.fsm.catalog
        out = []
        for n, s in catalog.service_instances(name):
            if not readable(n["Node"]) or not all(t in (s.get("Tags") or []) for t in tags):
                continue
            # A service's entry carries its node's checks and its own (Consul's CheckServiceNode).
            checks = [
                dict(c)
                for c in catalog.node_checks(n["Node"])
                if not c.get("ServiceID") or c.get("ServiceID") == s["ID"]
            ]
            if passing_only and any(c["Status"] != PASSING for c in checks):
                continue
            entry = {"Node": dict(n), "Service": dict(s), "Checks": checks}
            if wanted(entry):
                out.append(entry)
        if args.get("Connect") or args.get("Ingress") or args.get("PeerName"):
            # No Connect, ingress gateways or cluster peerings in consim: nothing qualifies.
            out = []
        return node.fsm.max_index("nodes", "services", "checks"), out

    return await indexed_reply(node, args, read, "Nodes")
