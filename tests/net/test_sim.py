"""SimNetwork specifics: determinism, FIFO links, latency, faults checked at delivery. One-way
messages are writes on a port connection (first byte 1, as hashicorp/raft's transport dials);
calls are Consul RPCs (``tests.net.conftest``)."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
import trio
import trio.testing

from consim.net.consul_pool import ConsulPool
from consim.net.network import Network, RpcTimeout
from consim.net.portmux import RPC_RAFT, MuxConn
from consim.net.sim import SimNetwork, VirtualClock
from consim.net.trio_internals import make_trio_deterministic
from tests.net.conftest import serve_port

HOSTS = [f"127.0.0.{k}" for k in (1, 2, 3)]


class _Recorder:
    """A byte-1 connection's handler: each write the simulator hands over whole is one value."""

    def __init__(self, conn: MuxConn, record: Any) -> None:
        self.conn, self.record = conn, record

    def data_received(self, data: bytes) -> None:
        self.record(self.conn.peer, msgpack.unpackb(data))

    def connection_lost(self) -> None:
        pass


def listen(net: Network, address: str, record: Any) -> None:
    """``record(peer, value)`` for every value written to ``address`` on byte 1."""
    net.port_mux(address).register(RPC_RAFT, lambda conn: _Recorder(conn, record))


def sender(net: Network, src: str, dst: str) -> MuxConn:
    return net.dial(src, dst, RPC_RAFT, lambda conn: _Recorder(conn, lambda *_: None))


def run_virtual(fn: Any, seed: int = 0) -> Any:
    # Tasks woken at the same instant run in trio's batch order, which trio randomises unless it is
    # made deterministic; consim's runtime always does that, so these tests do too.
    make_trio_deterministic(seed)
    return trio.run(fn, clock=VirtualClock())


def trace_of(seed: int) -> list[tuple[Any, ...]]:
    """A mixed workload from one driver task; returns what arrived where and when."""
    trace: list[tuple[Any, ...]] = []

    async def main() -> None:
        net = SimNetwork(random.Random(seed), latency=(0.001, 0.01))
        async with net, trio.open_nursery() as nursery:
            for h in HOSTS:

                async def handler(method: str, args: Any, src: str, h: str = h) -> Any:
                    trace.append((trio.current_time(), h, src, method, args))
                    return [h, args]

                def record(src: str, value: Any, h: str = h) -> None:
                    trace.append((trio.current_time(), h, src, "Raft", value))

                listen(net, f"{h}:8300", record)
                await serve_port(net, nursery, f"{h}:8300", handler)
                await nursery.start(
                    net.serve_datagrams,
                    f"{h}:8301",
                    lambda src, p, h=h: trace.append((trio.current_time(), h, src, "dgram", p)),
                )
            pools = {h: ConsulPool(net, f"{h}:8300") for h in HOSTS}
            links: dict[tuple[str, str], MuxConn] = {}
            net.faults.set_loss("*", "127.0.0.3", 0.3)
            for i in range(40):
                s, d = HOSTS[i % 3], HOSTS[(i + 1) % 3]
                link = links.get((s, d))
                if link is None:
                    link = links[(s, d)] = sender(net, f"{s}:8300", f"{d}:8300")
                link.write(msgpack.packb(i))
                net.send_datagram(f"{s}:8301", f"{d}:8301", str(i).encode())
                if i % 5 == 0:
                    try:
                        reply = await pools[s].call(f"{d}:8300", "Status.Peers", i, 0.5)
                        trace.append((trio.current_time(), "reply", reply))
                    except RpcTimeout:
                        trace.append((trio.current_time(), "timeout", i))
                await trio.sleep(0.003)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()

    run_virtual(main, seed)
    return trace


def test_same_seed_same_trace() -> None:
    first = trace_of(7)
    assert len(first) > 60
    assert trace_of(7) == first
    assert trace_of(8) != first


def test_links_are_fifo_despite_jitter() -> None:
    async def main() -> None:
        got: list[int] = []
        net = SimNetwork(random.Random(3), latency=(0.001, 0.05))
        async with net, trio.open_nursery() as nursery:
            listen(net, "127.0.0.1:8300", lambda src, value: got.append(value))
            await nursery.start(net.serve_port, "127.0.0.1:8300")
            link = sender(net, "127.0.0.2:8300", "127.0.0.1:8300")
            for i in range(200):
                link.write(msgpack.packb(i))
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
        assert got == list(range(200))

    run_virtual(main)


def test_latency_within_bounds_and_per_link() -> None:
    async def main() -> None:
        arrivals: list[float] = []
        net = SimNetwork(random.Random(5), latency=(0.010, 0.020))
        async with net, trio.open_nursery() as nursery:
            listen(
                net, "127.0.0.1:8300", lambda src, sent: arrivals.append(trio.current_time() - sent)
            )
            await nursery.start(net.serve_port, "127.0.0.1:8300")
            link = sender(net, "127.0.0.2:8300", "127.0.0.1:8300")
            for _ in range(20):
                link.write(msgpack.packb(trio.current_time()))
                await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        # base latency in [10, 20] ms, jitter at most (20 - 10) / 4 ms
        assert all(0.010 <= a <= 0.0225 for a in arrivals)
        assert max(arrivals) - min(arrivals) <= 0.0025 + 1e-9

    run_virtual(main)


