"""The one HTTP client consim uses against a live server or control API (httpx, no sockets kept).

No 5 s httpx default: Consul's api client waits as long as the agent takes (a keyring query over
WAN times out server-side after 8 s, ``?dc`` after the hold timeout). httpx's errors pass through;
each caller words them its own way (a scenario step's detail, the consul CLI's Go text).
"""

from __future__ import annotations

DEFAULT_TIMEOUT = 65.0


async def request(
    address: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[int, dict[str, str], bytes]:
    """One request to ``http://<address><path>``: (status, headers, body)."""
    import httpx

    async with httpx.AsyncClient(timeout=timeout) as client:
        response = await client.request(
            method, f"http://{address}{path}", headers=headers, content=body
        )
    return response.status_code, dict(response.headers), response.content
