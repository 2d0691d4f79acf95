"""Consul's agent endpoints for the agent's own services and checks
(``agent/agent_endpoint.go``): /v1/agent/services, /v1/agent/service/*, /v1/agent/checks,
/v1/agent/check/*, /v1/agent/maintenance. Each becomes one ``Agent.local`` call."""

from __future__ import annotations

from typing import Any

from consim.golike import GoError, parse_bool
from consim.http.catalog import SERVICE_FIELDS, check_out, decode_object, fold
from consim.http.context import Ctx, HTTPError, Route

CHECK_DEF_FIELDS = (
    "ID",
    "CheckID",
    "Name",
    "Notes",
    "ServiceID",
    "Status",
    "TTL",
    "HTTP",
    "TCP",
    "UDP",
    "GRPC",
    "H2PING",
    "OSService",
    "Args",
    "ScriptArgs",
    "AliasNode",
    "AliasService",
    "Interval",
    "Timeout",
    "DeregisterCriticalServiceAfter",
)
# structs.ServiceDefinition: NodeService's fields (Name for Service) and the service's checks.
SERVICE_DEF_FIELDS = (
    *(f for f in SERVICE_FIELDS if f not in ("Service", "CreateIndex", "ModifyIndex")),
    "Name",
    "Check",
    "Checks",
)


def _check_def(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {}
    out = fold(obj, CHECK_DEF_FIELDS)
    if "ID" in out and not out.get("CheckID"):
        out["CheckID"] = out.pop("ID")  # CheckDefinition's ID is its CheckID
    out.pop("ID", None)
    return out


def _filter(c: Ctx) -> dict[str, Any]:
    return {"Filter": c.get("filter")} if c.has("filter") else {}


async def services(c: Ctx) -> Any:
    return await c.agent.local("services", _filter(c), c.token())


async def service(c: Ctx) -> Any:
    return await c.agent.local("service", {"ID": c.rest}, c.token())


async def checks(c: Ctx) -> Any:
    found = await c.agent.local("checks", _filter(c), c.token())
    return {cid: check_out(ch) for cid, ch in found.items()}


async def service_register(c: Ctx) -> Any:
    obj = fold(await decode_object(c, "structs.ServiceDefinition"), SERVICE_DEF_FIELDS)
    obj["Check"] = _check_def(obj.get("Check")) or None
    obj["Checks"] = [_check_def(ch) for ch in obj.get("Checks") or []]
    return await c.agent.local("service_register", {"Definition": obj}, c.token())


async def service_deregister(c: Ctx) -> Any:
    return await c.agent.local("service_deregister", {"ID": c.rest}, c.token())


def _enable(c: Ctx) -> bool:
    if not c.has("enable"):
        raise HTTPError(400, "Missing value for enable")
    raw = c.get("enable")
    try:
        return parse_bool(raw)
    except GoError:
        raise HTTPError(400, f'Invalid value for enable: "{raw}"') from None


async def service_maintenance(c: Ctx) -> Any:
    if not c.rest:
        raise HTTPError(400, "Missing service ID")
    args = {"ID": c.rest, "Enable": _enable(c), "Reason": c.get("reason")}
    return await c.agent.local("service_maintenance", args, c.token())


async def node_maintenance(c: Ctx) -> Any:
    args = {"Enable": _enable(c), "Reason": c.get("reason")}
    return await c.agent.local("node_maintenance", args, c.token())


async def check_register(c: Ctx) -> Any:
    obj = _check_def(await decode_object(c, "structs.CheckDefinition"))
    return await c.agent.local("check_register", {"Definition": obj}, c.token())


async def check_deregister(c: Ctx) -> Any:
    return await c.agent.local("check_deregister", {"ID": c.rest}, c.token())


def _ttl(status: str) -> Any:
    async def handler(c: Ctx) -> Any:
        args = {"ID": c.rest, "Status": status, "Output": c.get("note")}
        return await c.agent.local("check_update", args, c.token())

    return handler


async def check_update(c: Ctx) -> Any:
    obj = fold(await decode_object(c, "agent.checkUpdate"), ("Status", "Output"))
    status = str(obj.get("Status") or "")
    if status not in ("passing", "warning", "critical"):
        raise HTTPError(400, f"Invalid check status: '{status}'")
    args = {"ID": c.rest, "Status": status, "Output": str(obj.get("Output") or "")}
    return await c.agent.local("check_update", args, c.token())


ROUTES: tuple[Route, ...] = (
    Route("/v1/agent/services", False, ("GET",), services),
    Route("/v1/agent/service/", True, ("GET",), service),
    Route("/v1/agent/service/register", False, ("PUT",), service_register),
    Route("/v1/agent/service/deregister/", True, ("PUT",), service_deregister),
    Route("/v1/agent/service/maintenance/", True, ("PUT",), service_maintenance),
    Route("/v1/agent/maintenance", False, ("PUT",), node_maintenance),
    Route("/v1/agent/checks", False, ("GET",), checks),
    Route("/v1/agent/check/register", False, ("PUT",), check_register),
    Route("/v1/agent/check/deregister/", True, ("PUT",), check_deregister),
    Route("/v1/agent/check/pass/", True, ("PUT",), _ttl("passing")),
    Route("/v1/agent/check/warn/", True, ("PUT",), _ttl("warning")),
    Route("/v1/agent/check/fail/", True, ("PUT",), _ttl("critical")),
    Route("/v1/agent/check/update/", True, ("PUT",), check_update),
)
