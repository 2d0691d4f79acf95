"""Consul's session HTTP endpoints (``agent/session_endpoint.go``)."""

from __future__ import annotations

from typing import Any

from consim.golike import GoError, JSONBigNumber, parse_duration
from consim.http.catalog import decode_object, fold
from consim.http.context import Ctx, HTTPError, Reply, Route, ordered

SESSION_FIELDS = (
    "ID",
    "Name",
    "Node",
    "LockDelay",
    "Behavior",
    "TTL",
    "NodeChecks",
    "ServiceChecks",
    "CreateIndex",
    "ModifyIndex",
)
# What a create request may set: the session's fields but its ID and indexes, and the
# deprecated ``Checks`` (it stands in for an absent NodeChecks).
_IN_FIELDS = (
    *(f for f in SESSION_FIELDS if f not in ("ID", "CreateIndex", "ModifyIndex")),
    "Checks",
)
DEFAULT_LOCK_DELAY_NS = 15_000_000_000
LOCK_DELAY_MIN_THRESHOLD = 1000  # structs.lockDelayMinThreshold: lower numbers are seconds
SERF_CHECK = "serfHealth"


def session_out(s: dict[str, Any]) -> dict[str, Any]:
    return ordered(dict(s), SESSION_FIELDS)


def _lock_delay(value: Any) -> int:
    # structs.Session.UnmarshalJSON: a Go duration string or a number of nanoseconds.
    if isinstance(value, str):
        ns = round(parse_duration(value) * 1e9)
    elif isinstance(value, JSONBigNumber):
        raise GoError("json: cannot unmarshal number into Go value of type time.Duration")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        ns = int(value)
    else:
        return DEFAULT_LOCK_DELAY_NS
    return ns * 1_000_000_000 if ns < LOCK_DELAY_MIN_THRESHOLD else ns


async def session_create(c: Ctx) -> Any:
    session: dict[str, Any] = {
        "Node": c.agent.node_name,
        "NodeChecks": [SERF_CHECK],
        "LockDelay": DEFAULT_LOCK_DELAY_NS,
        "Behavior": "release",
        "TTL": "",
    }
    body = fold(await decode_object(c, "structs.Session"), _IN_FIELDS)
    try:
        if "LockDelay" in body and body["LockDelay"] is not None:
            session["LockDelay"] = _lock_delay(body.pop("LockDelay"))
    except GoError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None
    body.pop("LockDelay", None)
    checks = body.pop("Checks", None)
    session.update({k: v for k, v in body.items() if v is not None or k == "NodeChecks"})
    # fixupEmptySessionChecks: the deprecated Checks field stands in for an absent NodeChecks.
    if checks is not None and "NodeChecks" not in body:
        session["NodeChecks"] = list(checks)
    args = {**c.write_args(), "Op": "create", "Session": session}
    reply = await c.rpc("Session.Apply", args)
    return {"ID": reply.get("Result")}


def _id(c: Ctx) -> str:
    if not c.rest:
        raise HTTPError(400, "Missing session")
    return c.rest


async def session_destroy(c: Ctx) -> Any:
    args = {**c.write_args(), "Op": "destroy", "Session": {"ID": _id(c)}}
    await c.rpc("Session.Apply", args)
    return True


async def session_renew(c: Ctx) -> Any:
    sid = _id(c)
    args = {**c.write_args(), "SessionID": sid}
    reply = await c.rpc("Session.Renew", args)
    sessions = reply.get("Sessions") or []
    if not sessions:
        return Reply(
            404, f"Session id '{sid}' not found".encode(), content_type="text/plain; charset=utf-8"
        )
    return [session_out(s) for s in sessions]


async def _sessions(c: Ctx, method: str, args: dict[str, Any]) -> Any:
    reply = await c.rpc(method, args)
    c.set_meta(reply)
    return [session_out(s) for s in reply.get("Sessions") or []]


async def session_info(c: Ctx) -> Any:
    args = c.query_args()
    args["SessionID"] = _id(c)
    return await _sessions(c, "Session.Get", args)


async def session_node(c: Ctx) -> Any:
    args = c.query_args()
    if not c.rest:
        raise HTTPError(400, "Missing node name")
    args["Node"] = c.rest
    return await _sessions(c, "Session.NodeSessions", args)


async def session_list(c: Ctx) -> Any:
    return await _sessions(c, "Session.List", c.query_args())


ROUTES: tuple[Route, ...] = (
    Route("/v1/session/create", False, ("PUT",), session_create),
    Route("/v1/session/destroy/", True, ("PUT",), session_destroy),
    Route("/v1/session/renew/", True, ("PUT",), session_renew),
    Route("/v1/session/info/", True, ("GET",), session_info),
    Route("/v1/session/node/", True, ("GET",), session_node),
    Route("/v1/session/list", False, ("GET",), session_list),
)
