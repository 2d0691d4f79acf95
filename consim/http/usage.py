"""``/v1/operator/usage`` (Consul's ``operator_endpoint.go`` OperatorUsage) and
``/v1/agent/metrics`` (the agent's go-metrics snapshot, JSON or Prometheus text)."""

from __future__ import annotations

from typing import Any

from consim.http.context import Ctx, Reply, Route


async def operator_usage(c: Ctx) -> Any:
    args = c.query_args()
    reply = await c.rpc("Operator.Usage", args)
    c.set_meta(reply)
    meta = reply.get("QueryMeta") or {}
    return {
        "Usage": reply.get("Usage") or {},
        "Index": int(reply.get("Index") or 0),
        "LastContact": int(float(meta.get("LastContact") or 0) * 1e9),
        "KnownLeader": bool(meta.get("KnownLeader")),
        "ConsistencyLevel": meta.get("ConsistencyLevel", ""),
        "NotModified": False,
        "Backend": 0,
        "ResultsFilteredByACLs": False,
        "DefaultACLPolicy": "",
        "QueryBackend": 0,
    }


def _prometheus_name(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


async def agent_metrics(c: Ctx) -> Any:
    metrics = c.agent.metrics(c.token())
    if c.get("format") == "prometheus":
        lines: list[str] = []
        for gauge in metrics["Gauges"]:
            name = _prometheus_name(gauge["Name"])
            lines += [f"# HELP {name} {gauge['Name']}", f"# TYPE {name} gauge"]
            lines.append(f"{name} {gauge['Value']}")
        for counter in metrics["Counters"]:
            name = _prometheus_name(counter["Name"])
            lines += [f"# HELP {name} {counter['Name']}", f"# TYPE {name} counter"]
            lines.append(f"{name} {counter['Sum']}")
        text = "\n".join(lines) + "\n"
        return Reply(200, text.encode(), content_type="text/plain; version=0.0.4; charset=utf-8")
    return metrics


ROUTES: tuple[Route, ...] = (
    Route("/v1/operator/usage", False, ("GET",), operator_usage),
    Route("/v1/agent/metrics", False, ("GET",), agent_metrics),
)
