"""One failure domain per owner: a timer, handler, outbox or connection task that raises is
counted and reported, and the network (every other server's timers, listeners and links) goes on.
Invalid destinations never reach a socket. Both networks run every test."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from consim.net.network import RpcError, Unreachable

from .conftest import Env, wait_for


def _reports(env: Env) -> list[tuple[str, str, str]]:
    got: list[tuple[str, str, str]] = []
    env.net.on_error = lambda address, where, exc: got.append((address, where, str(exc)))
    return got


async def test_a_failing_timer_is_contained_and_others_keep_firing(env: Env, clock: Any) -> None:
    reports = _reports(env)
    fired: list[str] = []

    def bad() -> None:
        fired.append("bad")
        raise ValueError("injected timer failure")

    owner = env.src(1)
    bad_timer = env.net.timer(bad, owner)
    good = env.net.timer(lambda: fired.append("good"))
    now = trio.current_time()
    bad_timer.arm(now + 0.05)
    good.arm(now + 0.1)
    await wait_for(lambda: "good" in fired)
    assert fired == ["bad", "good"]
    assert env.net.stats[owner]["timer_errors"] == 1
    assert reports == [(owner, "timer", "injected timer failure")]
    # The failed timer can be armed again (its owner decides to go on).
    bad_timer.arm(trio.current_time() + 0.05)
    await wait_for(lambda: fired.count("bad") == 2)
    assert env.net.stats[owner]["timer_errors"] == 2


async def test_failing_rpc_and_notify_handlers_are_reported(env: Env, clock: Any) -> None:
    reports = _reports(env)
    seen: list[Any] = []

    async def handler(method: str, args: Any, src: str) -> Any:
        if args == "boom":
            raise KeyError("injected handler failure")
        seen.append(args)
        return args

    def on_notify(method: str, args: Any, src: str) -> None:
        if args == "boom":
            raise RuntimeError("injected notify failure")
        seen.append(("notify", args))

    addr = await env.nursery.start(
        lambda task_status: env.net.serve_rpc(
            env.addr(1), handler, notify_handler=on_notify, task_status=task_status
        )
    )
    src = env.src(2)
    with pytest.raises(RpcError, match="internal error"):
        await env.net.call(src, addr, "KVS.Get", "boom", 2.0)
    env.net.notify(src, addr, "Raft.Message", "boom")
    env.net.notify(src, addr, "Raft.Message", "after")
    assert await env.net.call(src, addr, "KVS.Get", "ok", 2.0) == "ok"
    await wait_for(lambda: ("notify", "after") in seen)
    assert env.net.stats[addr]["handler_errors"] == 2
    wheres = sorted((a, w) for a, w, _ in reports)
    assert wheres == [(addr, "rpc handler"), (addr, "rpc handler")]


async def test_failing_datagram_handler_is_reported(env: Env, clock: Any) -> None:
    reports = _reports(env)
    got: list[bytes] = []

    def handler(src: str, payload: bytes) -> None:
        if payload == b"boom":
            raise ValueError("injected datagram failure")
        got.append(payload)

    d = await env.serve_datagrams(1, handler)
    src = env.src(2).replace(":8300", ":8301")
    env.net.send_datagram(src, d, b"boom")
    env.net.send_datagram(src, d, b"after")
    await wait_for(lambda: got == [b"after"])
    assert env.net.stats[d]["datagram_handler_errors"] == 1
    assert reports == [(d, "datagram handler", "injected datagram failure")]


@pytest.mark.parametrize(
    "bad", ["", "127.0.20.9:notaport", "127.0.20.9:99999", ":8301", "127.0.0.1", "host:1"]
)
async def test_invalid_destinations_never_reach_a_socket(env: Env, clock: Any, bad: str) -> None:
    src = env.src(2)
    env.net.notify(src, bad, "Raft.Message", {"x": 1})
    env.net.send_datagram(src, bad, b"ping")
    with pytest.raises(Unreachable):
        await env.net.call(src, bad, "Status.Leader", {}, 1.0)
    assert env.net.stats[src]["invalid_address"] == 3
    # The network is still running and usable afterwards.
    await trio.sleep(0.2)
    addr = await env.serve(1, _echo)
    assert await env.net.call(src, addr, "Status.Ping", "still here", 2.0) == "still here"


async def _echo(method: str, args: Any, src: str) -> Any:
    return args


# ---- live only: the tasks SocketNetwork runs per link and per connection ------------------------
@pytest.fixture
async def live() -> Any:
    from .conftest import open_env

    async with open_env("sockets", Env) as opened:
        yield opened


async def test_outbox_failure_is_contained_to_that_notify(live: Env, monkeypatch: Any) -> None:
    reports = _reports(live)
    got: list[Any] = []

    async def handler(method: str, args: Any, src: str) -> Any:
        got.append(args)

    addr = await live.serve(1, handler)
    src = live.src(2)
    pool = live.net.pool  # type: ignore[attr-defined]
    real_get = pool.get
    calls = {"n": 0}

    async def flaky_get(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected outbox failure")
        return await real_get(*args)

    monkeypatch.setattr(pool, "get", flaky_get)
    live.net.notify(src, addr, "Raft.Message", 1)  # lost to the injected failure
    live.net.notify(src, addr, "Raft.Message", 2)  # same link, same outbox task: delivered
    await wait_for(lambda: got == [2])
    assert live.net.stats[src]["outbox_errors"] == 1
    assert reports == [(src, f"outbox to {addr}", "injected outbox failure")]


async def test_connection_task_failure_closes_that_connection_only(
    live: Env, monkeypatch: Any
) -> None:
    from consim.net import rpc

    reports = _reports(live)
    addr = await live.serve(1, _echo)
    src = live.src(2)
    assert await live.net.call(src, addr, "Status.Ping", "a", 2.0) == "a"
    real = rpc._request_fields
    state = {"armed": True}

    def flaky(obj: Any) -> Any:
        if state["armed"]:
            state["armed"] = False
            raise RuntimeError("injected connection failure")
        return real(obj)

    monkeypatch.setattr(rpc, "_request_fields", flaky)
    with pytest.raises(Unreachable):
        await live.net.call(src, addr, "Status.Ping", "b", 2.0)  # its connection was closed
    assert live.net.stats[addr]["connection_errors"] == 1
    assert reports == [(addr, "rpc connection", "injected connection failure")]
    # The listener still accepts: the next call redials and is answered.
    assert await live.net.call(src, addr, "Status.Ping", "c", 2.0) == "c"


async def test_client_reader_failure_is_contained(live: Env, monkeypatch: Any) -> None:
    from consim.net import rpc

    reports = _reports(live)
    addr = await live.serve(1, _echo)
    src = live.src(2)
    real = rpc._reply_fields
    state = {"armed": True}

    def flaky(obj: Any) -> Any:
        if state["armed"]:
            state["armed"] = False
            raise RuntimeError("injected reader failure")
        return real(obj)

    monkeypatch.setattr(rpc, "_reply_fields", flaky)
    with pytest.raises(Unreachable):
        await live.net.call(src, addr, "Status.Ping", "a", 2.0)
    assert live.net.stats[src]["connection_errors"] == 1
    assert reports == [(src, "rpc connection reader", "injected reader failure")]
    assert await live.net.call(src, addr, "Status.Ping", "b", 2.0) == "b"
