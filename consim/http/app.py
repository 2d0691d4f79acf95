"""Consul's HTTP API for one simulated server, as a quart-trio app.

Behaviour follows hashicorp/consul ``agent/http.go`` (the ``wrap`` function), ``agent/*_endpoint.go``
and ``docs/consul-behaviour.md`` sections 1-7. The app never touches Raft: every request becomes
one call on an :class:`~consim.http.agent.Agent`. ACL checks happen on the server side (after
leader forwarding, as in Consul); this layer only extracts the token and maps error texts to
status codes.

Routing is done here, not by werkzeug, because Consul's answers to unknown paths, unlisted methods
and OPTIONS differ from Quart's defaults (HTML bodies, automatic OPTIONS/HEAD, slash redirects).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote_plus

from quart import Request, Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import BadHost, HTTPException

from consim.events import VIRTUAL_EPOCH
from consim.golike import (
    GoError,
    JSONBigNumber,
    atoi,
    decode_json_value,
    format_duration,
    go_json_kind,
    marshal_json,
    multierror,
    parse_bool,
    parse_duration,
    parse_uint,
)
from consim.http import acl as acl_api
from consim.http import agent_local, agent_ops, catalog, session
from consim.http import config as config_api
from consim.http import coordinate as coordinate_api
from consim.http import event as event_api
from consim.http import intentions as intentions_api
from consim.http import snapshot as snapshot_api
from consim.http import txn as txn_api
from consim.http import usage as usage_api
from consim.http.agent import Agent, RpcError
from consim.http.compress import maybe_gzip
from consim.http.context import (
    JSON_NULL,
    KV_MAX_VALUE_SIZE,
    MAX_BODY_SIZE,
    BodyTooLarge,
    Ctx,
    HTTPError,
    Reply,
    Route,
    error_status,
    ordered,
)
from consim.structs import DEFAULT_AUTOPILOT

# Methods the catch-all route accepts so that our dispatcher (not werkzeug) answers every one.
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]

_KV_SIZE_DOC = "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"

_TEXT = "text/plain; charset=utf-8"  # what Go's net/http sniffs for a plain-text body
_JSON = "application/json"

_RAFT_SERVER_FIELDS = ("ID", "Node", "Address", "Leader", "ProtocolVersion", "Voter", "LastIndex")
_DIRENT_FIELDS = ("LockIndex", "Key", "Flags", "Value", "Session", "CreateIndex", "ModifyIndex")
_AUTOPILOT_FIELDS = {
    # api.AutopilotConfiguration, in declaration order: name -> kind
    "CleanupDeadServers": "bool",
    "LastContactThreshold": "duration",
    "MaxTrailingLogs": "uint",
    "MinQuorum": "uint",
    "ServerStabilizationTime": "duration",
    "RedundancyZoneTag": "string",
    "DisableUpgradeMigration": "bool",
    "UpgradeVersionTag": "string",
    "CreateIndex": "uint",
    "ModifyIndex": "uint",
}
_KEYRING_POOL_FIELDS = ("WAN", "Datacenter", "Segment", "Keys", "PrimaryKeys", "NumNodes")


_ordered = ordered


def _sorted_map(obj: Any) -> Any:
    # Go's encoding/json writes map keys sorted.
    return {k: obj[k] for k in sorted(obj)} if isinstance(obj, dict) else obj


# --------------------------------------------------------------------------- operator: raft


async def raft_configuration(c: Ctx) -> Any:
    reply = await c.rpc("Operator.RaftGetConfiguration", c.query_args())
    servers = [_ordered(s, _RAFT_SERVER_FIELDS) for s in (reply.get("Servers") or [])]
    return {"Servers": servers, "Index": reply.get("Index", 0)}


async def raft_peer(c: Ctx) -> Any:
    args = c.write_args()
    has_id, has_addr = c.has("id"), c.has("address")
    if not has_id and not has_addr:
        raise HTTPError(
            400,
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
        )
    if has_id and has_addr:
        raise HTTPError(400, "Must specify only one of ?id or ?address")
    if has_addr:
        args["Address"] = c.get("address")
        await c.rpc("Operator.RaftRemovePeerByAddress", args)
    else:
        args["ID"] = c.get("id")
        await c.rpc("Operator.RaftRemovePeerByID", args)
    return None


async def raft_transfer_leader(c: Ctx) -> Any:
    args = c.write_args()
    args["ID"] = c.get("id")
    reply = await c.rpc("Operator.RaftTransferLeader", args)
    success = bool(reply.get("Success", True)) if isinstance(reply, dict) else bool(reply)
    return {"Success": success}


# --------------------------------------------------------------------------- operator: keyring

_KEYRING_BODY_FIELDS = {
    "key": "Key",
    "token": "Token",
    "relayfactor": "RelayFactor",
    "localonly": "LocalOnly",
}


def _decode_keyring_body(raw: bytes) -> dict[str, Any]:
    """Go's json.Decoder with DisallowUnknownFields into agent.keyringArgs.

    Raises GoError with the decoder's text. Go matches field names case-insensitively.
    """
    obj = decode_json_value(raw)
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise GoError(
            f"json: cannot unmarshal {go_json_kind(obj)} into Go value of type agent.keyringArgs"
        )
    out: dict[str, Any] = {}
    for name, value in obj.items():
        field = _KEYRING_BODY_FIELDS.get(name.lower())
        if field is None:
            raise GoError(f"json: unknown field {json.dumps(name)}")
        want = {"Key": str, "Token": str, "RelayFactor": int, "LocalOnly": bool}[field]
        gotype = {"Key": "string", "Token": "string", "RelayFactor": "uint8", "LocalOnly": "bool"}[
            field
        ]
        if value is None:
            continue
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is int and ok and not 0 <= value <= 255:
            raise GoError(
                f"json: cannot unmarshal number {value} into Go struct field keyringArgs.{field} of type uint8"
            )
        if not ok:
            kind = go_json_kind(value)
            if kind == "number" and want is int:  # into a Go integer: shown as written
                kind = f"number {value}"
            raise GoError(
                f"json: cannot unmarshal {kind} into Go struct field keyringArgs.{field} of type {gotype}"
            )
        out[field] = value
    return out


async def keyring(c: Ctx) -> Any:
    body: dict[str, Any] = {}
    if c.method in ("POST", "PUT", "DELETE"):
        try:
            body = _decode_keyring_body(await c.body())
        except GoError as exc:
            raise HTTPError(400, f"Request decode failed: {exc}") from None
    token = c.token()
    relay_factor = int(body.get("RelayFactor", 0))
    if raw := c.get("relay-factor"):
        try:
            n = atoi(raw)
        except GoError as exc:
            raise HTTPError(400, f"Error parsing relay factor: {exc}") from None
        if not 0 <= n <= 5:
            raise HTTPError(400, "Invalid relay-factor: Relay factor must be in range: [0, 5]")
        relay_factor = n
    local_only = bool(body.get("LocalOnly", False))
    if raw := c.get("local-only"):
        try:
            local_only = parse_bool(raw)
        except GoError as exc:
            raise HTTPError(400, f"Error parsing local-only: {exc}") from None
        if local_only and c.method != "GET":
            raise HTTPError(
                400, "Invalid use of local-only: local-only can only be set for list requests"
            )
    op = {"GET": "list", "POST": "install", "PUT": "use", "DELETE": "remove"}[c.method]
    key = body.get("Key", "") if op != "list" else None
    pools = await c.agent.keyring_operation(op, key, relay_factor, local_only, token)
    errors: list[str] = []
    for pool in pools:
        if pool.get("Error"):
            name = "WAN" if pool.get("WAN") else f"{pool.get('Datacenter', '')} (LAN)"
            errors.append(f"{name} error: {pool['Error']}")
            # Go ranges over a map here (random order); sorted keeps traces deterministic.
            messages = pool.get("Messages") or {}
            errors.extend(f"{node}: {messages[node]}" for node in sorted(messages))
    if errors:
        raise HTTPError(500, multierror(errors))
    if op != "list":
        return None
    out = []
    for pool in pools:
        entry = {k: pool.get(k) for k in _KEYRING_POOL_FIELDS}
        entry["Segment"] = entry["Segment"] or ""
        entry["Keys"] = _sorted_map(entry["Keys"] or {})
        entry["PrimaryKeys"] = _sorted_map(entry["PrimaryKeys"] or {})
        entry["NumNodes"] = entry["NumNodes"] or 0
        if pool.get("Messages"):  # `json:",omitempty"`
            entry["Messages"] = _sorted_map(pool["Messages"])
        out.append(entry)
    return out


# --------------------------------------------------------------------------- operator: autopilot


def _autopilot_out(reply: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in _AUTOPILOT_FIELDS.items():
        value = reply.get(name)
        if kind == "duration":
            out[name] = value if isinstance(value, str) else format_duration(float(value or 0))
        elif kind == "bool":
            out[name] = bool(value)
        elif kind == "uint":
            out[name] = int(value or 0)
        else:
            out[name] = value or ""
    return out


def _decode_autopilot(raw: bytes) -> dict[str, Any]:
    """Go's decode of api.AutopilotConfiguration (unknown fields rejected; durations as Go
    strings or numbers of nanoseconds). Consul decodes onto api.NewAutopilotConfiguration(), so a
    missing field takes autopilot's default (a partial body like py-consul's
    ``{"CleanupDeadServers": false}`` leaves the thresholds at 200ms / 250 / 10s)."""
    obj = decode_json_value(raw)
    if obj is None:  # Go decodes null into a struct as a no-op
        obj = {}
    if not isinstance(obj, dict):
        raise GoError(
            f"json: cannot unmarshal {go_json_kind(obj)} into Go value of type api.AutopilotConfiguration"
        )
    by_lower = {k.lower(): k for k in _AUTOPILOT_FIELDS}
    config: dict[str, Any] = dict(DEFAULT_AUTOPILOT)
    for name, value in obj.items():
        field = by_lower.get(name.lower())
        if field is None:
            raise GoError(f"json: unknown field {json.dumps(name)}")
        kind = _AUTOPILOT_FIELDS[field]
        if value is None or field in ("CreateIndex", "ModifyIndex"):
            continue
        where = f"Go struct field AutopilotConfiguration.{field}"
        if kind == "duration":
            if isinstance(value, str):
                config[field] = parse_duration(value)
            elif isinstance(value, JSONBigNumber):
                # api.ReadableDuration parses a bare number with strconv.ParseFloat.
                raise GoError(
                    f"strconv.ParseFloat: parsing {json.dumps(value.text)}: value out of range"
                )
            elif isinstance(value, int | float) and not isinstance(value, bool):
                config[field] = value / 1e9
            else:
                raise GoError(
                    f"json: cannot unmarshal {go_json_kind(value)} into {where} of type api.ReadableDuration"
                )
        elif kind == "bool":
            if not isinstance(value, bool):
                raise GoError(
                    f"json: cannot unmarshal {go_json_kind(value)} into {where} of type bool"
                )
            config[field] = value
        elif kind == "uint":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
                shown = (
                    go_json_kind(value)
                    if not isinstance(value, int | float) or isinstance(value, bool)
                    else f"number {value}"
                )
                raise GoError(f"json: cannot unmarshal {shown} into {where} of type uint64")
            config[field] = value
        else:
            if not isinstance(value, str):
                raise GoError(
                    f"json: cannot unmarshal {go_json_kind(value)} into {where} of type string"
                )
            config[field] = value
    return config


async def autopilot_configuration(c: Ctx) -> Any:
    if c.method == "GET":
        reply = await c.rpc("Operator.AutopilotGetConfiguration", c.query_args())
        return _autopilot_out(reply)
    args = c.write_args()
    try:
        config = _decode_autopilot(await c.body())
    except GoError as exc:
        raise HTTPError(400, f"Error parsing autopilot config: {exc}") from None
    cas = c.has("cas")
    if cas:
        try:
            config["ModifyIndex"] = parse_uint(c.get("cas"))
        except GoError as exc:
            raise HTTPError(400, f"Error parsing cas value: {exc}") from None
    args["Config"] = config
    args["CAS"] = cas
    reply = await c.rpc("Operator.AutopilotSetConfiguration", args)
    if not cas:
        return True
    return bool(reply.get("Result") if isinstance(reply, dict) else reply)


def _stable_since(value: Any) -> str:
    if isinstance(value, str):
        return value
    # A number is seconds on the cluster clock; show it on the same epoch as the event log.
    when = VIRTUAL_EPOCH + timedelta(seconds=round(float(value or 0)))
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


_SERVER_HEALTH_FIELDS = (
    "ID", "Name", "Address", "SerfStatus", "Version", "Leader", "LastContact", "LastTerm",
    "LastIndex", "Healthy", "Voter", "StableSince",
)  # fmt: skip


async def autopilot_health(c: Ctx) -> Any:
    reply = await c.rpc("Operator.ServerHealth", c.query_args())
    servers = []
    for s in reply.get("Servers") or []:
        s = _ordered(dict(s), _SERVER_HEALTH_FIELDS)
        if not isinstance(s.get("LastContact"), str):
            s["LastContact"] = format_duration(float(s.get("LastContact") or 0))
        s["StableSince"] = _stable_since(s.get("StableSince"))
        servers.append(s)
    out = {
        "Healthy": bool(reply.get("Healthy")),
        "FailureTolerance": int(reply.get("FailureTolerance") or 0),
        "Servers": servers or None,  # a nil slice in Go
    }
    if not out["Healthy"]:
        return Reply(429, marshal_json(out, c.has("pretty")), content_type=_JSON)
    return out


async def autopilot_state(c: Ctx) -> Any:
    reply = await c.rpc("Operator.AutopilotState", c.query_args())
    if isinstance(reply, dict):
        reply = {k: v for k, v in reply.items() if k != "QueryMeta"}
    return reply


# --------------------------------------------------------------------------- status / agent


async def status_leader(c: Ctx) -> Any:
    return await c.rpc("Status.Leader", c.query_args())


async def status_peers(c: Ctx) -> Any:
    return list(await c.rpc("Status.Peers", c.query_args()) or [])


async def agent_self(c: Ctx) -> Any:
    return c.agent.agent_self(c.token())


async def agent_members(c: Ctx) -> Any:
    # Consul: wan only when ?wan has a non-empty value.
    members, filtered = c.agent.members(c.get("wan") != "", c.token())
    if filtered:
        c.meta_headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
    out = []
    for m in members:
        m = dict(m)
        if isinstance(m.get("Tags"), dict):
            m["Tags"] = _sorted_map(m["Tags"])
        out.append(m)
    return out


async def agent_force_leave(c: Ctx) -> Any:
    await c.agent.force_leave(c.rest, c.has("prune"), c.token())
    return None


async def agent_join(c: Ctx) -> Any:
    await c.agent.join(c.rest, c.get("wan") != "", c.token())
    return None


async def agent_leave(c: Ctx) -> Any:
    await c.agent.leave(c.token())
    return None


# --------------------------------------------------------------------------- KV


def _dirent_out(e: dict[str, Any]) -> dict[str, Any]:
    e = _ordered(dict(e), _DIRENT_FIELDS)
    value = e.get("Value")
    if isinstance(value, str):
        value = value.encode("utf-8")
    e["Value"] = base64.b64encode(value).decode("ascii") if value else None
    if not e.get("Session"):
        e.pop("Session", None)  # `json:",omitempty"`
    for k in ("LockIndex", "Flags", "CreateIndex", "ModifyIndex"):
        e[k] = int(e.get(k) or 0)
    return e


def _conflicting(c: Ctx, *flags: str) -> None:
    if sum(1 for f in flags if c.has(f)) > 1:
        # Go's url.Values.Encode: keys sorted, QueryEscape'd.
        pairs = []
        for k in sorted(c.args.keys()):
            for v in c.args.getlist(k):
                pairs.append(f"{quote_plus(k, safe='')}={quote_plus(v, safe='')}")
        raise HTTPError(400, f"Conflicting flags: {'&'.join(pairs)}\n")


def _filtered_header(c: Ctx, reply: Any) -> None:
    # Consul's setMeta: only when the server says ACLs left entries out.
    meta = reply.get("QueryMeta") if isinstance(reply, dict) else None
    if meta and meta.get("ResultsFilteredByACLs"):
        c.meta_headers["X-Consul-Results-Filtered-By-ACLs"] = "true"


async def kv(c: Ctx) -> Any:
    key = c.rest
    if c.method == "GET":
        args = c.query_args()
        if c.has("keys"):
            sep = c.get("separator") if c.has("separator") else c.get("seperator")
            args.update(Key=key, Prefix=key, Separator=sep)
            reply = await c.rpc("KVS.ListKeys", args)
            c.set_meta(reply)
            _filtered_header(c, reply)
            keys = reply.get("Keys") or []
            if not keys and key:
                return Reply(404)
            return list(keys)
        recurse = c.has("recurse")
        if not recurse and not key:
            raise HTTPError(400, "Missing key name")
        args["Key"] = key
        reply = await c.rpc("KVS.List" if recurse else "KVS.Get", args)
        c.set_meta(reply)
        _filtered_header(c, reply)
        entries = reply.get("Entries") or []
        if not entries:
            return Reply(404)
        if c.has("raw") and not recurse:
            value = entries[0].get("Value") or b""
            if isinstance(value, str):
                value = value.encode("utf-8")
            return Reply(
                200,
                bytes(value),
                headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"},
                content_type="text/plain",
            )
        return [_dirent_out(e) for e in entries]

    args = c.write_args()
    if c.method == "PUT":
        if not key:
            raise HTTPError(400, "Missing key name")
        _conflicting(c, "cas", "acquire", "release")
        dirent: dict[str, Any] = {"Key": key, "Value": None, "Flags": 0, "ModifyIndex": 0}
        op = "set"
        try:
            # Consul returns these strconv errors unwrapped, so they are 500s, not 400s.
            if c.has("flags"):
                dirent["Flags"] = parse_uint(c.get("flags"))
            if c.has("cas"):
                dirent["ModifyIndex"] = parse_uint(c.get("cas"))
                op = "cas"
        except GoError as exc:
            raise HTTPError(500, str(exc)) from None
        if c.has("acquire"):
            dirent["Session"], op = c.get("acquire"), "lock"
        if c.has("release"):
            dirent["Session"], op = c.get("release"), "unlock"
        length = c.request.content_length
        if length is not None and length > KV_MAX_VALUE_SIZE:
            raise HTTPError(
                413,
                f"Request body({length} bytes) too large, max size: {KV_MAX_VALUE_SIZE} bytes. "
                f"See {_KV_SIZE_DOC}.",
            )
        try:
            body = await c.body()
        except BodyTooLarge:
            # A chunked body has no length to show: Consul's text for a body found too large
            # while reading (its txn endpoint's http.MaxBytesReader case).
            raise HTTPError(
                413,
                f"Request body too large, max size: {KV_MAX_VALUE_SIZE} bytes. See {_KV_SIZE_DOC}.",
            ) from None
        dirent["Value"] = body or None
        args.update(Op=op, DirEnt=dirent)
        reply = await c.rpc("KVS.Apply", args)
        return True if op == "set" else _result(reply)

    # DELETE
    _conflicting(c, "recurse", "cas")
    dirent = {"Key": key}
    op = "delete"
    if c.has("recurse"):
        op = "delete-tree"
    elif not key:
        raise HTTPError(400, "Missing key name")
    if c.has("cas"):
        try:
            dirent["ModifyIndex"] = parse_uint(c.get("cas"))
        except GoError as exc:
            raise HTTPError(500, str(exc)) from None
        op = "delete-cas"
    args.update(Op=op, DirEnt=dirent)
    reply = await c.rpc("KVS.Apply", args)
    return _result(reply) if op == "delete-cas" else True


def _result(reply: Any) -> bool:
    return bool(reply.get("Result") if isinstance(reply, dict) else reply)


# --------------------------------------------------------------------------- the app

ROUTES: tuple[Route, ...] = (
    Route("/v1/operator/raft/configuration", False, ("GET",), raft_configuration),
    Route("/v1/operator/raft/peer", False, ("DELETE",), raft_peer),
    Route("/v1/operator/raft/transfer-leader", False, ("POST",), raft_transfer_leader),
    Route("/v1/operator/keyring", False, ("GET", "POST", "PUT", "DELETE"), keyring),
    Route("/v1/operator/autopilot/configuration", False, ("GET", "PUT"), autopilot_configuration),
    Route("/v1/operator/autopilot/health", False, ("GET",), autopilot_health),
    Route("/v1/operator/autopilot/state", False, ("GET",), autopilot_state),
    Route("/v1/status/leader", False, ("GET",), status_leader),
    Route("/v1/status/peers", False, ("GET",), status_peers),
    Route("/v1/agent/self", False, ("GET",), agent_self),
    Route("/v1/agent/members", False, ("GET",), agent_members),
    Route("/v1/agent/force-leave/", True, ("PUT",), agent_force_leave),
    Route("/v1/agent/join/", True, ("PUT",), agent_join),
    Route("/v1/agent/leave", False, ("PUT",), agent_leave),
    Route("/v1/kv/", True, ("GET", "PUT", "DELETE"), kv),
    *acl_api.ROUTES,
    *txn_api.ROUTES,
    *snapshot_api.ROUTES,
    *event_api.ROUTES,
    *usage_api.ROUTES,
    *coordinate_api.ROUTES,
    *config_api.ROUTES,
    *intentions_api.ROUTES,
    *agent_ops.ROUTES,
    *catalog.ROUTES,
    *session.ROUTES,
    *agent_local.ROUTES,
)


_EXACT_ROUTES = {route.path: route for route in ROUTES if not route.prefix}
_PREFIX_ROUTES = tuple(route for route in ROUTES if route.prefix)
_ALLOW = {route.path: ",".join(("OPTIONS", *route.methods)) for route in ROUTES}


def _match(path: str) -> tuple[Route, str] | None:
    # Go ServeMux: an exact pattern wins; else the longest subtree pattern ("/x/") that prefixes.
    route = _EXACT_ROUTES.get(path)
    if route is not None:
        return route, ""
    best: tuple[Route, str] | None = None
    for route in _PREFIX_ROUTES:
        if path.startswith(route.path) and (best is None or len(route.path) > len(best[0].path)):
            best = (route, path[len(route.path) :])
    return best


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return _response(status, text.encode("utf-8"), _TEXT, headers)


class _Response(Response):
    default_mimetype = None  # no Content-Type unless one is given (Quart's default is text/html)


def _response(
    status: int, body: bytes, content_type: str | None, headers: dict[str, str] | None = None
) -> Response:
    if not body and content_type != _JSON:
        content_type = None  # Go writes no Content-Type for an empty body.
    # Headers in the order Consul's are written: Content-Type, Content-Length, then the rest.
    resp = _Response(body, status=status, content_type=content_type)
    if headers:
        for k, v in headers.items():
            resp.headers[k] = v
    return resp


def _report(agent: Agent, where: str, exc: BaseException) -> None:
    # A failing reporter must not turn a 500 into a traceback either.
    with contextlib.suppress(Exception):
        agent.report_internal_error(where, exc)


class _ConsulApp(QuartTrio):
    def create_url_adapter(self, request: Any) -> Any:
        # Go routes on the path alone; werkzeug binds its URL map to the Host header and fails
        # (BadHost, outside every handler) on one it cannot IDNA-encode, e.g. a 64+ character
        # label. Bind such a request to a neutral name instead.
        try:
            return super().create_url_adapter(request)
        except BadHost:
            return self.url_map.bind(
                "localhost",
                request.root_path,
                None,
                request.scheme,
                request.method,
                request.path,
                request.query_string.decode("latin-1"),
            )


UIHandler = Callable[[Request], Awaitable[Response]]


def create_app(agent: Agent, ui: UIHandler | None = None) -> QuartTrio:
    """The HTTP API of one server, answering through ``agent``; ``ui`` answers ``/ui`` and
    ``/ui/...`` (consim's own page, ``consim.ui.live``; without it those are Consul's 404s)."""
    app = _ConsulApp(__name__)
    app.url_map.merge_slashes = False  # keys like "a//b" must reach the KV handler untouched
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    # Quart buffers a body up to this size and drops the rest (Ctx.body raises BodyTooLarge).
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_SIZE
    # Consul's wrap() sets this on every API answer, ACLs enabled or not (the agent's
    # acl.default_policy, "allow" by default); Go writes the name canonicalized.
    acl_policy = {"X-Consul-Default-Acl-Policy": getattr(agent, "default_acl_policy", "allow")}

    async def dispatch(path: str = "") -> Response:
        req = request._get_current_object()  # once, not through the proxy on every access
        method = req.method
        path = req.path
        if ui is not None and (path == "/ui" or path.startswith("/ui/")):
            return await ui(req)
        if path == "/":
            return _text(
                200,
                "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the "
                "agent configuration and restart.",
            )
        found = _match(path)
        if found is None:
            if "/v1/" in path:
                return _text(404, "Invalid URL path: not a recognized HTTP API endpoint\n")
            return _text(
                404,
                "Invalid URL path: if attempting to use the HTTP API, ensure the path "
                "starts with '/v1/'\n",
            )
        route, rest = found
        # Every registered endpoint sits behind Consul's gzip handler (Vary, gzip on request).
        accept = req.headers.get("Accept-Encoding")

        def wrapped(
            status: int, body: bytes, content_type: str | None, headers: dict[str, str]
        ) -> Response:
            body, headers = maybe_gzip(body, headers, accept)
            return _response(status, body, content_type, headers)

        def text(status: int, message: str, headers: dict[str, str]) -> Response:
            return wrapped(status, message.encode("utf-8"), _TEXT, headers)

        allow = _ALLOW[route.path]
        if method == "OPTIONS":
            return wrapped(200, b"", None, {**acl_policy, "Allow": allow})
        if method not in route.methods:
            return text(405, f"method {method} not allowed", {**acl_policy, "Allow": allow})
        ctx = Ctx(agent, req, method, path, rest)
        ctx.meta_headers.update(acl_policy)
        try:
            result = await route.handler(ctx)
        except HTTPError as exc:
            return text(exc.status, exc.text, ctx.meta_headers)
        except RpcError as exc:
            message = getattr(exc, "message", str(exc))
            status = getattr(exc, "status", None) or error_status(message)
            return text(status, message, ctx.meta_headers)
        except Exception as exc:  # never leak a traceback to a client
            _report(agent, f"{method} {path}", exc)
            return text(500, "internal error", acl_policy)
        if isinstance(result, Response):  # a streaming answer (agent/monitor) made its own
            return result
        if isinstance(result, Reply):
            headers = {**ctx.meta_headers, **(result.headers or {})}
            return wrapped(result.status, result.body, result.content_type, headers)
        if result is None:
            return wrapped(200, b"", None, ctx.meta_headers)
        if result is JSON_NULL:
            result = None
        body = marshal_json(result, ctx.has("pretty"))
        return wrapped(200, body, _JSON, ctx.meta_headers)

    app.add_url_rule("/", "root", dispatch, methods=_ALL_METHODS, provide_automatic_options=False)
    app.add_url_rule(
        "/<path:path>", "api", dispatch, methods=_ALL_METHODS, provide_automatic_options=False
    )

    @app.errorhandler(HTTPException)
    async def _http_exception(exc: HTTPException) -> Response:
        # Methods outside _ALL_METHODS, bad bodies, etc.: answer as Consul (plain text).
        if exc.code == 405:
            return await dispatch()
        return _text(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        _report(agent, f"{request.method} {request.path}", exc)
        return _text(500, "internal error")

    return app
