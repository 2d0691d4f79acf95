"""Calling a server's ASGI app in process: no sockets, so it runs in virtual time.

Virtual-time runs must never touch the kernel (the autojump clock would jump while the kernel
holds our bytes). :func:`request` builds the ASGI scope itself and drives one request/response
exchange to completion inside the caller's task; nothing outlives the call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import trio

Headers = Mapping[str, str] | None


async def request(
    app: Any,
    method: str,
    path_with_query: str,
    headers: Headers = None,
    body: bytes = b"",
    *,
    client: tuple[str, int] = ("127.0.0.1", 50000),
    server: tuple[str, int] = ("127.0.0.1", 8500),
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP exchange with ``app``; returns (status, headers with lower-case names, body).

    ``path_with_query`` is what would follow the host in a URL (percent-encoded as on the wire).
    """
    raw_path, _, query = path_with_query.partition("?")
    hdrs = [
        (k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (headers or {}).items()
    ]
    # A chunked request (a transfer-encoding header given) carries no Content-Length.
    if body and not any(k in (b"content-length", b"transfer-encoding") for k, _ in hdrs):
        hdrs.append((b"content-length", str(len(body)).encode()))
    if not any(k == b"host" for k, _ in hdrs):
        hdrs.append((b"host", f"{server[0]}:{server[1]}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": hdrs,
        "client": client,
        "server": server,
        "extensions": {},
    }
    body_sent = False
    done = trio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # After the body, the only thing left to report is a disconnect, once the response is out.
        await done.wait()
        return {"type": "http.disconnect"}

    status = 500
    out_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            for k, v in message.get("headers", []):
                name = k.decode("latin-1").lower()
                value = v.decode("latin-1")
                # Repeated headers fold as HTTP allows (comma-joined).
                out_headers[name] = (
                    f"{out_headers[name]}, {value}" if name in out_headers else value
                )
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    done.set()
    return status, out_headers, b"".join(chunks)


@asynccontextmanager
async def serving_in_process(app: Any) -> AsyncIterator[Any]:
    """Run the app's startup/shutdown (before_serving/after_serving) around in-process use.

    The HTTP app needs no startup today; this exists so callers have one place to hook it.
    """
    async with trio.open_nursery() as nursery:
        app.nursery = nursery  # what quart-trio's lifespan would provide for background tasks
        await app.startup()
        try:
            yield app
        finally:
            await app.shutdown()
            nursery.cancel_scope.cancel()
