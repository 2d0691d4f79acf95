"""``/v1/snapshot`` (Consul's ``agent/snapshot_endpoint.go``): GET saves the state as an
archive (``?stale`` lets a follower answer), PUT restores one."""

from __future__ import annotations

from typing import Any

from consim.http.context import Ctx, Reply, Route

MAX_SNAPSHOT_BODY = 64 * 1024 * 1024


async def snapshot(c: Ctx) -> Any:
    if c.method == "GET":
        args = c.query_args()
        reply = await c.rpc("Snapshot.Save", args)
        c.set_meta(reply)
        return Reply(200, bytes(reply["Data"]), content_type="application/x-gzip")
    args = c.write_args()
    # The archive may be larger than the JSON endpoints' body limit: read it whole here.
    args["Data"] = await c.request.get_data(cache=False, as_text=False)
    await c.rpc("Snapshot.Restore", args)
    return None


ROUTES: tuple[Route, ...] = (Route("/v1/snapshot", False, ("GET", "PUT"), snapshot),)
