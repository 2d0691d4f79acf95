"""Consul's catalog and health HTTP endpoints (``agent/catalog_endpoint.go``,
``agent/health_endpoint.go``): each request becomes one Catalog.* or Health.* RPC.

The JSON keeps Go's field order and Consul's fix-ups (empty lists instead of null for a
missing result and for service tags).
"""

from __future__ import annotations

from typing import Any

from consim.golike import GoError, decode_json_value, go_json_kind, parse_bool
from consim.http.context import JSON_NULL, Ctx, HTTPError, Route, ordered

NODE_FIELDS = (
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "Meta",
    "CreateIndex",
    "ModifyIndex",
)
SERVICE_FIELDS = (
    "Kind",
    "ID",
    "Service",
    "Tags",
    "Address",
    "TaggedAddresses",
    "Meta",
    "Port",
    "Weights",
    "EnableTagOverride",
    "Proxy",
    "Connect",
    "Locality",
    "CreateIndex",
    "ModifyIndex",
)
CHECK_FIELDS = (
    "Node",
    "CheckID",
    "Name",
    "Status",
    "Notes",
    "Output",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "Type",
    "Interval",
    "Timeout",
    "ExposedPort",
    "Definition",
    "CreateIndex",
    "ModifyIndex",
)
# Go's decoder matches field names case-insensitively; these are the request fields consim reads
# (``fold`` keeps the body's order, so the order of these tuples does not matter).
REGISTER_FIELDS = (
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "NodeMeta",
    "Service",
    "Check",
    "Checks",
    "SkipNodeUpdate",
)
DEREGISTER_FIELDS = ("Node", "Datacenter", "ServiceID", "CheckID")
# The request's structs.NodeService: the service fields but Connect and the indexes.
SERVICE_IN_FIELDS = tuple(
    f for f in SERVICE_FIELDS if f not in ("Connect", "CreateIndex", "ModifyIndex")
)
# The request's structs.HealthCheck: the check fields but the service's name and tags, the
# exposed port and the indexes.
CHECK_IN_FIELDS = tuple(
    f
    for f in CHECK_FIELDS
    if f not in ("ServiceName", "ServiceTags", "ExposedPort", "CreateIndex", "ModifyIndex")
)


