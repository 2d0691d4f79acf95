"""The frame limit holds the same way in both networks (each test runs against SimNetwork and
SocketNetwork), so virtual time sees what the real wire would refuse."""

from __future__ import annotations

from typing import Any

import pytest

from consim.net.framing import MAX_FRAME, FrameTooLarge
from consim.net.network import INTERNAL_ERROR, RpcError
from tests.net.conftest import Env, wait_for

BIG = b"x" * (MAX_FRAME + 1)  # one byte of payload past the limit is enough


async def handler(method: str, args: Any, src: str) -> Any:
    if method == "big-reply":
        return BIG
    return {"method": method, "n": len(args) if isinstance(args, bytes) else 0}


async def test_oversized_notify_is_refused_at_the_sender(env: Env, clock: Any) -> None:
    got: list[Any] = []

    async def on_call(method: str, args: Any, src: str) -> Any:
        got.append((method, len(args)))

    a = await env.serve(1, on_call)
    src = env.src(2)
    with pytest.raises(FrameTooLarge, match=f"exceeds limit {MAX_FRAME}"):
        env.net.notify(src, a, "Raft.Message", BIG)
    # The link still works: a message within the limit arrives, the oversized one never did.
    env.net.notify(src, a, "Raft.Message", b"y" * (MAX_FRAME - 1024))
    await wait_for(lambda: got)
    assert got == [("Raft.Message", MAX_FRAME - 1024)]


async def test_oversized_request_is_refused_and_the_server_keeps_serving(
    env: Env, clock: Any
) -> None:
    a = await env.serve(1, handler)
    src = env.src(2)
    with pytest.raises(FrameTooLarge):
        await env.net.call(src, a, "KVS.Apply", BIG, 5.0)
    assert await env.net.call(src, a, "KVS.Apply", b"ok", 5.0) == {"method": "KVS.Apply", "n": 2}


async def test_oversized_reply_is_an_internal_error(env: Env, clock: Any) -> None:
    a = await env.serve(1, handler)
    src = env.src(2)
    with pytest.raises(RpcError) as err:
        await env.net.call(src, a, "big-reply", None, 5.0)
    assert err.value.message == INTERNAL_ERROR
    assert env.net.stats[a]["handler_errors"] == 1
