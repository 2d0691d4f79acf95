"""The network model (``consim.net.model``): LAN/WAN latency per datacenter pair, and loss that
follows the transport (TCP retransmits a lost segment after an RTO with backoff; UDP does not)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio

from consim.net.consul_pool import ConsulPool
from consim.net.faults import FaultModel
from consim.net.model import RTO_MIN, LinkDelays, retransmission_delay
from consim.net.network import RpcTimeout
from consim.net.portmux import RPC_RAFT
from consim.net.sim import SimNetwork, VirtualClock
from consim.net.sockets import SocketNetwork
from consim.spec import NetworkModel
from tests.net.conftest import serve_port


async def echo(method: str, args: Any, src: str) -> Any:
    return args


def test_retransmission_timeouts_double_and_give_up():
    assert retransmission_delay([False]) == 0.0
    assert retransmission_delay([True, False]) == pytest.approx(RTO_MIN)
    assert retransmission_delay([True, True, True, False]) == pytest.approx(0.2 + 0.4 + 0.8)
    assert retransmission_delay([True] * 16) is None  # 1 + 15 retransmissions, all lost


def test_model_latency_by_datacenter_pair():
    model = NetworkModel(lan_latency=0.002, wan_latency=0.040, wan=(("dc3", "dc1", 0.1),))
    delays = LinkDelays(model, {"a": "dc1", "b": "dc1", "c": "dc2", "d": "dc3"}, random.Random(1))
    assert delays.draw("a", "b") == 0.002
    assert delays.draw("a", "c") == 0.040
    assert delays.draw("a", "d") == delays.draw("d", "a") == 0.1  # either order
    assert delays.draw("a", "a") == 0.0
    assert delays.draw("a", "127.9.9.9") == 0.002  # a client host: LAN
    with pytest.raises(ValueError):
        NetworkModel(loss=1.0)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


def _sim(model: NetworkModel, **kw: Any) -> SimNetwork:
    hosts = {"127.0.0.1": "dc1", "127.0.0.2": "dc1", "127.0.1.1": "dc2"}
    return SimNetwork(random.Random(7), model=model, datacenter_of=hosts, **kw)


async def test_sim_call_takes_the_model_round_trip(clock: VirtualClock) -> None:
    net = _sim(NetworkModel(lan_latency=0.003, wan_latency=0.050))
    async with net, trio.open_nursery() as nursery:
        pool = ConsulPool(net, "127.0.0.1:8300")
        for host in ("127.0.0.2", "127.0.1.1"):
            await serve_port(net, nursery, f"{host}:8300", echo)
        for dst, want in (("127.0.0.2:8300", 0.006), ("127.0.1.1:8300", 0.100)):
            t0 = trio.current_time()
            assert await pool.call(dst, "x", 1, timeout=5) == 1  # a new connection's first
            assert trio.current_time() - t0 == pytest.approx(want)
        nursery.cancel_scope.cancel()


async def test_sim_loss_delays_rpc_and_drops_datagrams(clock: VirtualClock) -> None:
    # Half of all messages lost: every call still answers (late, by whole RTOs), while about
    # half the datagrams never arrive.
    net = _sim(NetworkModel(lan_latency=0.001), faults=FaultModel(random.Random(3)))
    net.faults.set_loss("*", "*", 0.5)
    got: list[bytes] = []
    took: list[float] = []
    async with net, trio.open_nursery() as nursery:
        server = await serve_port(net, nursery, "127.0.0.2:8300", echo)
        pool = ConsulPool(net, "127.0.0.1:8300")
        dgram = await nursery.start(
            net.serve_datagrams, "127.0.0.2:8301", lambda s, p: got.append(p)
        )

        async def one(i: int) -> None:
            t0 = trio.current_time()
            assert await pool.call(server, "x", i, timeout=600) == i
            took.append(trio.current_time() - t0)

        async with trio.open_nursery() as calls:
            for i in range(40):
                calls.start_soon(one, i)
                # Apart, so one call's retransmission does not hold the next one back (each
                # link is FIFO, as a TCP connection is: that head-of-line wait is real too).
                await trio.sleep(60)
        for i in range(200):
            net.send_datagram("127.0.0.1:8301", dgram, b"%d" % i)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert len(took) == 40  # none dropped
    assert any(t >= RTO_MIN for t in took)  # some waited a retransmission timeout
    assert any(t < RTO_MIN for t in took)
    assert net.stats["127.0.0.1:8300"]["retransmitted"] > 0
    assert 60 < len(got) < 140, len(got)


async def test_sim_cut_still_drops_rpc(clock: VirtualClock) -> None:
    net = _sim(NetworkModel(lan_latency=0.001))
    net.faults.block("127.0.0.1", "127.0.0.2")
    async with net, trio.open_nursery() as nursery:
        server = await serve_port(net, nursery, "127.0.0.2:8300", echo)
        with pytest.raises(RpcTimeout):
            await ConsulPool(net, "127.0.0.1:8300").call(server, "x", 1, timeout=2)
        nursery.cancel_scope.cancel()


async def test_model_loss_survives_heal_all(clock: VirtualClock) -> None:
    net = _sim(NetworkModel(loss=0.2))
    net.faults.heal(all=True)
    assert net.faults.loss_probability("127.0.0.1", "127.0.0.2") == 0.2
    assert not net.faults.clear()


async def test_sockets_loss_delays_port_connections() -> None:
    """Live, loss on a port connection costs retransmission timeouts (TCP resends a lost
    segment, late) and loses nothing: every call is answered, some a whole RTO late."""
    net = SocketNetwork(random.Random(5), faults=FaultModel(random.Random(5)))
    took: list[float] = []
    async with net, trio.open_nursery() as nursery:
        server = await serve_port(net, nursery, "127.0.0.52:0", echo)
        pool = ConsulPool(net, "127.0.0.51:8300")
        assert await pool.call(server, "x", -1, timeout=10) == -1  # the session, before loss
        net.faults.set_loss("127.0.0.51", "127.0.0.52", 0.5)

        async def one(i: int) -> None:
            t0 = trio.current_time()
            assert await pool.call(server, "x", i, timeout=30) == i
            took.append(trio.current_time() - t0)

        async with trio.open_nursery() as calls:
            for i in range(12):
                calls.start_soon(one, i)
        nursery.cancel_scope.cancel()
    assert len(took) == 12  # none lost
    assert max(took) >= RTO_MIN  # some were retransmitted
    assert net.stats["127.0.0.51:8300"]["retransmitted"] > 0


async def test_sim_bandwidth_queues_messages_on_a_link(clock: VirtualClock) -> None:
    # 1 MB/s: a 100 kB write takes 0.1 s to send, and a small one behind it waits for it.
    net = _sim(NetworkModel(lan_latency=0.001, bandwidth=1e6))
    arrived: dict[bytes, float] = {}

    class Recorder:
        def data_received(self, data: bytes) -> None:
            arrived[data[:1]] = trio.current_time()

        def connection_lost(self) -> None:
            pass

    async with net, trio.open_nursery() as nursery:
        dst = "127.0.0.2:8300"
        net.port_mux(dst).register(RPC_RAFT, lambda conn: Recorder())
        await nursery.start(net.serve_port, dst)
        first = net.dial("127.0.0.1:8300", dst, RPC_RAFT, lambda conn: Recorder())
        other = net.dial("127.0.0.1:8301", dst, RPC_RAFT, lambda conn: Recorder())
        await trio.sleep(1)  # both connected
        t0 = trio.current_time()
        first.write(b"b" * 100_000)
        first.write(b"s")
        other.write(b"o")  # its own link: not queued
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    took = {what: t - t0 for what, t in arrived.items()}
    assert took[b"o"] < 0.002
    assert 0.1 < took[b"b"] < 0.102  # 100,000 bytes at 1 MB/s, plus 1 ms
    assert took[b"s"] > took[b"b"]