def test_cut_while_in_flight_drops_at_delivery() -> None:
    async def main() -> None:
        got: list[Any] = []
        net = SimNetwork(random.Random(1), latency=(0.5, 0.5))
        async with net, trio.open_nursery() as nursery:
            listen(net, "127.0.0.1:8300", lambda src, value: got.append(value))
            await nursery.start(net.serve_port, "127.0.0.1:8300")
            link = sender(net, "127.0.0.2:8300", "127.0.0.1:8300")
            link.write(msgpack.packb("connected"))
            await trio.sleep(1)
            link.write(msgpack.packb("in flight"))
            await trio.sleep(0.1)
            net.faults.isolate("127.0.0.1")
            await trio.sleep(1)
            assert got == ["connected"]
            assert net.stats["127.0.0.1:8300"]["dropped_by_fault"] == 1
            assert link.closed  # a cut breaks the connection at both ends
            nursery.cancel_scope.cancel()

    run_virtual(main)


def test_not_running_is_an_error() -> None:
    async def main() -> None:
        net = SimNetwork(random.Random(1))
        with pytest.raises(RuntimeError, match="not running"):
            sender(net, "127.0.0.1:8300", "127.0.0.2:8300")

    run_virtual(main)


def test_runs_via_nursery_start() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            net = SimNetwork(random.Random(1))
            started = await nursery.start(net.run)
            assert started is net and net.running

            async def handler(method: str, args: Any, src: str) -> Any:
                return args + 1

            await serve_port(net, nursery, "127.0.0.1:8300", handler)
            pool = ConsulPool(net, "127.0.0.2:8300")
            assert await pool.call("127.0.0.1:8300", "inc", 1, 1.0) == 2
            nursery.cancel_scope.cancel()
        assert not net.running

    run_virtual(main)


def test_trace_independent_of_hash_seed() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = "from tests.net.test_sim import trace_of; print(repr(trace_of(11)))"
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        res = subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outs.add(res.stdout)
    assert len(outs) == 1
    assert outs.pop().strip() == repr(trace_of(11))


def test_virtual_clock_jumps_to_deliveries_and_deadlines() -> None:
    """Deliveries happen at their virtual time with no task polling for them; trio's own
    deadlines still fire on time; wait_all_tasks_blocked works inside such a run."""
    seen: list[tuple[float, str]] = []

    async def main() -> None:
        net = SimNetwork(random.Random(3), latency=(0.25, 0.25))
        async with net, trio.open_nursery() as nursery:
            await nursery.start(
                net.serve_datagrams,
                "127.0.0.2:8301",
                lambda src, p: seen.append((trio.current_time(), p.decode())),
            )
            t0 = trio.current_time()
            net.send_datagram("127.0.0.1:8301", "127.0.0.2:8301", b"a")
            await trio.sleep(10)
            seen.append((trio.current_time() - t0, "slept"))
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()

    run_virtual(main)
    (at, what), (slept, marker) = seen
    assert what == "a" and at == pytest.approx(0.25)  # the base latency; no jitter range
    assert marker == "slept" and slept == 10


def test_a_failing_delivery_surfaces_in_the_run() -> None:
    """An exception inside a delivery the clock makes is raised from the network's task (trio's
    run loop must never see it: that would be a TrioInternalError)."""

    async def main() -> None:
        net = SimNetwork(random.Random(3))

        def broken(dst: str, data: bytes) -> None:
            raise ValueError("delivery bug")

        net._datagram_arrived = broken  # type: ignore[method-assign]
        async with net:
            net.send_datagram("127.0.0.1:8301", "127.0.0.2:8301", b"a")
            await trio.sleep(1)

    with pytest.raises(BaseExceptionGroup) as info:
        run_virtual(main)
    assert info.group_contains(ValueError, match="delivery bug")


def test_wait_all_tasks_blocked_returns_before_time_moves() -> None:
    """As under MockClock's autojump: a task in wait_all_tasks_blocked is woken when everything
    else is blocked, before the clock jumps to the next deadline or delivery."""
    woke: list[float] = []

    async def main() -> None:
        net = SimNetwork(random.Random(3))
        async with net, trio.open_nursery() as nursery:

            async def ticker() -> None:
                while True:
                    await trio.sleep(1)

            nursery.start_soon(ticker)
            net.send_datagram("127.0.0.1:8301", "127.0.0.2:8301", b"in flight")
            await trio.sleep(0.5)
            with trio.move_on_after(50):
                await trio.testing.wait_all_tasks_blocked()
                woke.append(trio.current_time())
            nursery.cancel_scope.cancel()

    run_virtual(main)
    assert woke == [0.5]


def test_next_due_and_deliver_due_are_what_the_clock_drives() -> None:
    """The clock's whole view of a network: when is the next delivery due, and perform what is
    due by then (here called by hand, while the task runs, so the clock cannot have done it)."""
    got: list[tuple[float, bytes]] = []

    async def main() -> None:
        net = SimNetwork(random.Random(3), latency=(0.01, 0.02))
        async with net, trio.open_nursery() as nursery:
            await nursery.start(
                net.serve_datagrams, "127.0.0.2:8301", lambda src, p: got.append((src, p))
            )
            assert net.next_due() == float("inf")
            now = trio.current_time()
            net.send_datagram("127.0.0.1:8301", "127.0.0.2:8301", b"one")
            due = net.next_due()
            assert now + 0.01 <= due <= now + 0.02 + 0.0025
            net.deliver_due(due - 1e-9)  # not yet due: nothing happens
            assert got == [] and net.next_due() == due
            net.deliver_due(due)
            assert got == [("127.0.0.1:8301", b"one")]
            assert net.next_due() == float("inf")
            nursery.cancel_scope.cancel()

    run_virtual(main)
