"""``/v1/event/fire/<name>`` and ``/v1/event/list`` (Consul's ``agent/event_endpoint.go``)."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import trio

from consim.http.context import Ctx, HTTPError, Route

USER_EVENT_VERSION = 1  # Consul's userEventMaxVersion

_EVENT_FIELDS = (
    "ID", "Name", "Payload", "NodeFilter", "ServiceFilter", "TagFilter", "Version", "LTime",
)  # fmt: skip


async def fire(c: Ctx) -> Any:
    name = c.rest
    if not name:
        raise HTTPError(400, "Missing name")
    body = await c.body()
    event = {
        "ID": str(uuid.UUID(int=c.agent.new_event_id(), version=4)),
        "Name": name,
        "Payload": body or None,
        "NodeFilter": c.get("node"),
        "ServiceFilter": c.get("service"),
        "TagFilter": c.get("tag"),
        "Version": USER_EVENT_VERSION,
        "LTime": 0,
    }
    if event["TagFilter"] and not event["ServiceFilter"]:
        raise HTTPError(400, "Cannot provide tag filter without service filter")
    args = c.write_args()
    args["Event"] = event
    await c.rpc("Internal.EventFire", args)
    return _out(event)


def _out(event: dict[str, Any]) -> dict[str, Any]:
    out = {k: event.get(k) for k in _EVENT_FIELDS}
    payload = out["Payload"]
    out["Payload"] = base64.b64encode(payload).decode() if payload else None
    return out


async def listing(c: Ctx) -> Any:
    args = c.query_args()  # checks ?index and ?wait as Consul's parse does
    log = c.agent.user_event_log
    name = c.get("name")
    index = int(args.get("MinQueryIndex") or 0)
    if index:
        with trio.move_on_after(float(args.get("MaxQueryTime") or 0)):
            while log.index() == index:
                await log.wait_change()
    c.meta_headers["X-Consul-Index"] = str(log.index())
    return [_out(e) for e in log.listing(name)]


ROUTES: tuple[Route, ...] = (
    Route("/v1/event/fire/", True, ("PUT",), fire),
    Route("/v1/event/list", False, ("GET",), listing),
)
