"""One failure domain per owner: a timer, datagram or connection handler that raises is
counted and reported, and the network (every other server's timers, listeners and links) goes on.
Invalid destinations never reach a socket. Both networks run every test."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from consim.net.network import Unreachable
from consim.net.portmux import RPC_RAFT

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


async def test_a_failing_connection_handler_closes_that_connection_only(
    env: Env, clock: Any
) -> None:
    reports = _reports(env)
    seen: list[bytes] = []

    class Handler:
        def data_received(self, data: bytes) -> None:
            if b"boom" in data:
                raise KeyError("injected handler failure")
            seen.append(data)

        def connection_lost(self) -> None:
            pass

    addr = await env.serve(1, _echo)
    env.net.port_mux(addr).register(RPC_RAFT, lambda conn: Handler())
    src = env.src(2)
    quiet = lambda conn: Handler()  # noqa: E731
    bad = env.net.dial(src, addr, RPC_RAFT, quiet)
    good = env.net.dial(src, addr, RPC_RAFT, quiet)
    bad.write(b"boom")
    good.write(b"fine")
    await wait_for(lambda: seen == [b"fine"] and env.net.stats[addr]["connection_errors"] == 1)
    assert reports == [(addr, "connection handler", "'injected handler failure'")]
    await wait_for(lambda: bad.closed)
    good.write(b"still")
    await wait_for(lambda: seen == [b"fine", b"still"])
    assert not good.closed
    # Consul's RPC on the same port is unaffected.
    assert await env.call(src, addr, "Status.Ping", "ok", 2.0) == "ok"


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
    conn = env.net.dial(src, bad, RPC_RAFT, lambda conn: _Quiet())
    assert conn.closed
    env.net.send_datagram(src, bad, b"ping")
    with pytest.raises(Unreachable):
        await env.call(src, bad, "Status.Leader", {}, 1.0)
    assert env.net.stats[src]["invalid_address"] == 3
    # The network is still running and usable afterwards.
    await trio.sleep(0.2)
    addr = await env.serve(1, _echo)
    assert await env.call(src, addr, "Status.Ping", "still here", 2.0) == "still here"


class _Quiet:
    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self) -> None:
        pass


async def _echo(method: str, args: Any, src: str) -> Any:
    return args
