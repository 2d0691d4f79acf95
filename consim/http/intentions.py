"""``/v1/connect/intentions/*`` (Consul's ``intentions_endpoint.go``, the name-based forms):
exact upsert/read/delete, list, match and check. Intentions are kept in ``service-intentions``
config entries (see ``consim.server.endpoints.intention``); nothing enforces them.
"""

from __future__ import annotations

from typing import Any

from consim.golike import GoError, decode_json_value
from consim.http.agent import RpcError
from consim.http.context import Ctx, HTTPError, Route

NOT_FOUND = "Intention not found"


def _names(c: Ctx) -> tuple[str, str]:
    src, dst = c.get("source"), c.get("destination")
    if not src:
        raise HTTPError(400, "required query parameter 'source' not set")
    if not dst:
        raise HTTPError(400, "required query parameter 'destination' not set")
    return src, dst


async def intention_exact(c: Ctx) -> Any:
    src, dst = _names(c)
    if c.method == "GET":
        args = {**c.query_args(), "SourceName": src, "DestinationName": dst}
        try:
            reply = await c.rpc("Intention.Get", args)
        except RpcError as exc:
            if NOT_FOUND in getattr(exc, "message", str(exc)):
                raise HTTPError(404, NOT_FOUND) from None
            raise
        c.set_meta(reply)
        return reply["Intentions"][0]
    if c.method == "DELETE":
        intention = {"SourceName": src, "DestinationName": dst}
        await c.rpc("Intention.Apply", {**c.write_args(), "Op": "delete", "Intention": intention})
        return True
    try:
        body = decode_json_value(await c.body())
    except GoError as exc:
        raise HTTPError(400, f"Failed to decode request body: {exc}") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "Failed to decode request body: not a JSON object")
    fields = {k.lower(): v for k, v in body.items()}
    intention = {"SourceName": src, "DestinationName": dst}
    for field in ("SourceType", "Action", "Description", "Meta", "Permissions"):
        if fields.get(field.lower()) is not None:
            intention[field] = fields[field.lower()]
    await c.rpc("Intention.Apply", {**c.write_args(), "Op": "upsert", "Intention": intention})
    return True


async def intention_list(c: Ctx) -> Any:
    reply = await c.rpc("Intention.List", c.query_args())
    c.set_meta(reply)
    return list(reply.get("Intentions") or [])


async def intention_match(c: Ctx) -> Any:
    by = c.get("by")
    if by not in ("source", "destination"):
        raise HTTPError(400, f"'by' parameter must be 'source' or 'destination', got {by!r}")
    names = c.args.getlist("name")
    if not names:
        raise HTTPError(400, "required query parameter 'name' not set")
    args = {**c.query_args(), "Type": by, "Names": names}
    reply = await c.rpc("Intention.Match", args)
    c.set_meta(reply)
    return {name: list(m) for name, m in zip(names, reply.get("Matches") or [], strict=True)}


async def intention_check(c: Ctx) -> Any:
    src, dst = _names(c)
    args = {**c.query_args(), "SourceName": src, "DestinationName": dst}
    reply = await c.rpc("Intention.Check", args)
    return {"Allowed": bool(reply.get("Allowed"))}


ROUTES: tuple[Route, ...] = (
    Route("/v1/connect/intentions", False, ("GET",), intention_list),
    Route("/v1/connect/intentions/exact", False, ("GET", "PUT", "DELETE"), intention_exact),
    Route("/v1/connect/intentions/match", False, ("GET",), intention_match),
    Route("/v1/connect/intentions/check", False, ("GET",), intention_check),
)
