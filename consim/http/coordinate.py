"""``/v1/coordinate/*`` (Consul's ``coordinate_endpoint.go``): datacenters, nodes, node, update.

consim's serf runs no Vivaldi: the servers' coordinates are serf's initial one and a node's
coordinate is whatever a client last wrote (see ``consim.server.endpoints.coordinate``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from consim.golike import GoError, decode_json_value, go_json_kind
from consim.http.context import Ctx, HTTPError, Reply, Route

_COORD_FIELDS = ("Vec", "Error", "Adjustment", "Height")
_REQUEST_FIELDS = ("Datacenter", "Node", "Segment", "Partition", "Coord", "Token")


def _coordinates_out(coords: Any, c: Ctx) -> list[dict[str, Any]]:
    """filterCoordinates: ``?segment`` keeps one segment; never null."""
    out = []
    for entry in coords or []:
        if c.has("segment") and entry.get("Segment", "") != c.get("segment"):
            continue
        out.append(
            {
                "Node": entry.get("Node", ""),
                "Segment": entry.get("Segment", ""),
                "Coord": {k: (entry.get("Coord") or {}).get(k, 0) for k in _COORD_FIELDS},
            }
        )
    return out


async def coordinate_datacenters(c: Ctx) -> Any:
    maps = await c.rpc("Coordinate.ListDatacenters", {"Datacenter": c.agent.datacenter})
    return [
        {
            "Datacenter": m["Datacenter"],
            "AreaID": m["AreaID"],
            "Coordinates": list(m.get("Coordinates") or []),
        }
        for m in maps or []
    ]


async def coordinate_nodes(c: Ctx) -> Any:
    reply = await c.rpc("Coordinate.ListNodes", c.query_args())
    c.set_meta(reply)
    return _coordinates_out(reply.get("Coordinates"), c)


async def coordinate_node(c: Ctx) -> Any:
    args = c.query_args()
    args["Node"] = unquote(c.rest)
    reply = await c.rpc("Coordinate.Node", args)
    c.set_meta(reply)
    out = _coordinates_out(reply.get("Coordinates"), c)
    if not out:
        return Reply(404)
    return out


def _type_error(value: Any, field: str, gotype: str) -> GoError:
    return GoError(
        f"json: cannot unmarshal {go_json_kind(value)} into Go struct field "
        f"CoordinateUpdateRequest.{field} of type {gotype}"
    )


def _decode_update(raw: bytes) -> dict[str, Any]:
    """Go's decode into structs.CoordinateUpdateRequest (names matched case-insensitively,
    unknown fields ignored)."""
    obj = decode_json_value(raw)
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise GoError(
            f"json: cannot unmarshal {go_json_kind(obj)} into Go value of type "
            "structs.CoordinateUpdateRequest"
        )
    by_lower = {f.lower(): f for f in _REQUEST_FIELDS}
    out: dict[str, Any] = {}
    for name, value in obj.items():
        field = by_lower.get(name.lower())
        if field is None or value is None:
            continue
        if field != "Coord":
            if not isinstance(value, str):
                raise _type_error(value, field, "string")
            out[field] = value
            continue
        if not isinstance(value, dict):
            raise _type_error(value, "Coord", "coordinate.Coordinate")
        coord: dict[str, Any] = {}
        coord_lower = {f.lower(): f for f in _COORD_FIELDS}
        for cname, cvalue in value.items():
            cfield = coord_lower.get(cname.lower())
            if cfield is None or cvalue is None:
                continue
            numbers = cvalue if cfield == "Vec" else [cvalue]
            if cfield == "Vec" and not isinstance(cvalue, list):
                raise _type_error(cvalue, "Coord.Vec", "[]float64")
            for x in numbers:
                if isinstance(x, bool) or not isinstance(x, int | float):
                    raise _type_error(x, f"Coord.{cfield}", "float64")
            coord[cfield] = [float(x) for x in cvalue] if cfield == "Vec" else float(cvalue)
        out["Coord"] = coord
    return out


async def coordinate_update(c: Ctx) -> Any:
    try:
        body = _decode_update(await c.body())
    except GoError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None
    args = {**body, **c.write_args()}
    # parseDC after the decode: ?dc, else the body's, else the agent's
    args["Datacenter"] = c.get("dc") or body.get("Datacenter") or c.agent.datacenter
    await c.rpc("Coordinate.Update", args)
    return None


ROUTES: tuple[Route, ...] = (
    Route("/v1/coordinate/datacenters", False, ("GET",), coordinate_datacenters),
    Route("/v1/coordinate/nodes", False, ("GET",), coordinate_nodes),
    Route("/v1/coordinate/node/", True, ("GET",), coordinate_node),
    Route("/v1/coordinate/update", False, ("PUT",), coordinate_update),
)
