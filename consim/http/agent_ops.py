"""``/v1/agent/reload``, ``/v1/agent/token/<kind>`` and ``/v1/agent/monitor`` (Consul's
``agent_endpoint.go`` AgentReload, AgentToken, AgentMonitor)."""

from __future__ import annotations

import math
import zlib
from collections.abc import AsyncIterator
from typing import Any

import trio
from quart import Response

from consim.golike import GoError, decode_json_value, go_json_kind
from consim.http.compress import accepts_gzip
from consim.http.context import Ctx, HTTPError, Route

# AgentToken's targets: every accepted name -> the token it sets.
TOKEN_KINDS = {
    "acl_token": "default",
    "default": "default",
    "acl_agent_token": "agent",
    "agent": "agent",
    "acl_agent_master_token": "agent_recovery",
    "agent_master": "agent_recovery",
    "agent_recovery": "agent_recovery",
    "acl_replication_token": "replication",
    "replication": "replication",
    "config_file_service_registration": "config_file_service_registration",
    "dns_token": "dns",
    "dns": "dns",
}
# logging.ValidateLogLevel's list (hclog's names; ERR is ERROR)
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERR", "ERROR")
# How many lines a slow monitor client may fall behind before lines are dropped
# (Consul's monitor BufferSize).
MONITOR_BUFFER = 512


async def agent_reload(c: Ctx) -> Any:
    await c.agent.reload(c.token())
    return None


def _decode_agent_token(raw: bytes) -> str:
    """Go's decode into api.AgentToken {Token string}: names case-insensitive, others ignored."""
    obj = decode_json_value(raw)
    if obj is None:
        return ""
    if not isinstance(obj, dict):
        raise GoError(
            f"json: cannot unmarshal {go_json_kind(obj)} into Go value of type api.AgentToken"
        )
    value = ""
    for name, v in obj.items():
        if name.lower() != "token" or v is None:
            continue
        if not isinstance(v, str):
            raise GoError(
                f"json: cannot unmarshal {go_json_kind(v)} into Go struct field "
                "AgentToken.Token of type string"
            )
        value = v
    return value


async def agent_token(c: Ctx) -> Any:
    if not c.agent.acl_enabled:
        raise HTTPError(401, "ACL support disabled")
    token = c.token()
    # ACL first, then the body, then the target, as Consul's handler checks them
    c.agent.check_agent_write(token)
    try:
        value = _decode_agent_token(await c.body())
    except GoError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None
    kind = TOKEN_KINDS.get(c.rest)
    if kind is None:
        raise HTTPError(404, f'Token "{c.rest}" is unknown')
    c.agent.update_token(kind, value, token)
    return None


async def agent_monitor(c: Ctx) -> Any:
    subscribe = c.agent.monitor("INFO", c.token())  # agent:read before the level is looked at
    level = c.get("loglevel") or "INFO"
    if level.upper() not in LOG_LEVELS:
        raise HTTPError(400, f"Unknown log level: {level}")
    subscribe = c.agent.monitor(level, c.token(), c.has("logjson"))
    send, receive = trio.open_memory_channel[str](math.inf)
    queued = 0

    def line(text: str) -> None:
        nonlocal queued
        if queued < MONITOR_BUFFER:  # a full buffer drops lines, as Consul's monitor does
            queued += 1
            send.send_nowait(text)

    # gziphandler with MinSize(0) for this endpoint: compressed from the first byte, each
    # batch flushed (Z_SYNC_FLUSH, as Go's gzip.Writer.Flush) so the client sees it at once.
    gzip = (
        zlib.compressobj(6, zlib.DEFLATED, 31)
        if accepts_gzip(c.headers.get("Accept-Encoding"))
        else None
    )

    def encode(data: bytes) -> bytes:
        if gzip is None:
            return data
        return gzip.compress(data) + gzip.flush(zlib.Z_SYNC_FLUSH)

    async def stream() -> AsyncIterator[bytes]:
        nonlocal queued
        unsubscribe = subscribe(line)
        try:
            yield encode(b"")
            async for text in receive:
                queued -= 1
                yield encode(text.encode("utf-8"))
        finally:
            unsubscribe()

    headers = {**c.meta_headers, "Vary": "Accept-Encoding"}
    if gzip is not None:
        headers["Content-Encoding"] = "gzip"
    response = Response(stream(), status=200, content_type="text/plain; charset=utf-8")
    for k, v in headers.items():
        response.headers[k] = v
    response.timeout = None  # a monitor streams until the client goes away
    return response


ROUTES: tuple[Route, ...] = (
    Route("/v1/agent/reload", False, ("PUT",), agent_reload),
    Route("/v1/agent/token/", True, ("PUT",), agent_token),
    Route("/v1/agent/monitor", False, ("GET",), agent_monitor),
)
