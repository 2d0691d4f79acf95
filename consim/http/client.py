"""The one HTTP client consim uses against a live server or control API (httpx).

No 5 s httpx default: Consul's api client waits as long as the agent takes (a keyring query over
WAN times out server-side after 8 s, ``?dc`` after the hold timeout). httpx's errors pass through;
each caller words them its own way (a scenario step's detail, the consul CLI's Go text).

:func:`request` is one request on a client of its own (no connection kept): for one-off calls.
Whatever sends many (a live cluster's HTTP front, a poll loop) holds one :class:`Client` for as
long as it runs, so the requests share its keep-alive connections, as Consul's api client shares
its pooled transport: a fresh connection per request costs a TCP handshake on both sides.

consim only speaks plain ``http://``: every httpx client is built with ``verify=False``, so
no TLS context is loaded with the CA bundle (about 25 ms of CPU per client, which a live load
step at 50/s paid on every request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

DEFAULT_TIMEOUT = 65.0

Answer = tuple[int, dict[str, str], bytes]  # status, headers (lower-case names), body


def _httpx_client(timeout: float) -> httpx.AsyncClient:
    import httpx

    # No cap on connections: a load step's requests in flight each get one, as they did with a
    # client each (a capped pool would queue them in the client and count that as latency).
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    return httpx.AsyncClient(timeout=timeout, verify=False, limits=limits)


class Client:
    """Requests on one httpx client and its connection pool; ``aclose`` (or ``async with``)
    closes its connections. Usable from the trio run it was made in."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._client = _httpx_client(timeout)

    async def request(
        self,
        address: str,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        timeout: float | None = None,
    ) -> Answer:
        """One request to ``http://<address><path>`` (``timeout``: this one's, else the client's)."""
        options = {} if timeout is None else {"timeout": timeout}
        response = await self._client.request(
            method, f"http://{address}{path}", headers=headers, content=body, **options
        )
        return response.status_code, dict(response.headers), response.content

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def request(
    address: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = DEFAULT_TIMEOUT,
) -> Answer:
    """One request to ``http://<address><path>`` on a client of its own: (status, headers, body)."""
    async with Client(timeout) as client:
        return await client.request(address, method, path, headers=headers, body=body)