def fold(obj: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Keys as the Go struct names them (case-insensitive match, and snake_case as Consul's
    TranslateKeys accepts it; unknown ones dropped)."""
    by_lower = {f.lower(): f for f in fields}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = by_lower.get(key.lower()) or by_lower.get(key.lower().replace("_", ""))
        if name is not None:
            out[name] = value
    return out


async def decode_object(c: Ctx, go_type: str) -> dict[str, Any]:
    """The body as a JSON object, or Consul's 400 ``Request decode failed: ...``."""
    raw = await c.body()
    try:
        obj = decode_json_value(raw) if raw.strip() else None
        if obj is None:
            return {}
        if not isinstance(obj, dict):
            raise GoError(
                f"json: cannot unmarshal {go_json_kind(obj)} into Go value of type {go_type}"
            )
    except GoError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None
    return obj


def node_out(n: dict[str, Any]) -> dict[str, Any]:
    return ordered(dict(n), NODE_FIELDS)


def service_out(s: dict[str, Any]) -> dict[str, Any]:
    s = dict(s)
    if not s.get("Proxy"):
        s["Proxy"] = {"Mode": "", "MeshGateway": {}, "Expose": {}}
    if not s.get("Connect"):
        s["Connect"] = {}
    if not s.get("Locality"):
        s.pop("Locality", None)  # `json:",omitempty"`
    if not s.get("Kind"):
        s.pop("Kind", None)  # `json:",omitempty"`
    if not s.get("TaggedAddresses"):
        s.pop("TaggedAddresses", None)
    if s.get("Tags") is None:
        s["Tags"] = []
    if s.get("Weights") is None:
        s["Weights"] = {"Passing": 1, "Warning": 1}
    return ordered(s, SERVICE_FIELDS)


def check_out(ch: dict[str, Any]) -> dict[str, Any]:
    ch = dict(ch)
    if ch.get("ServiceTags") is None:
        ch["ServiceTags"] = []
    return ordered(ch, CHECK_FIELDS)


# --------------------------------------------------------------------------- catalog


async def catalog_register(c: Ctx) -> Any:
    obj = fold(await decode_object(c, "structs.RegisterRequest"), REGISTER_FIELDS)
    if isinstance(obj.get("Service"), dict):
        obj["Service"] = fold(obj["Service"], SERVICE_IN_FIELDS)
    if isinstance(obj.get("Check"), dict):
        obj["Check"] = fold(obj["Check"], CHECK_IN_FIELDS)
    if isinstance(obj.get("Checks"), list):
        obj["Checks"] = [fold(ch, CHECK_IN_FIELDS) for ch in obj["Checks"] if isinstance(ch, dict)]
    args = {**obj, "Datacenter": obj.get("Datacenter") or c.agent.datacenter, "Token": c.token()}
    await c.rpc("Catalog.Register", args)
    return True


async def catalog_deregister(c: Ctx) -> Any:
    obj = fold(await decode_object(c, "structs.DeregisterRequest"), DEREGISTER_FIELDS)
    args = {**obj, "Datacenter": obj.get("Datacenter") or c.agent.datacenter, "Token": c.token()}
    await c.rpc("Catalog.Deregister", args)
    return True


async def catalog_datacenters(c: Ctx) -> Any:
    return list(await c.rpc("Catalog.ListDatacenters", {"Datacenter": c.agent.datacenter}))


def _meta_filter(c: Ctx) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in c.args.getlist("node-meta"):
        key, _, val = value.partition(":")
        out[key] = val
    return out


async def catalog_nodes(c: Ctx) -> Any:
    args = c.query_args()
    args["NodeMetaFilters"] = _meta_filter(c)
    reply = await c.rpc("Catalog.ListNodes", args)
    c.set_meta(reply)
    return [node_out(n) for n in reply.get("Nodes") or []]


async def catalog_services(c: Ctx) -> Any:
    reply = await c.rpc("Catalog.ListServices", c.query_args())
    c.set_meta(reply)
    return dict(reply.get("Services") or {})


async def catalog_service(c: Ctx) -> Any:
    args = c.query_args()
    if not c.rest:
        raise HTTPError(400, "Missing service name")
    args.update(ServiceName=c.rest, ServiceTags=c.args.getlist("tag"))
    reply = await c.rpc("Catalog.ServiceNodes", args)
    c.set_meta(reply)
    out = []
    for s in reply.get("ServiceNodes") or []:
        s = dict(s)
        if s.get("ServiceTags") is None:
            s["ServiceTags"] = []
        if not s.get("ServiceTaggedAddresses"):
            s.pop("ServiceTaggedAddresses", None)
        out.append(s)
    return out


async def catalog_connect(c: Ctx) -> Any:
    # Connect-capable instances of a service: consim models no Connect (no proxies, no native
    # services), so after the same checks and query handling the list is empty.
    args = c.query_args()
    if not c.rest:
        raise HTTPError(400, "Missing service name")
    args.update(ServiceName=c.rest, ServiceTags=c.args.getlist("tag"), Connect=True)
    reply = await c.rpc("Catalog.ServiceNodes", args)
    c.set_meta(reply)
    return list(reply.get("ServiceNodes") or [])


async def catalog_node(c: Ctx) -> Any:
    args = c.query_args()
    if not c.rest:
        raise HTTPError(400, "Missing node name")
    args["Node"] = c.rest
    reply = await c.rpc("Catalog.NodeServices", args)
    c.set_meta(reply)
    found = reply.get("NodeServices")
    if found is None:
        return JSON_NULL
    return {
        "Node": node_out(found["Node"]),
        "Services": {sid: service_out(s) for sid, s in (found.get("Services") or {}).items()},
    }


# --------------------------------------------------------------------------- health


async def _checks(c: Ctx, method: str, field: str, missing: str) -> Any:
    args = c.query_args()
    if not c.rest:
        raise HTTPError(400, missing)
    args[field] = c.rest
    reply = await c.rpc(method, args)
    c.set_meta(reply)
    return [check_out(ch) for ch in reply.get("HealthChecks") or []]


async def health_node(c: Ctx) -> Any:
    return await _checks(c, "Health.NodeChecks", "Node", "Missing node name")


async def health_checks(c: Ctx) -> Any:
    return await _checks(c, "Health.ServiceChecks", "ServiceName", "Missing service name")


async def health_state(c: Ctx) -> Any:
    return await _checks(c, "Health.ChecksInState", "State", "Missing check state")


async def health_service(c: Ctx) -> Any:
    args = c.query_args()
    passing = False
    if c.has("passing"):
        passing = True
        if raw := c.get("passing"):
            try:
                passing = parse_bool(raw)
            except GoError:
                raise HTTPError(400, "Invalid value for ?passing") from None
    if not c.rest:
        raise HTTPError(400, "Missing service name")
    args.update(ServiceName=c.rest, ServiceTags=c.args.getlist("tag"), PassingOnly=passing)
    if c.get("peer"):
        args["PeerName"] = c.get("peer")
    if c.path.startswith("/v1/health/connect/"):
        args["Connect"] = True
    elif c.path.startswith("/v1/health/ingress/"):
        args["Ingress"] = True
    reply = await c.rpc("Health.ServiceNodes", args)
    c.set_meta(reply)
    return [
        {
            "Node": node_out(e["Node"]),
            "Service": service_out(e["Service"]),
            "Checks": [check_out(ch) for ch in e.get("Checks") or []],
        }
        for e in reply.get("Nodes") or []
    ]


ROUTES: tuple[Route, ...] = (
    Route("/v1/catalog/register", False, ("PUT",), catalog_register),
    Route("/v1/catalog/deregister", False, ("PUT",), catalog_deregister),
    Route("/v1/catalog/datacenters", False, ("GET",), catalog_datacenters),
    Route("/v1/catalog/nodes", False, ("GET",), catalog_nodes),
    Route("/v1/catalog/services", False, ("GET",), catalog_services),
    Route("/v1/catalog/service/", True, ("GET",), catalog_service),
    Route("/v1/catalog/node/", True, ("GET",), catalog_node),
    Route("/v1/catalog/connect/", True, ("GET",), catalog_connect),
    Route("/v1/health/node/", True, ("GET",), health_node),
    Route("/v1/health/checks/", True, ("GET",), health_checks),
    Route("/v1/health/state/", True, ("GET",), health_state),
    Route("/v1/health/service/", True, ("GET",), health_service),
    # consim models no Connect, ingress gateways or peerings: these answer no instance
    Route("/v1/health/connect/", True, ("GET",), health_service),
    Route("/v1/health/ingress/", True, ("GET",), health_service),
)
