"""HTTP and TCP health checks as a cluster runs them (Consul's ``checks.CheckHTTP`` /
``CheckTCP`` texts), reaching only the cluster's own servers, in either mode: a probe of a
server's HTTP address goes through ``Cluster.http`` (in process in virtual time, over a socket
live); anything else is refused as a closed port would be. This keeps virtual runs closed and
repeatable."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import trio

PASSING, WARNING, CRITICAL = "passing", "warning", "critical"
OUTPUT_LIMIT = 4096  # Consul's BufSize for check output


def _server_at(cluster: Any, address: str, kinds: tuple[str, ...]) -> Any:
    for node in cluster.servers.values():
        spec = node.spec
        if any(getattr(spec, k) == address for k in kinds) and node.running:
            return node
    return None


async def probe(cluster: Any, kind: str, target: str, timeout: float) -> tuple[str, str]:
    """(status, output) of one HTTP or TCP check run against ``target``."""
    if kind == "tcp":
        if _server_at(cluster, target, ("http_address", "rpc_address")) is not None:
            return PASSING, f"TCP connect {target}: Success"
        return CRITICAL, f"dial tcp {target}: connect: connection refused"
    url = urlsplit(target)
    hostport = url.netloc or target
    if url.hostname:
        port = url.port or (443 if url.scheme == "https" else 80)
        host = "127.0.0.1" if url.hostname == "localhost" else url.hostname
        hostport = f"{host}:{port}"
    node = _server_at(cluster, hostport, ("http_address",)) if url.scheme == "http" else None
    if node is None:
        return CRITICAL, f'Get "{target}": dial tcp {hostport}: connect: connection refused'
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    answer = None
    with trio.move_on_after(timeout):
        answer = await cluster.http(node.name, "GET", path)
    if answer is None:
        return CRITICAL, (
            f'Get "{target}": context deadline exceeded (Client.Timeout exceeded while '
            "awaiting headers)"
        )
    status, _, body = answer
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    text = body[:OUTPUT_LIMIT].decode("utf-8", "replace")
    output = f"HTTP GET {target}: {status} {phrase} Output: {text}"
    if 200 <= status < 300:
        return PASSING, output
    if status == 429:
        return WARNING, output
    return CRITICAL, output
