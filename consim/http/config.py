"""``/v1/config`` (Consul's ``config_endpoint.go``): apply with ``?cas``, get, list by kind and
delete of config entries, and ``/v1/catalog/gateway-services/<gateway>`` that reads them.

Entries are stored and answered as sent (see ``consim.server.state.config_entries``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from consim.golike import GoError, JSONBigNumber, decode_json_value, go_json_kind, parse_uint
from consim.http.context import Ctx, HTTPError, Route
from consim.server.state.config_entries import DELETE_CAS, KINDS, UPSERT_CAS


def _go_value(value: Any) -> Any:
    """What Go's decode into ``interface{}`` keeps of a JSON value: every number a float64
    (an integer past 64 bits loses digits; one past float64's range is refused)."""
    if isinstance(value, JSONBigNumber):
        raise GoError(f"json: cannot unmarshal number {value.text} into Go value of type float64")
    if isinstance(value, int) and not isinstance(value, bool) and not -(1 << 63) <= value < 1 << 64:
        return float(value)
    if isinstance(value, dict):
        return {k: _go_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_value(v) for v in value]
    return value


def _decode_entry(raw: bytes) -> dict[str, Any]:
    """structs.DecodeConfigEntry's preconditions: a JSON object with a kind and a known kind."""
    try:
        obj = _go_value(decode_json_value(raw))
    except GoError as exc:
        raise HTTPError(400, f"Request decoding failed: {exc}") from None
    if not isinstance(obj, dict):
        raise HTTPError(
            400,
            "Request decoding failed: Payload does not contain a kind/Kind key at the top level",
        )
    entry = dict(obj)
    for field in ("Kind", "Name"):
        # DecodeConfigEntry reads "kind"/"Kind" (and the name likewise) before decoding
        lower = field.lower()
        if field not in entry and lower in entry:
            entry[field] = entry.pop(lower)
    kind = entry.get("Kind")
    if not isinstance(kind, str) or not kind:
        raise HTTPError(
            400,
            "Request decoding failed: Payload does not contain a kind/Kind key at the top level",
        )
    if kind not in KINDS:
        raise HTTPError(400, f"Request decoding failed: invalid config entry kind: {kind}")
    name = entry.get("Name")
    if name is not None and not isinstance(name, str):
        raise HTTPError(
            400, f"Request decoding failed: Name must be a string, not {go_json_kind(name)}"
        )
    return entry


async def config_apply(c: Ctx) -> Any:
    entry = _decode_entry(await c.body())
    args: dict[str, Any] = {**c.write_args(), "Entry": entry, "Op": "upsert"}
    if cas := c.get("cas"):
        try:
            args["Index"] = parse_uint(cas)
        except GoError as exc:
            raise HTTPError(500, str(exc)) from None
        args["Op"] = UPSERT_CAS
    return bool(await c.rpc("ConfigEntry.Apply", args))


async def config_get_or_delete(c: Ctx) -> Any:
    parts = unquote(c.rest).split("/", 1)
    if c.method == "DELETE":
        return await _delete(c, parts)
    args = c.query_args()
    if len(parts) == 2:
        args.update(Kind=parts[0], Name=parts[1])
        reply = await c.rpc("ConfigEntry.Get", args)
        c.set_meta(reply)
        if reply.get("Entry") is None:
            raise HTTPError(
                404,
                f"Config entry not found for {json.dumps(parts[0])} / {json.dumps(parts[1])}",
            )
        return reply["Entry"]
    if not parts[0]:
        raise HTTPError(404, "Must provide either a kind or both kind and name")
    args["Kind"] = parts[0]
    reply = await c.rpc("ConfigEntry.List", args)
    c.set_meta(reply)
    return list(reply.get("Entries") or [])


async def _delete(c: Ctx, parts: list[str]) -> Any:
    if len(parts) != 2:
        raise HTTPError(404, "Must provide both a kind and name to delete")
    kind, name = parts
    if kind not in KINDS:
        raise HTTPError(400, f"invalid config entry kind: {kind}")
    args: dict[str, Any] = {**c.write_args(), "Kind": kind, "Name": name, "Op": "delete"}
    if cas := c.get("cas"):
        try:
            args["Index"] = parse_uint(cas)
        except GoError as exc:
            raise HTTPError(400, f"Request decode failed: {exc}") from None
        args["Op"] = DELETE_CAS
    reply = await c.rpc("ConfigEntry.Delete", args)
    # Consul answers the Deleted flag for CAS deletes only (older callers expect {})
    return bool(reply.get("Deleted")) if args["Op"] == DELETE_CAS else {}


async def catalog_gateway_services(c: Ctx) -> Any:
    args = c.query_args()
    gateway = unquote(c.rest)
    if not gateway:
        raise HTTPError(400, "Missing gateway name")
    args["ServiceName"] = gateway
    reply = await c.rpc("Catalog.GatewayServices", args)
    c.set_meta(reply)
    return list(reply.get("Services") or [])


ROUTES: tuple[Route, ...] = (
    Route("/v1/config", False, ("PUT",), config_apply),
    Route("/v1/config/", True, ("GET", "DELETE"), config_get_or_delete),
    Route("/v1/catalog/gateway-services/", True, ("GET",), catalog_gateway_services),
)
