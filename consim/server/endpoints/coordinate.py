"""Consul's Coordinate endpoint (``coordinate_endpoint.go``): the WAN servers' coordinates by
datacenter, every node's coordinate from the replicated table, and updates.

consim's serf runs no Vivaldi, so every alive server's cached coordinate is serf's initial one
(``initial_coordinate``); a client's ``Coordinate.Update`` is stored as sent. Consul queues
updates on the leader and writes them in batches every ``coordinate_update_period`` (5 s);
consim writes each update through Raft at once.
"""

from __future__ import annotations

import math
from typing import Any

from consim.net.network import RpcError
from consim.server.endpoints.catalog import readable_nodes
from consim.server.endpoints.kvs import indexed_reply
from consim.server.endpoints.registry import endpoint, require
from consim.server.interface import Server
from consim.server.state.base import encode_command
from consim.server.state.coordinates import (
    DIMENSIONALITY,
    CoordinateTable,
    initial_coordinate,
)

AREA_WAN = "wan"  # types.AreaWAN


def _go_float(v: Any) -> str:
    """fmt's %v of a float64: strconv's 'g' with the shortest digits, an exponent when the
    decimal exponent is below -4 or at least 6 (``1e-05``, ``1.5``, ``1e+06``)."""
    if not isinstance(v, int | float) or isinstance(v, bool):
        return str(v)
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0"
    sign = "-" if v < 0 else ""
    mantissa, _, exp_text = repr(abs(v)).partition("e")  # repr: the shortest round trip
    whole, _, frac = mantissa.partition(".")
    raw = whole + frac
    lead = len(raw) - len(raw.lstrip("0"))
    digits = raw.lstrip("0").rstrip("0") or "0"
    exp = len(whole) - 1 - lead + (int(exp_text) if exp_text else 0)
    if exp < -4 or exp >= 6:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    if exp >= 0:
        head, tail = digits[: exp + 1].ljust(exp + 1, "0"), digits[exp + 1 :]
    else:
        head, tail = "0", "0" * (-exp - 1) + digits
    return sign + head + ("." + tail if tail else "")


def _show(coord: Any) -> str:
    # Go's %v of a *coordinate.Coordinate: &{[vec] Error Adjustment Height}
    if not isinstance(coord, dict):
        return "<nil>"
    vec = " ".join(_go_float(x) for x in coord.get("Vec") or [])
    rest = " ".join(_go_float(coord.get(k, 0)) for k in ("Error", "Adjustment", "Height"))
    return f"&{{[{vec}] {rest}}}"


def _finite(coord: dict[str, Any]) -> bool:
    vec = coord.get("Vec") or []
    values = [*vec, *(coord.get(k, 0) or 0 for k in ("Error", "Adjustment", "Height"))]
    return isinstance(vec, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in values
    )


@endpoint("Coordinate.ListDatacenters", local=True)
async def coordinate_list_datacenters(node: Server, args: dict[str, Any]) -> list[dict[str, Any]]:
    """The router's datacenter maps: alive WAN servers with a cached coordinate, the node names
    without their ``.dc`` suffix."""
    pool = node.wan_pool
    by_dc: dict[str, list[dict[str, Any]]] = {}
    for m in pool.members() if pool is not None else []:
        dc = m.tags.get("dc", "")
        if m.tags.get("role") != "consul" or m.status != 1 or not dc:
            continue
        by_dc.setdefault(dc, []).append(
            {"Node": m.name.removesuffix(f".{dc}"), "Segment": "", "Coord": initial_coordinate()}
        )
    return [
        {
            "Datacenter": dc,
            "AreaID": AREA_WAN,
            "Coordinates": sorted(by_dc[dc], key=lambda c: c["Node"]),
        }
        for dc in sorted(by_dc)
    ]


@endpoint("Coordinate.ListNodes", read=True)
async def coordinate_list_nodes(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    readable = readable_nodes(node, args)

    def read() -> tuple[int, Any]:
        table = node.fsm.table(CoordinateTable)
        return table.index(), [c for c in table.list() if readable(c["Node"])]

    return await indexed_reply(node, args, read, "Coordinates")


@endpoint("Coordinate.Node", read=True)
async def coordinate_node(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    name = str(args.get("Node") or "")
    require(node, args, "node", "read", name)

    def read() -> tuple[int, Any]:
        table = node.fsm.table(CoordinateTable)
        return table.index(), table.node(name)

    return await indexed_reply(node, args, read, "Coordinates")


@endpoint("Coordinate.Update")
async def coordinate_update(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    coord = args.get("Coord")
    # coordinate.IsValid (every component finite), then IsCompatibleWith serf's (dimensions)
    if not isinstance(coord, dict) or not _finite(coord):
        raise RpcError("invalid coordinate")
    vec = coord.get("Vec") or []
    if len(vec) != DIMENSIONALITY:
        raise RpcError(f"rejected bad coordinate: {_show(coord)}")
    name = str(args.get("Node") or "")
    require(node, args, "node", "write", name)
    update = {
        "Node": name,
        "Segment": str(args.get("Segment") or ""),
        "Coord": {
            "Vec": [float(x) for x in vec],
            "Error": float(coord.get("Error") or 0),
            "Adjustment": float(coord.get("Adjustment") or 0),
            "Height": float(coord.get("Height") or 0),
        },
    }
    await node.apply_command(encode_command("CoordinateBatchUpdate", {"Updates": [update]}))
    return {}
